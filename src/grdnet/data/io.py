"""Reading images, masks and ROIs from disk into tensors, and resizing them.

Images come back as float32 `(C, H, W)` in [0, 1] with C = 1 or 3; masks and ROIs as float32
`(1, H, W)` with values exactly 0 or 1. Every read problem raises `UnreadableImageError`
(a `DataError`) naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from grdnet.errors import DataError
from grdnet.pixels import IMAGE_EXTENSIONS, decode_pixels, to_channels


class UnreadableImageError(DataError):
    """An image file is missing, truncated or not decodable; `path` and `reason` say which and why."""

    def __init__(self, message: str, path: Path | None = None, reason: str = ""):
        super().__init__(message)
        self.path = path
        self.reason = reason


def is_image_file(path: Path) -> bool:
    """True for a visible file name with an image extension (the file itself is not opened)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _unreadable(path: Path, error: Exception) -> UnreadableImageError:
    reason = "file not found" if isinstance(error, FileNotFoundError) else (str(error) or type(error).__name__)
    return UnreadableImageError(
        f"{path}: cannot read image ({reason}); replace or delete the file", path=Path(path), reason=reason
    )


def probe_image(path: Path, decode: bool = True) -> tuple[int, int]:
    """(width, height) of an image file; with `decode` the pixels are fully decoded to catch truncation."""
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            return img.size
    except Exception as error:  # Pillow raises many types for corrupt files
        raise _unreadable(path, error) from None


def _pixels(path: Path) -> np.ndarray:
    """Decoded pixels as float32 in [0, 1], shape (H, W) for gray modes or (H, W, 3) for colour ones."""
    try:
        return decode_pixels(path)
    except Exception as error:
        raise _unreadable(path, error) from None


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of `(C, H, W)` in [0, 1] to `(C, *size)`; `size` is (height, width)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = F.interpolate(image[None], size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp_(0.0, 1.0)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a `(1, H, W)` {0, 1} mask to `(1, *size)`; values stay exactly 0 or 1."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None], size=tuple(size), mode="nearest-exact")[0]


def read_image(path: Path, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Image file → float32 `(channels, H, W)` in [0, 1], resized to `size` = (H, W) when given.

    Gray, RGB, RGBA (alpha dropped), palette, 1-bit and 16-bit (scaled by 65535) files are accepted.
    `channels=1` turns colour into BT.601 luminance; `channels=3` replicates gray.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = torch.from_numpy(np.ascontiguousarray(to_channels(_pixels(path), channels)))
    return image if size is None else resize_image(image, size)


def read_mask(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Mask or ROI file → float32 `(1, H, W)`: 1 where any channel is nonzero, else 0; nearest-resized to `size`."""
    pixels = _pixels(path)
    binary = pixels > 0 if pixels.ndim == 2 else (pixels > 0).any(axis=2)
    mask = torch.from_numpy(binary.astype(np.float32))[None]
    return mask if size is None else resize_mask(mask, size)
