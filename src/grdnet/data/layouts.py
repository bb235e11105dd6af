"""Dataset layouts (MVTec AD, BTAD, generic folders) → a checked, split `DatasetIndex`.

`index_dataset` finds every image, pairs defect masks and ROIs with their images **by file stem**,
checks the files (readable, mask/ROI sizes match) and draws the seeded splits, so that bad input
fails here with a `DataError` naming the file, the problem and the fix, before any training starts.

Layouts (paths relative to the category folder `root/category`, or `root` when `category` is None):
- `mvtec`: `train/good`, `test/good`, `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`.
- `btad`: `train/ok`, `test/ok`, `test/ko`, `ground_truth/ko/<stem>.png` (or `<stem>_mask.png`).
- `folder`: `normal_dir` (a seeded 20 % is held out as test normals, the rest is for training),
  `abnormal_dirs` (test defects; the folder name is the defect type), optional flat `mask_dir` with
  `<stem>.png` / `<stem>_mask.png`. ROI folders mirror paths relative to `root` if set, else relative to
  the common parent of these folders.

Masks are optional per defect type: a type without any mask (no `ground_truth/<defect>/` folder, or none of
its images in `mask_dir`) is *image-labelled* (`Sample.mask` None, `Sample.pixel_labelled` False): it counts
in the image metrics, not in the pixel metrics. A type with some masks must have them all.

A ROI folder mirrors the image paths (`roi/train/good/000.png` or `roi/train/good/000_roi.png` for
`train/good/000.png`); a single ROI file applies to every image. `roi` serves training, validation
and known-defect images, `test_roi` the test images (contamination images keep their test ROI).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from grdnet.config import DataConfig
from grdnet.data.io import IMAGE_EXTENSIONS, UnreadableImageError, is_image_file, probe_image
from grdnet.errors import DataError

FOLDER_TEST_FRACTION = 0.2
"""`folder` layout: share of `normal_dir` held out (seeded) as test normals."""

_MAX_LISTED = 10
_HOLDOUT_STREAM, _VALIDATION_STREAM, _CONTAMINATION_STREAM = 0, 1, 2


@dataclass(frozen=True)
class Sample:
    """One image file and its annotations."""

    image: Path
    label: int  # 0 normal, 1 defect (as given by the folder; ROI not applied)
    defect_type: str  # "good" for normal images
    mask: Path | None = None  # ground-truth defect mask (None: all zeros for a normal image, unknown for a defect)
    roi: Path | None = None  # ROI mask (None = whole image)

    @property
    def pixel_labelled(self) -> bool:
        """True when the pixels' ground truth is known: a normal image, or a defect image with its mask."""
        return self.label == 0 or self.mask is not None


@dataclass
class DatasetIndex:
    """The samples of every split. `contamination` lists defect images moved from test into `train`."""

    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    known_defects: list[Sample] = field(default_factory=list)
    contamination: list[Sample] = field(default_factory=list)

    def summary(self) -> dict:
        """Counts per split: total, normal, defect, with_mask, with_roi and per defect type (JSON-safe)."""
        splits = ("train", "validation", "test", "known_defects", "contamination")
        return {name: _counts(getattr(self, name)) for name in splits}


def _counts(samples: list[Sample]) -> dict:
    types = Counter(s.defect_type for s in samples)
    return {
        "total": len(samples),
        "normal": sum(s.label == 0 for s in samples),
        "defect": sum(s.label == 1 for s in samples),
        "with_mask": sum(s.mask is not None for s in samples),
        "image_labelled": sum(not s.pixel_labelled for s in samples),
        "with_roi": sum(s.roi is not None for s in samples),
        "defect_types": dict(sorted(types.items())),
    }


# ---------------------------------------------------------------------------------------------- messages


def _listing(items: list) -> str:
    shown = ", ".join(str(item) for item in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _problem(items: list[str], one: str, many: str, fix: str) -> DataError:
    """`<item>: <one>; <fix>` for one item, `<n> <many>: <items>; <fix>` for several.

    `fix` may use `{it}`, which becomes "it" or "them".
    """
    if len(items) == 1:
        return DataError(f"{items[0]}: {one}; {fix.format(it='it')}")
    return DataError(f"{len(items)} {many}: {_listing(items)}; {fix.format(it='them')}")


# ---------------------------------------------------------------------------------------------- folders


def _path(path: Path) -> Path:
    return Path(path).expanduser().absolute()


_FLAGS = {"data.root": "--data-root", "data.category": "--category", "data.layout": "--layout", "data.roi": "--roi",
          "data.test_roi": "--test-roi", "data.known_defects": "--known-defects", "data.skip_unreadable": "--skip-unreadable"}


def _named(setting: str) -> str:
    """How a user sets `setting`: '--data-root / data.root' (command-line flag / config key), or the key alone."""
    return f"{_FLAGS[setting]} / {setting}" if setting in _FLAGS else setting


def _existing_dir(path: Path, setting: str) -> Path:
    folder = _path(path)
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "folder not found"
        raise DataError(f"{folder}: {setting} {problem}; set {_named(setting)} to an existing folder")
    return folder


class _Scanner:
    """Lists image folders, collecting every non-image entry so one error names them all."""

    def __init__(self) -> None:
        self.strays: list[str] = []
        self.loose: list[str] = []

    def _stray(self, entry: Path) -> None:
        if entry.is_dir():
            self.strays.append(f"{entry} (a folder)")
        else:
            self.strays.append(f"{entry} (hidden file)" if entry.name.startswith(".") else str(entry))

    def images(self, folder: Path, allowed_dirs: tuple[str, ...] = ()) -> list[Path]:
        """Sorted image files of `folder`; anything else (except `allowed_dirs`) is recorded as stray."""
        images = []
        for entry in sorted(folder.iterdir()):
            if is_image_file(entry) and entry.is_file():
                images.append(entry)
            elif not (entry.is_dir() and entry.name in allowed_dirs):
                self._stray(entry)
        return images

    def subfolders(self, folder: Path) -> dict[str, list[Path]]:
        """Image files of each subfolder of `folder`, by subfolder name; files directly inside are strays."""
        groups = {}
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                groups[entry.name] = self.images(entry)
            else:
                self.loose.append(str(entry))
        return groups

    def check(self) -> None:
        if self.strays:
            expected = ", ".join(IMAGE_EXTENSIONS)
            raise _problem(
                self.strays,
                f"not an image file (expected {expected})",
                f"entries in image folders are not image files (expected {expected})",
                "remove {it} or move {it} out of the dataset folder",
            )
        if self.loose:
            raise _problem(
                self.loose,
                "a file where only sub-folders (one per image type) are expected",
                "files lie where only sub-folders (one per image type) are expected",
                "move {it} into the right sub-folder or remove {it}",
            )


def _require_images(folder: Path, images: list[Path], what: str) -> None:
    if not images:
        raise DataError(f"{folder}: folder is empty (no images); put {what} there or remove the folder")


def _pair_masks(
    images: list[Path], masks: list[Path], mask_dir: Path
) -> tuple[dict[Path, Path], list[str], list[Path]]:
    """Match masks to images by stem (`<stem>_mask.*` first, then `<stem>.*`).

    Returns (image → mask, images without a mask (described), masks without an image).
    """
    by_stem: dict[str, Path] = {}
    for mask in masks:
        if mask.stem in by_stem:
            raise DataError(
                f"{mask}: two masks share the stem '{mask.stem}' ({by_stem[mask.stem].name}, {mask.name}); keep one"
            )
        by_stem[mask.stem] = mask
    pairs: dict[Path, Path] = {}
    missing: list[str] = []
    for image in images:
        key = next((k for k in (f"{image.stem}_mask", image.stem) if k in by_stem), None)
        if key is None:
            missing.append(f"{image} (expected {mask_dir / (image.stem + '_mask.png')})")
        else:
            pairs[image] = by_stem[key]
    used = set(pairs.values())
    return pairs, missing, [m for m in masks if m not in used]


def _raise_pairing(missing: list[str], orphans: list[Path]) -> None:
    if missing:
        raise _problem(
            missing,
            "defect image without its mask",
            "defect images have no mask",
            "add the mask ({it} must be named <stem>_mask.png or <stem>.png) or remove the image",
        )
    if orphans:
        raise _problem(
            [str(o) for o in orphans],
            "mask without its image (masks are matched to images by file stem)",
            "masks have no image with the same stem",
            "remove {it} or add the matching image",
        )


@dataclass
class _Found:
    """What a layout found: the category base (for ROI mirroring), the normal training pool, the test set."""

    base: Path
    train_dir: Path
    pool: list[Sample]
    test: list[Sample]


# ---------------------------------------------------------------------------------------------- layouts


_STANDARD = {"mvtec": ("MVTec AD", "good"), "btad": ("BTAD", "ok")}


def _categories(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "train").is_dir())


def _category_dir(cfg: DataConfig) -> Path:
    if cfg.root is None:
        raise DataError("data.root: not set; set --data-root / data.root to the dataset folder (or use the built-in dataset)")
    root = _existing_dir(cfg.root, "data.root")
    if cfg.category is None:
        categories = _categories(root)
        if not (root / "train").is_dir() and categories:
            raise DataError(
                f"{root}: holds the categories {_listing(categories)}, not train/ and test/; "
                "set --category / data.category to one of them"
            )
        return root
    folder = root / cfg.category
    if not folder.is_dir():
        categories = _categories(root)
        found = f"categories found: {_listing(categories)}" if categories else "no category folders with train/ found"
        raise DataError(f"{folder}: category '{cfg.category}' not found ({found}); set --category / data.category to one of them")
    return folder


def _check_structure(folder: Path, layout: str) -> None:
    name, good = _STANDARD[layout]
    if (folder / "train" / good).is_dir() and (folder / "test").is_dir():
        return
    found = [f"{e.name}/" if e.is_dir() else e.name for e in sorted(folder.iterdir())]
    if (folder / "train").is_dir():
        found += [f"train/{e.name}" for e in sorted((folder / "train").iterdir())]
    other = {"mvtec": "btad", "btad": "mvtec"}[layout]
    if (folder / "train" / _STANDARD[other][1]).is_dir():
        fix = f"it looks like {_STANDARD[other][0]}: set --layout / data.layout to {other}"
    else:
        fix = "point --data-root (and --category) at a category folder, or use --layout folder"
    raise DataError(
        f"{folder}: not a {name} category folder (expected train/{good}/, test/{good}/, test/<defect>/ and "
        f"ground_truth/<defect>/; found {_listing(found) if found else 'an empty folder'}); {fix}"
    )


def _standard_layout(cfg: DataConfig) -> _Found:
    good = _STANDARD[cfg.layout][1]
    category = _category_dir(cfg)
    _check_structure(category, cfg.layout)
    scanner = _Scanner()
    train_dir, test_dir, truth_dir = category / "train" / good, category / "test", category / "ground_truth"
    train_images = scanner.images(train_dir)
    test_groups = scanner.subfolders(test_dir)
    mask_groups = scanner.subfolders(truth_dir) if truth_dir.is_dir() else {}
    scanner.check()

    _require_images(train_dir, train_images, "the normal training images")
    if not test_groups:
        raise DataError(f"{test_dir}: no test folders; add test/{good}/ and test/<defect>/ folders of images")
    for name, images in test_groups.items():
        _require_images(test_dir / name, images, "test images")

    test: list[Sample] = []
    missing: list[str] = []
    orphans: list[Path] = []
    for name, images in test_groups.items():
        if name == good:
            test += [Sample(p, 0, "good") for p in images]
            continue
        masks = mask_groups.pop(name, [])
        if not masks:  # no ground truth for this defect type: image-level labels only
            test += [Sample(p, 1, name) for p in images]
            continue
        pairs, no_mask, unused = _pair_masks(images, masks, truth_dir / name)
        test += [Sample(p, 1, name, pairs.get(p)) for p in images]
        missing += no_mask
        orphans += unused
    orphans += [m for masks in mask_groups.values() for m in masks]
    _raise_pairing(missing, orphans)
    return _Found(category, train_dir, [Sample(p, 0, "good") for p in train_images], test)


def _folder_layout(cfg: DataConfig) -> _Found:
    if cfg.normal_dir is None:
        raise DataError(
            "data.normal_dir: not set; the folder layout needs data.normal_dir (normal images), "
            "optionally data.abnormal_dirs (defect images) and data.mask_dir (their masks)"
        )
    normal_dir = _existing_dir(cfg.normal_dir, "data.normal_dir")
    abnormal_dirs = [_existing_dir(d, "data.abnormal_dirs") for d in cfg.abnormal_dirs]
    mask_dir = _existing_dir(cfg.mask_dir, "data.mask_dir") if cfg.mask_dir is not None else None
    scanner = _Scanner()
    normals = scanner.images(normal_dir)
    groups = [(d, scanner.images(d)) for d in abnormal_dirs]
    masks = scanner.images(mask_dir) if mask_dir is not None else []
    scanner.check()
    _require_images(normal_dir, normals, "the normal images")
    for folder, images in groups:
        _require_images(folder, images, "defect images")

    defects = [image for _, images in groups for image in images]
    pairs: dict[Path, Path] = {}
    if mask_dir is not None:
        stems = Counter(image.stem for image in defects)
        shared = [str(image) for image in defects if stems[image.stem] > 1]
        if shared:
            raise _problem(
                shared,
                "another defect image has the same stem (masks in data.mask_dir are matched by stem)",
                "defect images share a stem with another one (masks in data.mask_dir are matched by stem)",
                "rename {it} so every stem is unique",
            )
        pairs, _, orphans = _pair_masks(defects, masks, mask_dir)
        # a defect type (folder) without any mask is image-labelled; one with some masks needs them all
        missing = [f"{image} (expected {mask_dir / (image.stem + '_mask.png')})"
                   for _, images in groups if any(image in pairs for image in images)
                   for image in images if image not in pairs]
        _raise_pairing(missing, orphans)
    test = [Sample(p, 1, folder.name, pairs.get(p)) for folder, images in groups for p in images]

    n_test = _held_out_count(len(normals), FOLDER_TEST_FRACTION)
    held_out = set(_rng(cfg.split_seed, _HOLDOUT_STREAM).permutation(len(normals))[:n_test].tolist())
    pool = [Sample(p, 0, "good") for i, p in enumerate(normals) if i not in held_out]
    test = [Sample(p, 0, "good") for i, p in enumerate(normals) if i in held_out] + test

    if cfg.root is not None:
        base = _path(cfg.root)
    else:
        base = Path(os.path.commonpath([str(d.parent) for d in [normal_dir, *abnormal_dirs]]))
    return _Found(base, normal_dir, pool, test)


def _known_defects(folder_setting: Path) -> list[Sample]:
    folder = _existing_dir(folder_setting, "data.known_defects")
    scanner = _Scanner()
    entries = scanner.images(folder, allowed_dirs=("masks",))
    mask_folder = folder / "masks"
    extra_masks = scanner.images(mask_folder) if mask_folder.is_dir() else []
    scanner.check()
    images = [p for p in entries if not p.stem.endswith("_mask")]
    _require_images(folder, images, "the known defect images")
    masks = [p for p in entries if p.stem.endswith("_mask")] + extra_masks
    pairs, _, orphans = _pair_masks(images, masks, folder)
    _raise_pairing([], orphans)
    return [Sample(p, 1, "known", pairs.get(p)) for p in images]


# ---------------------------------------------------------------------------------------------- ROIs


class _RoiSource:
    """`data.roi` / `data.test_roi`: None, one image file for all images, or a folder mirroring image paths."""

    def __init__(self, setting_value: Path | None, setting: str):
        self.setting = setting
        self.path = None if setting_value is None else _path(setting_value)
        self.shared_file: Path | None = None  # the single ROI file used for every image, if one was given
        self.missing: list[str] = []
        self._listings: dict[Path, dict[str, Path]] = {}
        if self.path is None:
            return
        if not self.path.exists():
            raise DataError(
                f"{self.path}: {setting} not found; give a folder mirroring the image paths, "
                f"one image file for all images, or leave {setting} empty"
            )
        if self.path.is_file():
            if not is_image_file(self.path):
                raise DataError(f"{self.path}: {setting} is not an image file; give a PNG mask or a folder of them")
            self.shared_file = self.path

    def _listing(self, folder: Path) -> dict[str, Path]:
        if folder not in self._listings:
            files = sorted(folder.iterdir()) if folder.is_dir() else []
            self._listings[folder] = {p.stem: p for p in files if is_image_file(p)}
        return self._listings[folder]

    def attach(self, sample: Sample, base: Path) -> Sample:
        """The sample with its ROI; a ROI missing from a folder is recorded for `check`."""
        if self.path is None or self.shared_file is not None:
            return replace(sample, roi=self.path)
        image = sample.image
        relative = image.relative_to(base) if image.is_relative_to(base) else Path(image.parent.name, image.name)
        folder = self.path / relative.parent
        listing = self._listing(folder)
        roi = listing.get(image.stem) or listing.get(f"{image.stem}_roi")
        if roi is None:
            self.missing.append(f"{image} (expected {folder / (image.stem + '.png')})")
        return replace(sample, roi=roi)

    def check(self) -> None:
        if self.missing:
            raise _problem(
                self.missing,
                f"image has no ROI in {self.setting}",
                f"images have no ROI in {self.setting}",
                "add the ROI masks (<stem>.png or <stem>_roi.png, mirroring the image paths) "
                f"or give {self.setting} as one image file for all images",
            )


# ---------------------------------------------------------------------------------------------- file checks


def _probe(path: Path, check_truncation: bool) -> tuple[int, int] | UnreadableImageError:
    try:
        return probe_image(path, check_truncation)
    except UnreadableImageError as error:
        return error


def _probe_all(paths: list[Path], check_truncation: bool) -> dict[Path, tuple[int, int] | UnreadableImageError]:
    """Size (or the read error) of every file; in threads (Pillow releases the GIL while decoding)."""
    workers = min(16, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(lambda p: _probe(p, check_truncation), paths)))


def _files(sample: Sample) -> list[Path]:
    return [p for p in (sample.image, sample.mask, sample.roi) if p is not None]


def _check_files(
    groups: list[list[Sample]], shared: set[Path], check_truncation: list[bool], skip_unreadable: bool
) -> list[list[Sample]]:
    """Read every file (headers, plus the truncation check of `probe_image` for the groups whose
    `check_truncation` is True); drop or reject unreadable ones; check sizes."""
    paths = list(dict.fromkeys(
        p for group, full in zip(groups, check_truncation) if full for s in group for p in _files(s)))
    results = _probe_all(paths, True)
    headers = [p for group in groups for s in group for p in _files(s) if p not in results]
    results.update(_probe_all(list(dict.fromkeys(headers)), False))
    bad = {p: r for p, r in results.items() if isinstance(r, UnreadableImageError)}
    if bad:
        items = [f"{p} ({error.reason})" for p, error in bad.items()]
        if not skip_unreadable or shared & bad.keys():
            raise _problem(
                items,
                "cannot read image",
                "files cannot be read",
                "replace or delete {it}, or pass --skip-unreadable (data.skip_unreadable: true) to skip unreadable images",
            )
        warnings.warn(
            f"skipping {len(bad)} unreadable file(s) and the images they belong to: {_listing(items)}",
            stacklevel=3,
        )
        groups = [[s for s in group if not bad.keys() & set(_files(s))] for group in groups]

    by_file: dict[Path, list[str]] = {}  # one entry per mask / ROI file: a single ROI file is shared by every image
    for sample in (s for group in groups for s in group):
        width, height = results[sample.image]
        for kind, other in (("mask", sample.mask), ("ROI", sample.roi)):
            if other is not None and results[other] != (width, height):
                ow, oh = results[other]
                by_file.setdefault(other, []).append(f"{kind} {ow}×{oh}, image {sample.image} {width}×{height}")
    mismatched = [f"{other} ({found[0]}" + (f", and {len(found) - 1} more images" if len(found) > 1 else "") + ")"
                  for other, found in by_file.items()]
    if mismatched:
        raise _problem(
            mismatched,
            "size differs from its image",
            "masks / ROIs differ in size from their images",
            "masks and ROIs must have their image's size: regenerate {it}",
        )
    return groups


def _check_disjoint(training: list[Sample], test: list[Sample]) -> None:
    test_files = {s.image.resolve() for s in test}
    shared = [str(s.image) for s in training if s.image.resolve() in test_files]
    if shared:
        raise _problem(
            shared,
            "used for both training and testing",
            "images are used for both training and testing",
            "keep test images out of the training folders (data.normal_dir, data.known_defects)",
        )


# ---------------------------------------------------------------------------------------------- splits


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([stream, seed % 2**64])


def _held_out_count(n: int, fraction: float) -> int:
    """round(fraction·n), but at least 1 and at most n-1 when fraction > 0 and n ≥ 2."""
    count = round(fraction * n)
    if fraction > 0 and n >= 2:
        count = min(max(count, 1), n - 1)
    return count


def _split_validation(pool: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    n_val = _held_out_count(len(pool), fraction)
    chosen = set(_rng(seed, _VALIDATION_STREAM).permutation(len(pool))[:n_val].tolist())
    train = [s for i, s in enumerate(pool) if i not in chosen]
    return train, [s for i, s in enumerate(pool) if i in chosen]


def _contaminate(
    train: list[Sample], test: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Move max(1, round(fraction·len(train))) seeded test defects into train: (train, test, moved)."""
    if fraction == 0:
        return train, test, []
    defects = [s for s in test if s.label == 1]
    count = max(1, round(fraction * len(train)))
    if count >= len(defects):
        raise DataError(
            f"data.contamination: {fraction} of {len(train)} training images needs {count} defect images but "
            f"the test set has {len(defects)} (at least one must stay for testing); lower data.contamination"
        )
    picked = _rng(seed, _CONTAMINATION_STREAM).choice(len(defects), size=count, replace=False)
    moved = [defects[i] for i in sorted(picked.tolist())]
    moved_set = set(moved)
    return train + moved, [s for s in test if s not in moved_set], moved


# ---------------------------------------------------------------------------------------------- entry point


def index_dataset(cfg: DataConfig, check_images: bool = True, decode_training: bool = True) -> DatasetIndex:
    """Find, pair, check and split the dataset described by `cfg`.

    Raises `DataError` for any problem with the files (missing folders, stray files, missing or
    orphan masks/ROIs, size mismatches, unreadable images unless `cfg.skip_unreadable`).
    `check_images=False` reads only image headers, without the truncation check; `decode_training=False`
    checks the test files only (for `grdnet test`: the training files are listed, and read by header).
    """
    found = _folder_layout(cfg) if cfg.layout == "folder" else _standard_layout(cfg)
    known = _known_defects(cfg.known_defects) if cfg.known_defects is not None else []
    _check_disjoint(found.pool + known, found.test)

    train_roi, test_roi = _RoiSource(cfg.roi, "data.roi"), _RoiSource(cfg.test_roi, "data.test_roi")
    pool = [train_roi.attach(s, found.base) for s in found.pool]
    known = [train_roi.attach(s, found.base) for s in known]
    test = [test_roi.attach(s, found.base) for s in found.test]
    train_roi.check()
    test_roi.check()

    shared = {p for p in (train_roi.shared_file, test_roi.shared_file) if p is not None}
    decode = [check_images and decode_training, check_images, check_images and decode_training]
    pool, test, known = _check_files([pool, test, known], shared, decode, cfg.skip_unreadable)
    if not pool:
        raise DataError(f"{found.train_dir}: no readable training images left; replace the unreadable files")

    train, validation = _split_validation(pool, cfg.val_fraction, cfg.split_seed)
    train, test, contamination = _contaminate(train, test, cfg.contamination, cfg.split_seed)
    return DatasetIndex(train, validation, test, known, contamination)
