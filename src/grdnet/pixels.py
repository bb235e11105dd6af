"""Torch-free image decoding and resize geometry with Pillow and NumPy (shared by `grdnet.data.io` and the ONNX predictor).

Resize modes: "stretch" resizes to (H, W); "fit" scales uniformly so the image fits inside (H, W), places it
at the top-left corner and pads the bottom and right with zeros. `content_size` is the one place that
geometry is computed.
"""

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


def content_size(height: int, width: int, size: tuple[int, int], resize: str = "stretch") -> tuple[int, int]:
    """(h, w) that a height × width image occupies once resized into `size` = (H, W).

    "stretch": all of (H, W). "fit": the largest aspect-preserving size inside (H, W) (at least 1 pixel a side);
    the image sits at the top-left corner and the rest is zero padding.
    """
    if resize == "stretch":
        return int(size[0]), int(size[1])
    if resize != "fit":
        raise ValueError(f"resize must be 'stretch' or 'fit', got {resize!r}")
    scale = min(size[0] / height, size[1] / width)
    return min(size[0], max(1, round(height * scale))), min(size[1], max(1, round(width * scale)))


def content_mask(height: int, width: int, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """(H, W) float32 mask of where a height × width image lies after resizing into `size`: 1 on it, 0 on padding."""
    valid = np.zeros(size, dtype=np.float32)
    rows, cols = content_size(height, width, size, resize)
    valid[:rows, :cols] = 1.0
    return valid


def resize_array(image: np.ndarray, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """Bilinear resize of (C, h, w) float32 into (C, *size) with Pillow, channel by channel, clipped to [0, 1];
    "fit" keeps the aspect ratio and zero-pads the bottom and right (see `content_size`).

    Pillow's bilinear filter is antialiased like torch's `antialias=True` resize but not bit-identical:
    expect differences of order 1e-3 in the resized pixels.
    """
    rows, cols = content_size(image.shape[-2], image.shape[-1], size, resize)
    if image.shape[-2:] != (rows, cols):
        planes = [np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((cols, rows), Image.BILINEAR))
                  for plane in image]
        image = np.clip(np.stack(planes), 0.0, 1.0)
    image = image.astype(np.float32, copy=False)
    if (rows, cols) == tuple(size):
        return image
    return np.pad(image, ((0, 0), (0, size[0] - rows), (0, size[1] - cols)))
