"""Hardware profiles: the training configuration `grdnet train` picks when the user does not set one.

A profile fills in only the settings the user left unset (flags, `--set` and YAML keys always win):
- `cpu` (the default without a GPU): for the methods whose record says `tileable` (today GRD-Net and DRAEM), the
  photos at about their own resolution (the median training image size, each side rounded up to a multiple
  of 32, at most 1024; "fit" resize so nothing is stretched), a narrow network (the record's `profiles`; for
  GRD-Net a segmenter that also reads frozen pretrained features and a memory of normal patches) trained on
  random 64² tiles of them; for every method a 30-minute wall-clock budget. Shrinking a
  high-resolution photo to fit a CPU erases small defects; tiles keep their pixels at a cost per step that
  does not grow with the photo.
- `gpu` (the default with CUDA): the same geometry with 128² tiles (the tile size of the GRD-Net authors'
  rebuild), wider networks, bf16 and a 2-hour budget.
- `paper`: the GRD-Net paper's recipe as `RunConfig`'s defaults give it (256², widths 64, 200 epochs,
  no time budget).
The chosen size depends on the data (image headers only, nothing is decoded), so `resolve_profile` needs
the data section; it returns the configuration and the one line `grdnet train` prints about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image

from grdnet.config import RunConfig
from grdnet.errors import DataError
from grdnet.methods import get_method

PROFILES = ("auto", "cpu", "gpu", "paper")
SIZE_MULTIPLE = 32
MAX_SIDE = 1024
HEADER_SAMPLE = 256
"""At most this many training images (evenly spread) are opened to read their size and mode."""
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}

_SYNTHESIS = {"synthesis.texture": "self", "synthesis.probability": 0.75, "synthesis.beta": (0.1, 0.8),
              "synthesis.perlin_scale_exponents": (2, 6), "synthesis.rotation_degrees": 0.0,
              "synthesis.local_extent": (3.0, 16.0), "synthesis.local_share": 0.5, "synthesis.stroke_share": 0.5,
              "scoring.smoothing_kernel": 7}
"""Shared by `cpu` and `gpu` for the tileable methods: anomalies cut from the product itself, no rotation (it paints black corners into
tiles), half of the anomalies confined to small local
marks (pits, short cracks, stains: 6–32 px blobs, or thin strokes 6–64 px long for cracks and scratches), small smoothing (at native resolution a 21-px window would blur small marks away)."""

_CPU_VALIDATION = {"train.val_every": 1, "train.val_share": 0.2}
"""`cpu`, tileable methods: validation (whole validation images, tiled) costs several training epochs on a CPU,
so it runs as often as keeps it at a fifth of the time, instead of every few epochs (which spent 70 % of a
30-minute budget on it)."""

BUDGET_MINUTES = {"cpu": 30.0, "gpu": 120.0}
TILE = {"cpu": 64, "gpu": 128}
BUDGET_EPOCHS = 10_000
"""Epoch limit under a wall-clock budget: large, so the budget decides when training ends."""
GEOMETRY = ("data.image_size", "data.resize", "data.tile_size", "data.tile_stride")
"""Set together: when the user sets one of them, the profile sets none."""


@dataclass(frozen=True)
class ImageStats:
    """Median (height, width) of the sampled training images and whether all of them are grayscale."""

    median_size: tuple[int, int]
    grayscale: bool
    count: int


def image_stats(paths: Iterable) -> ImageStats:
    """Reads only the headers of up to `HEADER_SAMPLE` of `paths` (evenly spread)."""
    paths = list(paths)
    if not paths:
        raise DataError("no training images to size a profile from; check --data-root and --category")
    picked = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(len(paths), HEADER_SAMPLE)).round()]
    sizes, gray = [], True
    for path in picked:
        try:
            with Image.open(path) as img:
                sizes.append((img.height, img.width))
                gray &= img.mode in GRAY_MODES
        except OSError as error:
            raise DataError(f"{path}: cannot read the image header ({error}); fix or remove the file") from None
    height, width = np.median(np.array(sizes), axis=0)
    return ImageStats((int(height), int(width)), gray, len(picked))


def working_size(median: tuple[int, int], tile: int) -> tuple[int, int]:
    """(H, W) a dataset is fitted into: its median size, the longer side at most `MAX_SIDE` (aspect kept),
    each side rounded up to a multiple of 32 and at least `tile`."""
    scale = min(1.0, MAX_SIDE / max(median))
    return tuple(max(tile, SIZE_MULTIPLE * math.ceil(side * scale / SIZE_MULTIPLE)) for side in median)


def detect(device: str) -> str:
    """'gpu' when `device` is auto/cuda and CUDA is available, else 'cpu'."""
    import torch

    return "gpu" if device != "cpu" and torch.cuda.is_available() else "cpu"


def resolve_profile(cfg: RunConfig, profile: str, user_keys: set[str]) -> tuple[RunConfig, str]:
    """`cfg` with the profile's settings for every dotted key not in `user_keys`, and a one-line summary.

    `cfg.data` must point at the dataset (the working size comes from its training images' headers).
    """
    if profile not in PROFILES:
        raise DataError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    chosen = detect(cfg.train.device) if profile == "auto" else profile
    if chosen == "paper":
        return cfg, "profile paper: the GRD-Net paper's recipe (256², widths 64, 200 epochs, no time budget)"
    method, record = cfg.model.name, get_method(cfg.model.name)
    if record.single_pass:  # no epoch or time budget to set
        return cfg, f"profile {chosen}: {method} makes one pass over the training images; its own defaults apply"
    settings: dict[str, Any] = {**record.profiles.get(chosen, {}), **(_SYNTHESIS if record.tileable else {}),
                                **(_CPU_VALIDATION if record.tileable and chosen == "cpu" else {})}
    settings["train.max_minutes"] = BUDGET_MINUTES[chosen]
    settings["train.epochs"] = BUDGET_EPOCHS
    reason = "no GPU found" if chosen == "cpu" else "CUDA GPU found"
    geometry = ""
    if record.tileable:
        from grdnet.data import index_dataset

        index = index_dataset(cfg.data.model_copy(update={"contamination": 0.0}), check_images=False)
        stats = image_stats(s.image for s in index.train)
        tile = TILE[chosen]
        size = working_size(stats.median_size, tile)
        settings["data.image_size"] = size
        settings["data.resize"] = "fit"
        if min(size) >= 2 * tile:
            settings["data.tile_size"] = (tile, tile)
            settings["data.tile_stride"] = (tile // 2, tile // 2)
        settings["data.channels"] = 1 if stats.grayscale else 3
        geometry = f"photos fitted into {size[0]}×{size[1]} (median of {stats.count})"
    kept = sorted(key for key in settings if key in user_keys)
    if user_keys & set(GEOMETRY):  # the user chose the geometry: none of it comes from the profile
        user_keys = user_keys | set(GEOMETRY)
    applied = {key: value for key, value in settings.items() if key not in user_keys}
    resolved = cfg.updated(applied)
    data, model, train = resolved.data, resolved.model, resolved.train
    parts = [geometry] if geometry and "data.image_size" in applied else []
    if data.tile_size:
        parts.append(f"{data.tile_size[0]}² tiles")
    if method == "grdnet":
        features = ""
        if model.segmenter_features == "pretrained":
            memory = f" and a {model.memory_bank_size}-patch normal memory" if model.memory_bank_size else ""
            features = f" on pretrained features{memory}"
        parts.append(f"GAN {model.base_width}→{model.max_width} with {model.stages} stages, segmenter {model.segmenter_width}{features}")
    parts.append(f"batch {train.batch_size}, lr {train.lr:g}")
    budget = f"{train.max_minutes:g}-minute budget" if train.max_minutes else f"{train.epochs} epochs"
    parts.append(budget + (" (--max-minutes)" if "train.max_minutes" in applied else ""))
    note = f"; kept your {', '.join(kept)}" if kept else ""
    message = (f"profile {chosen} ({reason}): {', '.join(parts)}{note}. "
               "The paper's recipe is --profile paper")
    return resolved, message
