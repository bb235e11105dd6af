"""Torch-free image decoding with Pillow and NumPy (shared by `grdnet.data.io` and the ONNX predictor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions treated as images (compared case-insensitively)."""

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def decode_pixels(path: Path) -> np.ndarray:
    """Decoded pixels as float32 in [0, 1], (H, W) for gray modes or (H, W, 3) for colour ones.

    Raises whatever Pillow raises; callers turn it into a user-facing error.
    """
    with Image.open(path) as img:
        img.load()
        mode = img.mode
        if mode in _SIXTEEN_BIT_MODES or mode == "I":
            return np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0)
        if mode == "F":
            return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        if mode == "1":
            return np.asarray(img, dtype=np.float32)
        if mode in ("L", "LA", "La"):
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        # RGB, RGBA (alpha dropped), palette, CMYK, YCbCr, ...
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) float pixels → (channels, H, W): BT.601 luminance for 1, gray replicated for 3."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if pixels.ndim == 2:
        return np.repeat(pixels[None], channels, axis=0)
    if channels == 1:
        return (pixels @ LUMA)[None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (C, H, W) float32 to (C, *size) with Pillow, channel by channel, clipped to [0, 1].

    Pillow's bilinear filter is antialiased like torch's `antialias=True` resize but not bit-identical:
    expect differences of order 1e-3 in the resized pixels.
    """
    height, width = size
    if image.shape[-2:] == (height, width):
        return image.astype(np.float32, copy=False)
    planes = [np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
              for plane in image]
    return np.clip(np.stack(planes), 0.0, 1.0).astype(np.float32)
