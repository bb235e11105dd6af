"""Dataset layouts (MVTec AD, BTAD, generic folders): list the image files and pair defect masks with them.

Layouts (paths relative to the category folder `root/category`, or `root` when `category` is None):
- `mvtec`: `train/good`, `test/good`, `test/<defect>`, `ground_truth/<defect>/<stem>_mask.png`.
- `btad`: `train/ok`, `test/ok`, `test/ko`, `ground_truth/ko/<stem>.png` (or `<stem>_mask.png`).
- `folder`: `normal_dir` (a seeded 20 % is held out as test normals, the rest is for training),
  `abnormal_dirs` (test defects; the folder name is the defect type), optional flat `mask_dir` with
  `<stem>.png` / `<stem>_mask.png`.

Masks pair with images **by file stem**, never by sort order. Masks are optional per defect type: a type
without any mask (no `ground_truth/<defect>/` folder, or none of its images in `mask_dir`) is
*image-labelled* (`Sample.mask` None, `Sample.pixel_labelled` False): it counts in the image metrics, not in
the pixel metrics. A type with some masks must have them all. Known defect images (`data.known_defects`)
pair with `<stem>_mask.*` beside them or in `masks/`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from grdnet.config import DataConfig
from grdnet.data.io import IMAGE_EXTENSIONS, is_image_file
from grdnet.data.problems import listing, problem
from grdnet.data.samples import Sample
from grdnet.data.splits import held_out_count
from grdnet.errors import DataError
from grdnet.seeds import numpy_generator

FOLDER_TEST_FRACTION = 0.2
"""`folder` layout: share of `normal_dir` held out (seeded) as test normals."""


def absolute_path(path: Path) -> Path:
    return Path(path).expanduser().absolute()


_FLAGS = {"data.root": "--data-root", "data.category": "--category", "data.layout": "--layout", "data.roi": "--roi",
          "data.test_roi": "--test-roi", "data.known_defects": "--known-defects", "data.skip_unreadable": "--skip-unreadable"}


def _named(setting: str) -> str:
    """How a user sets `setting`: '--data-root / data.root' (command-line flag / config key), or the key alone."""
    return f"{_FLAGS[setting]} / {setting}" if setting in _FLAGS else setting


def _existing_dir(path: Path, setting: str) -> Path:
    folder = absolute_path(path)
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
            raise problem(
                self.strays,
                f"not an image file (expected {expected})",
                f"entries in image folders are not image files (expected {expected})",
                "remove {it} or move {it} out of the dataset folder",
            )
        if self.loose:
            raise problem(
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
        raise problem(
            missing,
            "defect image without its mask",
            "defect images have no mask",
            "add the mask ({it} must be named <stem>_mask.png or <stem>.png) or remove the image",
        )
    if orphans:
        raise problem(
            [str(o) for o in orphans],
            "mask without its image (masks are matched to images by file stem)",
            "masks have no image with the same stem",
            "remove {it} or add the matching image",
        )


@dataclass
class Found:
    """What a layout found: the category base (for ROI mirroring), the normal training pool, the test set."""

    base: Path
    train_dir: Path
    pool: list[Sample]
    test: list[Sample]


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
                f"{root}: holds the categories {listing(categories)}, not train/ and test/; "
                "set --category / data.category to one of them"
            )
        return root
    folder = root / cfg.category
    if not folder.is_dir():
        categories = _categories(root)
        found = f"categories found: {listing(categories)}" if categories else "no category folders with train/ found"
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
        f"ground_truth/<defect>/; found {listing(found) if found else 'an empty folder'}); {fix}"
    )


def standard_layout(cfg: DataConfig) -> Found:
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
    return Found(category, train_dir, [Sample(p, 0, "good") for p in train_images], test)


def folder_layout(cfg: DataConfig) -> Found:
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
            raise problem(
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

    n_test = held_out_count(len(normals), FOLDER_TEST_FRACTION)
    held_out = set(numpy_generator(cfg.split_seed, "holdout").permutation(len(normals))[:n_test].tolist())
    pool = [Sample(p, 0, "good") for i, p in enumerate(normals) if i not in held_out]
    test = [Sample(p, 0, "good") for i, p in enumerate(normals) if i in held_out] + test

    if cfg.root is not None:
        base = absolute_path(cfg.root)
    else:
        base = Path(os.path.commonpath([str(d.parent) for d in [normal_dir, *abnormal_dirs]]))
    return Found(base, normal_dir, pool, test)


def known_defect_samples(folder_setting: Path) -> list[Sample]:
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
