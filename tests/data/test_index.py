"""Layouts, pairing, ROIs, splits, contamination, known defects and every bad-input error."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from grdnet.config import DataConfig
from grdnet.data import FOLDER_TEST_FRACTION, DatasetIndex, Sample, index_dataset
from grdnet.errors import DataError


def _cfg(category: Path, **fields) -> DataConfig:
    return DataConfig(root=category.parent, category=category.name, **fields)


def _images(samples: list[Sample]) -> set[Path]:
    return {s.image for s in samples}


# ---------------------------------------------------------------------------------------------- layouts


def test_mvtec_counts_labels_and_masks(mvtec):
    index = index_dataset(_cfg(mvtec, val_fraction=0.2))
    assert (len(index.train), len(index.validation), len(index.test)) == (8, 2, 8)
    assert all(s.label == 0 and s.defect_type == "good" and s.mask is None for s in index.train + index.validation)
    defects = [s for s in index.test if s.label == 1]
    assert {s.defect_type for s in defects} == {"scratch", "dent"} and len(defects) == 5
    for s in defects:
        assert s.mask == mvtec / "ground_truth" / s.defect_type / f"{s.image.stem}_mask.png"
    assert all(s.mask is None and s.defect_type == "good" for s in index.test if s.label == 0)
    assert index.known_defects == [] and index.contamination == []


def test_category_none_means_root_is_the_category(mvtec):
    index = index_dataset(DataConfig(root=mvtec, val_fraction=0))
    assert len(index.train) == 10 and len(index.test) == 8


def test_masks_paired_by_stem_not_sort_order(tmp_path, files):
    category = tmp_path / "c"
    files.mvtec(category, defects={})
    # sorted images: 1, 10, 2; sorted masks: 10_mask, 1_mask, 2_mask. Each pair has its own size.
    for stem, width in (("1", 12), ("2", 14), ("10", 18)):
        files.image(category / "test" / "cut" / f"{stem}.png", (width, 10))
        files.mask(category / "ground_truth" / "cut" / f"{stem}_mask.png", (width, 10))
    index = index_dataset(_cfg(category))
    cut = {s.image.stem: s.mask.name for s in index.test if s.defect_type == "cut"}
    assert cut == {"1": "1_mask.png", "2": "2_mask.png", "10": "10_mask.png"}


def test_jpg_images_with_png_masks_and_upper_case_extensions(tmp_path, files):
    category = files.mvtec(tmp_path / "c", defects={})
    files.image(category / "test" / "hole" / "a.JPG")
    files.mask(category / "ground_truth" / "hole" / "a_mask.png")
    index = index_dataset(_cfg(category))
    assert [s.mask.name for s in index.test if s.label] == ["a_mask.png"]


def test_btad_accepts_both_mask_names(tmp_path, files):
    category = files.mvtec(tmp_path / "01", n_train=4, n_good=2, good="ok", defects={"ko": 2})
    truth = category / "ground_truth" / "ko"
    (truth / "001_mask.png").rename(truth / "001.png")
    index = index_dataset(DataConfig(root=tmp_path, category="01", layout="btad"))
    masks = {s.image.name: s.mask.name for s in index.test if s.label}
    assert masks == {"000.png": "000_mask.png", "001.png": "001.png"}
    assert {s.defect_type for s in index.test} == {"good", "ko"}
    assert len(index.train) + len(index.validation) == 4


def test_folder_layout_with_masks(tmp_path, files):
    for i in range(10):
        files.image(tmp_path / "normal" / f"n{i}.png", seed=i)
    files.image(tmp_path / "scratch" / "s1.png")
    files.image(tmp_path / "stain" / "t1.jpg")
    files.mask(tmp_path / "masks" / "s1.png")
    files.mask(tmp_path / "masks" / "t1_mask.png")
    cfg = DataConfig(layout="folder", normal_dir=tmp_path / "normal", abnormal_dirs=[tmp_path / "scratch", tmp_path / "stain"],
                     mask_dir=tmp_path / "masks", val_fraction=0.25)
    index = index_dataset(cfg)
    test_normals = [s for s in index.test if s.label == 0]
    assert len(test_normals) == round(FOLDER_TEST_FRACTION * 10)
    assert len(index.train) + len(index.validation) == 8 and len(index.validation) == 2
    assert not _images(test_normals) & _images(index.train + index.validation)
    assert {(s.defect_type, s.mask.name) for s in index.test if s.label} == {("scratch", "s1.png"), ("stain", "t1_mask.png")}
    assert index_dataset(cfg).test == index.test


def test_folder_layout_without_masks_is_image_level(tmp_path, files):
    for i in range(3):
        files.image(tmp_path / "ok" / f"{i}.png")
    files.image(tmp_path / "bad" / "x.png")
    index = index_dataset(DataConfig(layout="folder", normal_dir=tmp_path / "ok", abnormal_dirs=[tmp_path / "bad"]))
    assert [(s.defect_type, s.mask) for s in index.test if s.label] == [("bad", None)]


def test_folder_layout_needs_every_mask_when_mask_dir_given(tmp_path, files):
    files.image(tmp_path / "ok" / "0.png")
    files.image(tmp_path / "bad" / "x.png")
    files.image(tmp_path / "bad" / "y.png")
    files.mask(tmp_path / "masks" / "x_mask.png")
    cfg = DataConfig(layout="folder", normal_dir=tmp_path / "ok", abnormal_dirs=[tmp_path / "bad"], mask_dir=tmp_path / "masks")
    with pytest.raises(DataError, match=r"bad/y\.png .*y_mask\.png.*: defect image without its mask; add the mask"):
        index_dataset(cfg)


def test_folder_layout_roi_mirrors_paths_from_the_common_parent(tmp_path, files):
    for i in range(5):
        files.image(tmp_path / "good" / f"{i}.png")
        files.mask(tmp_path / "roi" / "good" / f"{i}.png")
    files.image(tmp_path / "bad" / "x.png")
    files.mask(tmp_path / "roi" / "bad" / "x_roi.png")
    roi = tmp_path / "roi"
    index = index_dataset(DataConfig(layout="folder", normal_dir=tmp_path / "good", abnormal_dirs=[tmp_path / "bad"],
                                     roi=roi, test_roi=roi))
    for s in index.train + index.validation + index.test:
        assert s.roi.parent == roi / s.image.parent.name and s.roi.stem in (s.image.stem, s.image.stem + "_roi")


def test_folder_layout_needs_normal_dir():
    with pytest.raises(DataError, match="data.normal_dir: not set"):
        index_dataset(DataConfig(layout="folder"))


def test_summary_is_json_safe(mvtec):
    summary = index_dataset(_cfg(mvtec, val_fraction=0.2)).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["test"]["defect_types"] == {"dent": 3, "good": 3, "scratch": 2}
    assert summary["test"]["with_mask"] == 5 and summary["validation"]["total"] == 2
    assert DatasetIndex([], [], []).summary()["train"]["total"] == 0


# ---------------------------------------------------------------------------------------------- bad input


def test_root_not_set_or_missing(tmp_path):
    with pytest.raises(DataError, match="data.root: not set"):
        index_dataset(DataConfig())
    with pytest.raises(DataError, match=r"nowhere: data.root folder not found; set --data-root / data.root"):
        index_dataset(DataConfig(root=tmp_path / "nowhere"))


def test_wrong_category_lists_the_categories(tmp_path, files):
    files.mvtec(tmp_path / "bottle", n_train=1, n_good=1, defects={})
    files.mvtec(tmp_path / "cable", n_train=1, n_good=1, defects={})
    with pytest.raises(DataError, match=r"category 'botle' not found \(categories found: bottle, cable\); set --category / data.category"):
        index_dataset(DataConfig(root=tmp_path, category="botle"))
    with pytest.raises(DataError, match="holds the categories bottle, cable.*set --category / data.category"):
        index_dataset(DataConfig(root=tmp_path))


def test_wrong_layout_says_what_was_expected_and_found(tmp_path, files):
    files.image(tmp_path / "c" / "images" / "a.png")
    with pytest.raises(DataError, match=r"c: not a MVTec AD category folder \(expected train/good/.*found images/\)"):
        index_dataset(DataConfig(root=tmp_path, category="c"))
    files.mvtec(tmp_path / "b", n_train=1, n_good=1, good="ok", defects={})
    with pytest.raises(DataError, match=r"found .*train/ok.*looks like BTAD: set --layout / data.layout to btad"):
        index_dataset(DataConfig(root=tmp_path, category="b"))


def test_empty_train_folder(mvtec):
    shutil.rmtree(mvtec / "train" / "good")
    (mvtec / "train" / "good").mkdir()
    with pytest.raises(DataError, match=r"train/good: folder is empty \(no images\); put the normal training images"):
        index_dataset(_cfg(mvtec))


def test_empty_defect_folder(mvtec):
    (mvtec / "test" / "crack").mkdir()
    with pytest.raises(DataError, match=r"test/crack: folder is empty"):
        index_dataset(_cfg(mvtec))


def test_defect_image_without_mask(mvtec):
    (mvtec / "ground_truth" / "dent" / "001_mask.png").unlink()
    with pytest.raises(DataError) as caught:
        index_dataset(_cfg(mvtec))
    message = str(caught.value)
    assert "test/dent/001.png" in message and "ground_truth/dent/001_mask.png" in message
    assert "defect image without its mask" in message and "add the mask" in message


def test_mvtec_defect_type_without_ground_truth_is_image_labelled(mvtec):
    shutil.rmtree(mvtec / "ground_truth" / "dent")
    index = index_dataset(_cfg(mvtec))
    dents = [s for s in index.test if s.defect_type == "dent"]
    assert len(dents) == 3 and all(s.label == 1 and s.mask is None and not s.pixel_labelled for s in dents)
    assert all(s.mask is not None and s.pixel_labelled for s in index.test if s.defect_type == "scratch")
    assert index.summary()["test"]["image_labelled"] == 3


def test_mvtec_without_any_ground_truth_folder_is_image_labelled(mvtec):
    shutil.rmtree(mvtec / "ground_truth")
    index = index_dataset(_cfg(mvtec))
    assert sum(s.label for s in index.test) == 5 and all(s.mask is None for s in index.test)


def test_btad_without_ground_truth_is_image_labelled(tmp_path, files):
    category = files.mvtec(tmp_path / "01", n_train=4, n_good=2, good="ok", defects={"ko": 2})
    shutil.rmtree(category / "ground_truth")
    index = index_dataset(DataConfig(root=tmp_path, category="01", layout="btad"))
    assert [(s.defect_type, s.mask, s.pixel_labelled) for s in index.test if s.label] == [("ko", None, False)] * 2


def test_folder_layout_defect_type_without_masks_is_image_labelled(tmp_path, files):
    for i in range(5):
        files.image(tmp_path / "ok" / f"{i}.png", seed=i)
    files.image(tmp_path / "scratch" / "s1.png")
    files.image(tmp_path / "stain" / "t1.png")
    files.mask(tmp_path / "masks" / "s1_mask.png")
    cfg = DataConfig(layout="folder", normal_dir=tmp_path / "ok", abnormal_dirs=[tmp_path / "scratch", tmp_path / "stain"],
                     mask_dir=tmp_path / "masks")
    index = index_dataset(cfg)
    assert {(s.defect_type, s.pixel_labelled) for s in index.test if s.label} == {("scratch", True), ("stain", False)}


def test_mask_without_image(mvtec, files):
    files.mask(mvtec / "ground_truth" / "dent" / "007_mask.png")
    with pytest.raises(DataError, match=r"dent/007_mask\.png: mask without its image.*; remove it or add the matching image"):
        index_dataset(_cfg(mvtec))


def test_mask_size_mismatch(mvtec, files):
    files.mask(mvtec / "ground_truth" / "scratch" / "001_mask.png", size=(20, 16))
    with pytest.raises(DataError, match=r"001_mask\.png \(mask 20×16, image .*scratch/001\.png 16×16\): size differs"):
        index_dataset(_cfg(mvtec), check_images=False)


def test_non_image_file_named_with_hint(mvtec):
    (mvtec / "train" / "good" / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as caught:
        index_dataset(_cfg(mvtec))
    message = str(caught.value)
    assert message.startswith(f"{mvtec / 'train' / 'good' / 'notes.txt'}: not an image file (expected .png, .jpg")
    assert message.endswith("remove it or move it out of the dataset folder")


def test_hidden_and_system_files_are_all_listed(mvtec):
    (mvtec / "test" / "good" / "Thumbs.db").write_bytes(b"\0")
    (mvtec / "ground_truth" / "dent" / ".DS_Store").write_bytes(b"\0")
    (mvtec / "train" / "good" / "extra").mkdir()
    with pytest.raises(DataError) as caught:
        index_dataset(_cfg(mvtec))
    message = str(caught.value)
    assert message.startswith("3 entries in image folders are not image files")
    assert "Thumbs.db" in message and ".DS_Store (hidden file)" in message and "extra (a folder)" in message
    assert "remove them or move them out of the dataset folder" in message


def test_file_directly_in_test_folder(mvtec, files):
    files.image(mvtec / "test" / "loose.png")
    with pytest.raises(DataError, match=r"test/loose\.png: a file where only sub-folders .* expected; move it into the right sub-folder"):
        index_dataset(_cfg(mvtec))


def test_long_problem_lists_are_capped(mvtec):
    for i in range(15):
        (mvtec / "train" / "good" / f"note{i:02d}.txt").write_text("x")
    with pytest.raises(DataError, match=r"^15 entries .*note09\.txt and 5 more; remove them"):
        index_dataset(_cfg(mvtec))


def test_truncated_image_is_caught_only_when_decoding(tmp_path, files):
    category = files.mvtec(tmp_path / "c", defects={}, size=(64, 64))
    files.truncate(category / "train" / "good" / "003.png")
    assert len(index_dataset(_cfg(category, val_fraction=0), check_images=False).train) == 10
    with pytest.raises(DataError) as caught:
        index_dataset(_cfg(category))
    message = str(caught.value)
    assert "train/good/003.png" in message and "cannot read image" in message
    assert "pass --skip-unreadable (data.skip_unreadable: true)" in message


def test_corrupt_header_fails_even_without_decoding(mvtec):
    (mvtec / "test" / "good" / "001.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"test/good/001\.png.*cannot read image"):
        index_dataset(_cfg(mvtec), check_images=False)


def test_skip_unreadable_warns_once_and_drops_the_mask(tmp_path, files):
    category = files.mvtec(tmp_path / "c", size=(64, 64))
    files.truncate(category / "train" / "good" / "002.png")
    files.truncate(category / "test" / "dent" / "001.png")
    with pytest.warns(UserWarning) as record:
        index = index_dataset(_cfg(category, skip_unreadable=True, val_fraction=0))
    messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "train/good/002.png" in messages[0] and "dent/001.png" in messages[0]
    assert len(index.train) == 9 and len(index.test) == 7
    all_masks = {s.mask for s in index.test}
    assert category / "ground_truth" / "dent" / "001_mask.png" not in all_masks


def test_all_training_images_unreadable(tmp_path, files):
    category = files.mvtec(tmp_path / "c", n_train=2, defects={}, size=(64, 64))
    for path in (category / "train" / "good").iterdir():
        files.truncate(path)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no readable training images left"):
        index_dataset(_cfg(category, skip_unreadable=True))


# ---------------------------------------------------------------------------------------------- ROIs


def _roi_tree(category: Path, files, suffix: str = "") -> Path:
    roi = category / "roi"
    for image in category.glob("t*/*/*.png"):
        relative = image.relative_to(category)
        files.mask(roi / relative.parent / f"{image.stem}{suffix}.png")
    return roi


def test_roi_folder_mirrors_image_paths(mvtec, files):
    roi = _roi_tree(mvtec, files, suffix="_roi")
    index = index_dataset(_cfg(mvtec, roi=roi, test_roi=roi))
    for s in index.train + index.validation + index.test:
        assert s.roi == roi / s.image.parent.relative_to(mvtec) / f"{s.image.stem}_roi.png"


def test_roi_single_file_and_none(mvtec, files):
    shared = files.mask(mvtec.parent / "roi.png")
    index = index_dataset(_cfg(mvtec, roi=shared))
    assert all(s.roi == shared for s in index.train + index.validation)
    assert all(s.roi is None for s in index.test)
    assert all(s.roi is None for s in index_dataset(_cfg(mvtec)).train)


def test_roi_folder_missing_an_roi(mvtec, files):
    roi = _roi_tree(mvtec, files)
    (roi / "train" / "good" / "004.png").unlink()
    with pytest.raises(DataError, match=r"train/good/004\.png \(expected .*roi/train/good/004\.png\): image has no ROI in data\.roi"):
        index_dataset(_cfg(mvtec, roi=roi))


def test_test_roi_checked_separately(mvtec, files):
    roi = _roi_tree(mvtec, files)
    shutil.rmtree(roi / "test" / "good")
    assert index_dataset(_cfg(mvtec, roi=roi)).train[0].roi is not None
    with pytest.raises(DataError, match=r"^3 images have no ROI in data\.test_roi"):
        index_dataset(_cfg(mvtec, roi=roi, test_roi=roi))


def test_roi_size_mismatch(mvtec, files):
    roi = _roi_tree(mvtec, files)
    files.mask(roi / "train" / "good" / "001.png", size=(16, 12))
    with pytest.raises(DataError, match=r"roi/train/good/001\.png \(ROI 16×12, image .*16×16\): size differs"):
        index_dataset(_cfg(mvtec, roi=roi))


def test_single_roi_file_of_another_size_is_named_once(mvtec, files):
    shared = files.mask(mvtec.parent / "roi.png", size=(20, 20))
    with pytest.raises(DataError) as info:
        index_dataset(_cfg(mvtec, roi=shared))
    message = str(info.value)
    assert message.count("roi.png") == 1 and "(ROI 20×20, image" in message and "and 9 more images" in message


def test_roi_path_not_found(mvtec):
    with pytest.raises(DataError, match=r"nope: data.roi not found; give a folder"):
        index_dataset(_cfg(mvtec, roi=mvtec / "nope"))


# ---------------------------------------------------------------------------------------------- splits


def test_validation_split_is_seeded_disjoint_and_never_empty(mvtec):
    a = index_dataset(_cfg(mvtec, val_fraction=0.3, split_seed=1), check_images=False)
    b = index_dataset(_cfg(mvtec, val_fraction=0.3, split_seed=1), check_images=False)
    assert a.train == b.train and a.validation == b.validation and len(a.validation) == 3
    assert not _images(a.train) & _images(a.validation)
    assert len(_images(a.train) | _images(a.validation)) == 10
    others = [index_dataset(_cfg(mvtec, val_fraction=0.3, split_seed=s), check_images=False).validation for s in range(2, 6)]
    assert any(v != a.validation for v in others)
    assert len(index_dataset(_cfg(mvtec, val_fraction=0.01), check_images=False).validation) == 1
    assert index_dataset(_cfg(mvtec, val_fraction=0.0), check_images=False).validation == []


def test_contamination_moves_test_defects_into_train(tmp_path, files):
    category = files.mvtec(tmp_path / "c", n_train=20, defects={"scratch": 4, "dent": 4})
    cfg = _cfg(category, val_fraction=0.1, contamination=0.1)
    index = index_dataset(cfg)
    clean_train = 18
    assert len(index.contamination) == round(0.1 * clean_train) == 2
    assert len(index.train) == clean_train + 2 and set(index.contamination) <= set(index.train)
    assert all(s.label == 1 and s.mask is not None for s in index.contamination)
    assert not _images(index.test) & _images(index.train + index.validation)
    assert len(index.test) == 3 + 8 - 2
    assert index_dataset(cfg).contamination == index.contamination
    with pytest.raises(DataError, match="data.contamination: .* needs 16 defect images .* has 8"):
        index_dataset(_cfg(category, val_fraction=0.1, contamination=0.9))


def test_known_defects_with_masks_beside_or_in_masks_folder(mvtec, files, tmp_path):
    known = tmp_path / "known"
    files.image(known / "k1.png")
    files.mask(known / "k1_mask.png")
    files.image(known / "k2.png")
    files.mask(known / "masks" / "k2.png")
    files.image(known / "k3.png")  # masks are optional
    index = index_dataset(_cfg(mvtec, known_defects=known))
    got = {s.image.name: (s.label, s.defect_type, s.mask and s.mask.relative_to(known).as_posix()) for s in index.known_defects}
    assert got == {"k1.png": (1, "known", "k1_mask.png"), "k2.png": (1, "known", "masks/k2.png"), "k3.png": (1, "known", None)}
    assert index.summary()["known_defects"]["total"] == 3


def test_known_defects_orphan_mask_and_test_overlap(mvtec, files, tmp_path):
    known = tmp_path / "known"
    files.image(known / "k1.png")
    files.mask(known / "masks" / "zzz_mask.png")
    with pytest.raises(DataError, match=r"zzz_mask\.png: mask without its image"):
        index_dataset(_cfg(mvtec, known_defects=known))
    with pytest.raises(DataError, match=r"^2 images are used for both training and testing: .*test/scratch/000\.png"):
        index_dataset(_cfg(mvtec, known_defects=mvtec / "test" / "scratch"))


# ---------------------------------------------------------------------------------------------- real data


def _shared_data() -> Path:
    default = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return Path(os.environ.get("GRDNET_DATA_DIR", default))


def test_magnetic_tile_real_data():
    root = _shared_data() / "mtd"
    if not (root / "magnetic_tile").is_dir():
        pytest.skip(f"{root / 'magnetic_tile'} not present")
    start = time.perf_counter()
    index = index_dataset(DataConfig(root=root, category="magnetic_tile", val_fraction=0))
    elapsed = time.perf_counter() - start
    defects = [s for s in index.test if s.label == 1]
    assert len(index.train) == 762 and len(defects) == 392
    assert sum(s.label == 0 for s in index.test) == 190
    assert all(s.mask.name == f"{s.image.stem}_mask.png" and s.mask.parent.name == s.defect_type for s in defects)
    assert elapsed < 20, f"indexing took {elapsed:.1f} s"


def _record_reads(monkeypatch) -> list[tuple[Path, bool]]:
    """Every (file, decoded) the index's file checks read from now on."""
    import grdnet.data.checks as checks

    reads, probe = [], checks.probe_image

    def recording(path, decode=True):
        reads.append((path, decode))
        return probe(path, decode)

    monkeypatch.setattr(checks, "probe_image", recording)
    return reads


def test_an_index_of_the_test_split_reads_no_training_file(mvtec, monkeypatch):
    """`grdnet test`, the export's parity images and the demo need the test split only: training files are
    listed, never opened, and the test split is the one a full index gives."""
    reads = _record_reads(monkeypatch)
    index = index_dataset(_cfg(mvtec), splits="test")
    assert not [path for path, _ in reads if "train" in path.parts]
    assert {path for path, decoded in reads if decoded and "test" in path.parts} == _images(index.test)
    reads.clear()
    full = index_dataset(_cfg(mvtec))
    assert index.test == full.test and index.train == full.train
    assert {path for path, _ in reads if "train" in path.parts} == _images(full.train + full.validation)


def test_a_test_split_index_reads_training_headers_when_unreadable_ones_change_the_split(tmp_path, files, monkeypatch):
    """With contamination and skipped unreadable files, how many defects move into training depends on how many
    training images are readable: then (only) their headers are read, so the test split stays the full one."""
    category = files.mvtec(tmp_path / "c", n_train=20, defects={"scratch": 4, "dent": 4})
    for i in range(5):
        (category / "train" / "good" / f"{i:03d}.png").write_bytes(b"not a png")
    cfg = _cfg(category, val_fraction=0.1, contamination=0.2, skip_unreadable=True)
    with pytest.warns(UserWarning, match="skipping 5 unreadable"):
        full = index_dataset(cfg)
    reads = _record_reads(monkeypatch)
    with pytest.warns(UserWarning, match="skipping 5 unreadable"):
        index = index_dataset(cfg, splits="test")
    assert index.test == full.test and index.contamination == full.contamination
    training = {path for path, decoded in reads if "train" in path.parts}
    assert training and not [path for path, decoded in reads if "train" in path.parts and decoded]
    with pytest.raises(ValueError, match="splits must be"):
        index_dataset(cfg, splits="train")
