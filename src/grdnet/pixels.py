"""The one pixel path, NumPy and Pillow only (so the torch-free ONNX predictor shares it): decode, to channels,
resize, mask binarisation, array → (C, H, W).

Training data (`grdnet.data.io`), texture folders, both predictors and the service all go through these
functions, so the same image gives the same pixels whatever the entry point:
- decoding: gray modes stay one channel, everything else becomes RGB (alpha dropped), 16-bit is scaled by 65535;
- channels: colour → gray is ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B); gray → colour repeats the plane;
- resize: Pillow's antialiased bilinear filter on float32 planes for images, nearest neighbour at pixel
  centres for masks and ROIs. "stretch" resizes to (H, W); "fit" scales uniformly so the image fits inside
  (H, W), places it at the top-left corner and fills the bottom and right with the image mirrored at its edges
  (`content_size`), so no model sees an artificial black edge; masks, ROIs and `content_mask` are 0 there and no
  score counts it;
- masks and ROIs: a pixel is "inside" when any channel is above zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File extensions treated as images (compared case-insensitively)."""

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def image_pixels(img: Image.Image) -> np.ndarray:
    """A loaded Pillow image's pixels as float32 in [0, 1], (H, W) for gray modes or (H, W, 3) for colour ones."""
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


def decode_pixels(path: Path | IO[bytes]) -> np.ndarray:
    """An image file's pixels (see `image_pixels`). Raises whatever Pillow raises; callers turn it into a
    user-facing error."""
    with Image.open(path) as img:
        img.load()
        return image_pixels(img)


def array_pixels(array: np.ndarray) -> np.ndarray:
    """A user's array (H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) of uint8, uint16 or float in [0, 1] → float32
    pixels in [0, 1], (H, W) or (H, W, 3) (alpha dropped), as `decode_pixels` gives them."""
    array = np.asarray(array)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
    pixels = np.clip(array.astype(np.float32) / scale, 0.0, 1.0)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        return pixels[..., 0]
    return pixels[..., :3] if pixels.ndim == 3 else pixels


def chw_pixels(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] with C = 1, 3 or 4 → pixels (H, W) or (H, W, 3) (a fourth channel dropped)."""
    return image[0] if image.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(image[:3], 0, -1))


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
    the image sits at the top-left corner and the rest is padding.
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
    """Bilinear (antialiased) resize of (C, h, w) float32 into (C, *size) with Pillow, plane by plane, clipped to
    [0, 1]; "fit" keeps the aspect ratio and pads the bottom and right with the image mirrored (symmetric
    reflection, repeated where the padding is wider than the image; see `content_size`)."""
    rows, cols = content_size(image.shape[-2], image.shape[-1], size, resize)
    if image.shape[-2:] != (rows, cols):
        planes = [np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((cols, rows), Image.BILINEAR))
                  for plane in image]
        image = np.clip(np.stack(planes), 0.0, 1.0)
    image = image.astype(np.float32, copy=False)
    if (rows, cols) == tuple(size):
        return image
    return np.pad(image, ((0, 0), (0, size[0] - rows), (0, size[1] - cols)), mode="symmetric")


def binarize(pixels: np.ndarray) -> np.ndarray:
    """Mask or ROI pixels (H, W) or (H, W, C) → (H, W) float32: 1 where any channel is above zero, else 0."""
    inside = pixels > 0 if pixels.ndim == 2 else (pixels > 0).any(axis=-1)
    return inside.astype(np.float32)


def resize_mask_array(mask: np.ndarray, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """Nearest-neighbour resize of a (h, w) or (1, h, w) {0, 1} mask into (1, *size), sampling each output pixel's
    centre; values stay exactly 0 or 1 ("fit": 0 on the padding)."""
    mask = mask[0] if mask.ndim == 3 else mask
    height, width = mask.shape
    rows, cols = content_size(height, width, size, resize)
    pick_rows = np.minimum(((np.arange(rows) + 0.5) * height / rows).astype(np.int64), height - 1)
    pick_cols = np.minimum(((np.arange(cols) + 0.5) * width / cols).astype(np.int64), width - 1)
    resized = np.zeros((1, *size), dtype=np.float32)
    resized[0, :rows, :cols] = mask[np.ix_(pick_rows, pick_cols)]
    return resized


def prepare_pixels(pixels: np.ndarray, channels: int, size: tuple[int, int],
                   resize: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """Pixels (H, W) or (H, W, 3) → (image (channels, *size) float32 in [0, 1], valid (*size) float32: 1 where the
    image lies, 0 on "fit" padding). What every predictor feeds its model."""
    height, width = pixels.shape[:2]
    return resize_array(to_channels(pixels, channels), size, resize), content_mask(height, width, size, resize)
