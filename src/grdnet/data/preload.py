"""Preloading: a split decoded once into stacked CPU tensors, for a loop that indexes batches in memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch

from grdnet.config import DataConfig
from grdnet.data.dataset import ImageDataset
from grdnet.data.samples import Sample


def load_tensors(samples: list[Sample], cfg: DataConfig, keys: Sequence[str] = ("image", "roi")) -> dict[str, torch.Tensor]:
    """Decode `samples` as `ImageDataset` reads them (in `cfg.num_workers` threads, 4 when 0) into stacked CPU
    tensors of the items named by `keys`: `image` (N,C,H,W), `roi`, `mask`, `valid` (N,1,H,W)."""
    dataset = ImageDataset(samples, cfg.image_size, cfg.channels, cfg.resize)
    with ThreadPoolExecutor(max_workers=max(1, cfg.num_workers or 4)) as pool:
        items = list(pool.map(dataset.__getitem__, range(len(dataset))))
    if not items:
        (h, w) = cfg.image_size
        return {k: torch.zeros(0, cfg.channels if k == "image" else 1, h, w) for k in keys}
    return {k: torch.stack([item[k] for item in items]) for k in keys}
