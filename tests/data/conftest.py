"""Tiny hand-made datasets written with PIL into tmp_path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (16, 16), mode: str = "L", seed: int = 0) -> Path:
    """Random image of `size` = (width, height) in `mode`, saved by extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (16, 16), box: tuple[int, int, int, int] = (4, 4, 8, 8)) -> Path:
    """0/255 mask of `size` = (width, height), 255 inside `box` = (x0, y0, x1, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(path)
    return path


def truncate(path: Path) -> Path:
    """Cut a file to half its size (the header stays readable)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_mvtec(
    category: Path,
    n_train: int = 10,
    n_good: int = 3,
    defects: dict[str, int] | None = None,
    good: str = "good",
    size: tuple[int, int] = (16, 16),
) -> Path:
    """MVTec-style category folder (BTAD with good="ok", defects={"ko": n}); masks `<stem>_mask.png`."""
    defects = {"scratch": 2, "dent": 3} if defects is None else defects
    for i in range(n_train):
        write_image(category / "train" / good / f"{i:03d}.png", size, seed=i)
    for i in range(n_good):
        write_image(category / "test" / good / f"{i:03d}.png", size, seed=100 + i)
    for kind, count in defects.items():
        for i in range(count):
            write_image(category / "test" / kind / f"{i:03d}.png", size, seed=200 + i)
            write_mask(category / "ground_truth" / kind / f"{i:03d}_mask.png", size)
    return category


@pytest.fixture
def files() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(image=write_image, mask=write_mask, truncate=truncate, mvtec=make_mvtec)


@pytest.fixture
def mvtec(tmp_path) -> Path:
    """Default MVTec-style category `tmp_path/ds/widget`: 10 train, 3 good test, scratch 2 + dent 3 defects."""
    return make_mvtec(tmp_path / "ds" / "widget")
