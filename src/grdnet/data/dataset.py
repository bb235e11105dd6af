"""`ImageDataset`: samples → resized tensors for a `DataLoader`."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from grdnet.data.io import read_image_with_valid, read_mask
from grdnet.data.samples import Sample


class ImageDataset(Dataset):
    """Reads each sample's image, mask and ROI resized into `image_size` = (H, W) (`resize`: "stretch" or "fit").

    Items are dicts: `image` float32 (C, H, W) in [0, 1], `mask` float32 (1, H, W) in {0, 1} (zeros when
    the sample has none), `roi` float32 (1, H, W) in {0, 1} (ones when none; always 0 on "fit" padding),
    `valid` float32 (1, H, W): 1 where the image lies, 0 on "fit" padding, `label` int, `index` int
    (position in `samples`). Read problems raise `DataError` naming the file. With `cache=True` decoded,
    resized tensors are kept in memory (per `DataLoader` worker process).
    """

    def __init__(self, samples: list[Sample], image_size: tuple[int, int], channels: int, resize: str = "stretch",
                 cache: bool = False):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.samples = list(samples)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels = channels
        self.resize = resize
        self._cache: dict[int, tuple[torch.Tensor, ...]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> tuple[torch.Tensor, ...]:
        sample, size = self.samples[i], self.image_size
        image, valid = read_image_with_valid(sample.image, self.channels, size, self.resize)
        mask = read_mask(sample.mask, size, self.resize) if sample.mask is not None else torch.zeros(1, *size)
        roi = read_mask(sample.roi, size, self.resize) * valid if sample.roi is not None else valid.clone()
        return image, mask, roi, valid

    def __getitem__(self, i: int) -> dict:
        if self._cache is None:
            image, mask, roi, valid = self._load(i)
        else:
            if i not in self._cache:
                self._cache[i] = self._load(i)
            image, mask, roi, valid = (t.clone() for t in self._cache[i])
        return {"image": image, "mask": mask, "roi": roi, "valid": valid, "label": int(self.samples[i].label),
                "index": int(i)}
