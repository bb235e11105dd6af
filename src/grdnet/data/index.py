"""`index_dataset`: a layout's files (`discovery`) → ROIs attached (`rois`) → files checked (`checks`) → seeded
splits (`splits`), one checked `DatasetIndex`. Bad input fails here with a `DataError` naming the file, the
problem and the fix, before any training starts."""

from __future__ import annotations

from grdnet.config import DataConfig
from grdnet.data.checks import check_disjoint, check_files
from grdnet.data.discovery import folder_layout, known_defect_samples, standard_layout
from grdnet.data.rois import RoiSource
from grdnet.data.samples import DatasetIndex
from grdnet.data.splits import contaminate, split_validation
from grdnet.errors import DataError


def index_dataset(cfg: DataConfig, check_images: bool = True, splits: str = "all") -> DatasetIndex:
    """Find, pair, check and split the dataset described by `cfg`.

    Raises `DataError` for any problem with the files (missing folders, stray files, missing or
    orphan masks/ROIs, size mismatches, unreadable images unless `cfg.skip_unreadable`).
    `check_images=False` reads only image headers, without the truncation check. `splits="test"` (for
    `grdnet test`, the export's parity images, the demo's evaluation) reads the test files only: the training
    and known-defect files are listed, not read (their headers are, when `data.contamination` and
    `data.skip_unreadable` make the test split depend on how many training images are readable), so the
    test split is the one a full index gives.
    """
    if splits not in ("all", "test"):
        raise ValueError(f"splits must be 'all' or 'test', got {splits!r}")
    found = folder_layout(cfg) if cfg.layout == "folder" else standard_layout(cfg)
    known = known_defect_samples(cfg.known_defects) if cfg.known_defects is not None else []
    check_disjoint(found.pool + known, found.test)

    train_roi, test_roi = RoiSource(cfg.roi, "data.roi"), RoiSource(cfg.test_roi, "data.test_roi")
    pool = [train_roi.attach(s, found.base) for s in found.pool]
    known = [train_roi.attach(s, found.base) for s in known]
    test = [test_roi.attach(s, found.base) for s in found.test]
    train_roi.check()
    test_roi.check()

    shared = {p for p in (train_roi.shared_file, test_roi.shared_file) if p is not None}
    test_read = "decode" if check_images else "header"
    if splits == "all":
        training_read = test_read
    else:
        training_read = "header" if cfg.contamination > 0 and cfg.skip_unreadable else "none"
    known_read = test_read if splits == "all" else "none"
    pool, test, known = check_files([pool, test, known], shared, [training_read, test_read, known_read],
                                    cfg.skip_unreadable)
    if not pool:
        raise DataError(f"{found.train_dir}: no readable training images left; replace the unreadable files")

    train, validation = split_validation(pool, cfg.val_fraction, cfg.split_seed)
    train, test, contamination = contaminate(train, test, cfg.contamination, cfg.split_seed)
    return DatasetIndex(train, validation, test, known, contamination)
