"""`ImageDataset` items, defaults for missing masks/ROIs, caching and errors inside loaders."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from grdnet.config import DataConfig
from grdnet.data import ImageDataset, Sample, index_dataset
from grdnet.errors import DataError


def test_items_have_documented_shapes_and_defaults(mvtec, files):
    roi = files.mask(mvtec.parent / "roi.png")
    index = index_dataset(DataConfig(root=mvtec.parent, category=mvtec.name, test_roi=roi))
    dataset = ImageDataset(index.test, (32, 48), 3)
    assert len(dataset) == len(index.test)
    for i, sample in enumerate(index.test):
        item = dataset[i]
        assert item["image"].shape == (3, 32, 48) and item["image"].dtype == torch.float32
        assert 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["mask"].shape == (1, 32, 48) and item["roi"].shape == (1, 32, 48)
        assert item["label"] == sample.label and item["index"] == i
        assert set(item["roi"].unique().tolist()) == {0.0, 1.0}
        if sample.mask is None:
            assert torch.all(item["mask"] == 0)
        else:
            assert item["mask"].sum() > 0 and set(item["mask"].unique().tolist()) == {0.0, 1.0}


def test_no_roi_means_ones_and_gray_channels(mvtec):
    dataset = ImageDataset([Sample(mvtec / "train" / "good" / "000.png", 0, "good")], (16, 16), 1)
    item = dataset[0]
    assert item["image"].shape == (1, 16, 16)
    assert torch.all(item["roi"] == 1) and torch.all(item["mask"] == 0)


def test_fit_puts_roi_mask_and_valid_to_zero_on_the_padding(tmp_path, files):
    image = files.image(tmp_path / "wide.png", size=(32, 16))  # width 32, height 16
    mask = files.mask(tmp_path / "wide_mask.png", size=(32, 16), box=(0, 0, 32, 16))
    roi = files.mask(tmp_path / "roi.png", size=(32, 16), box=(0, 0, 32, 16))
    with_roi = ImageDataset([Sample(image, 1, "x", mask, roi)], (32, 32), 3, resize="fit")[0]
    without_roi = ImageDataset([Sample(image, 0, "good")], (32, 32), 3, resize="fit")[0]
    for item in (with_roi, without_roi):
        assert torch.all(item["valid"][:, :16] == 1) and torch.all(item["valid"][:, 16:] == 0)
        assert torch.all(item["roi"][:, :16] == 1) and torch.all(item["roi"][:, 16:] == 0)
        assert torch.equal(item["image"][:, 16:], item["image"][:, :16].flip(1))  # padding mirrors the image
    assert torch.equal(with_roi["mask"], with_roi["valid"])
    assert torch.all(ImageDataset([Sample(image, 0, "good")], (32, 32), 3)[0]["valid"] == 1)


def test_cache_returns_equal_independent_tensors(mvtec):
    dataset = ImageDataset([Sample(mvtec / "train" / "good" / "000.png", 0, "good")], (16, 16), 3, cache=True)
    first = dataset[0]
    first["image"].zero_()
    assert dataset[0]["image"].sum() > 0


def test_read_error_names_the_file(tmp_path, files):
    broken = files.truncate(files.image(tmp_path / "broken.png", (64, 64)))
    dataset = ImageDataset([Sample(broken, 0, "good")], (16, 16), 3)
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        dataset[0]
    missing_mask = ImageDataset([Sample(files.image(tmp_path / "ok.png"), 1, "x", tmp_path / "gone.png")], (16, 16), 3)
    with pytest.raises(DataError, match=r"gone\.png: cannot read image \(file not found\)"):
        missing_mask[0]


def test_dataloader_batches_and_worker_errors(mvtec, tmp_path, files):
    index = index_dataset(DataConfig(root=mvtec, val_fraction=0))
    batch = next(iter(DataLoader(ImageDataset(index.test, (16, 16), 3), batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["label"].dtype == torch.int64
    broken = files.truncate(files.image(tmp_path / "broken.png", (64, 64)))
    loader = DataLoader(ImageDataset([Sample(broken, 0, "good")], (16, 16), 3), num_workers=1)
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        next(iter(loader))


def test_bad_channels():
    with pytest.raises(ValueError, match="channels"):
        ImageDataset([], (16, 16), 2)
