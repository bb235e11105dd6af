"""Tests of the built-in data set generator (small counts so they run in about a second)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grdnet.builtin_dataset import (
    BACKGROUND_DEFECT_TYPES,
    CATEGORY,
    DEFECT_TYPES,
    make_builtin_dataset,
    render_sample,
)
from grdnet.errors import DataError

SMALL = dict(n_train=12, n_test_good=4, n_test_defect_per_type=3)
ALL_TYPES = DEFECT_TYPES + BACKGROUND_DEFECT_TYPES


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_builtin_dataset(tmp_path_factory.mktemp("builtin"), seed=0, **SMALL)


def test_layout_and_counts(dataset: Path) -> None:
    assert dataset.name == CATEGORY
    assert len(list((dataset / "train/good").glob("*.png"))) == 12
    assert len(list((dataset / "test/good").glob("*.png"))) == 4
    assert sorted(p.name for p in (dataset / "test").iterdir()) == sorted(("good",) + ALL_TYPES)
    for kind in ALL_TYPES:
        stems = sorted(p.stem for p in (dataset / "test" / kind).glob("*.png"))
        assert stems == ["000", "001", "002"]
        masks = sorted(p.name for p in (dataset / "ground_truth" / kind).glob("*.png"))
        assert masks == [f"{s}_mask.png" for s in stems]
    assert not (dataset / "ground_truth/good").exists()
    # the ROI folder mirrors every image path relative to the category folder
    images = sorted(p.relative_to(dataset) for p in dataset.glob("t*/*/*.png"))
    assert len(images) == 12 + 4 + 3 * len(ALL_TYPES)
    assert sorted(p.relative_to(dataset / "roi") for p in (dataset / "roi").rglob("*.png")) == images
    params = json.loads((dataset / "dataset.json").read_text())
    assert params["seed"] == 0 and params["size"] == 64 and params["n_train"] == 12
    assert "roi" in (dataset / "README.txt").read_text()
    image = Image.open(dataset / "train/good/000.png")
    assert image.mode == "RGB" and image.size == (64, 64)


def test_same_seed_gives_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = make_builtin_dataset(tmp_path, seed=0, **SMALL)
    assert _files(again) == _files(dataset)


def test_different_seed_gives_different_images(dataset: Path, tmp_path: Path) -> None:
    other = make_builtin_dataset(tmp_path, seed=1, **SMALL)
    for rel in ("train/good/000.png", "test/good/000.png", "test/crack/000.png"):
        assert not np.array_equal(_read(other / rel), _read(dataset / rel))


def test_masks_and_rois_are_binary_and_non_empty(dataset: Path) -> None:
    for path in (dataset / "ground_truth").rglob("*.png"):
        mask = _read(path)
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}, path
    for path in (dataset / "roi").rglob("*.png"):
        roi = _read(path)
        assert roi.ndim == 2 and set(np.unique(roi)) == {0, 255}, path
        assert 0.15 < (roi > 0).mean() < 0.6, path


def test_roi_covers_the_product(dataset: Path) -> None:
    # the terracotta tile is much redder than the blue-grey conveyor
    for path in (dataset / "train/good").glob("*.png"):
        image = _read(path).astype(float)
        roi = _read(dataset / "roi/train/good" / path.name) > 0
        redness = image[..., 0] - image[..., 2]
        assert redness[roi].mean() > redness[~roi].mean() + 60
        assert np.percentile(redness[roi], 5) > np.percentile(redness[~roi], 95)


def test_defects_inside_and_outside_the_roi(dataset: Path) -> None:
    for kind in ALL_TYPES:
        for mask_path in (dataset / "ground_truth" / kind).glob("*.png"):
            mask = _read(mask_path) > 0
            roi = _read(dataset / "roi/test" / kind / mask_path.name.replace("_mask", "")) > 0
            if kind in BACKGROUND_DEFECT_TYPES:
                assert not (mask & roi).any(), mask_path
            else:
                assert (mask & roi).sum() == mask.sum(), mask_path


def test_product_position_varies(dataset: Path) -> None:
    centroids = np.array(
        [np.argwhere(_read(p) > 0).mean(0) for p in sorted((dataset / "roi/train/good").glob("*.png"))]
    )
    assert centroids.std(0).min() > 2.0  # pixels, in both directions
    assert len({tuple(np.round(c, 1)) for c in centroids}) == len(centroids)


def test_idempotent_and_regenerates_on_change(tmp_path: Path) -> None:
    folder = make_builtin_dataset(tmp_path, seed=3, **SMALL)
    stamp = (folder / "dataset.json").stat().st_mtime_ns
    marker = folder / "train/good/000.png"
    marker.write_bytes(b"not regenerated")
    assert make_builtin_dataset(tmp_path, seed=3, **SMALL) == folder
    assert marker.read_bytes() == b"not regenerated"
    assert (folder / "dataset.json").stat().st_mtime_ns == stamp

    make_builtin_dataset(tmp_path, seed=3, overwrite=True, **SMALL)
    assert marker.read_bytes() != b"not regenerated"

    changed = dict(SMALL, n_train=5)
    make_builtin_dataset(tmp_path, seed=3, **changed)
    assert len(list((folder / "train/good").glob("*.png"))) == 5
    assert json.loads((folder / "dataset.json").read_text())["n_train"] == 5
    assert not list(tmp_path.glob(".*tmp*"))


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / CATEGORY).mkdir()
    (tmp_path / CATEGORY / "my_photos").mkdir()
    with pytest.raises(DataError, match="not a grdnet built-in"):
        make_builtin_dataset(tmp_path, **SMALL)
    assert (tmp_path / CATEGORY / "my_photos").is_dir()


def test_written_files_match_render_sample(dataset: Path) -> None:
    sample = render_sample(0, "test", "spot", 1)
    assert np.array_equal(_read(dataset / "test/spot/001.png"), sample.image)
    assert np.array_equal(_read(dataset / "ground_truth/spot/001_mask.png"), sample.mask)
    assert np.array_equal(_read(dataset / "roi/test/spot/001.png"), sample.roi)


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_defects_change_only_the_masked_pixels_and_are_visible(kind: str) -> None:
    for index in range(8):
        sample = render_sample(7, "test", kind, index)
        mask = sample.mask > 0
        diff = np.abs(sample.image.astype(int) - sample.clean.astype(int)).mean(-1)
        assert diff[~mask].max() == 0
        assert 6 <= mask.sum() <= 0.03 * mask.size  # visible but small: at most 3 % of the image
        assert diff[mask].mean() > 20  # grey levels out of 255


def test_good_images_have_no_defect() -> None:
    sample = render_sample(0, "train", "good", 0)
    assert np.array_equal(sample.image, sample.clean)
    assert not sample.mask.any()
