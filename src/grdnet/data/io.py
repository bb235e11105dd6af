"""Reading images, masks and ROIs from disk into tensors, and resizing them.

Images come back as float32 `(C, H, W)` in [0, 1] with C = 1 or 3; masks and ROIs as float32
`(1, H, W)` with values exactly 0 or 1. Every read problem raises `UnreadableImageError`
(a `DataError`) naming the file. Resizing is "stretch" or "fit" (aspect kept, zero padding at the bottom
and right); the geometry is `grdnet.pixels.content_size`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from grdnet.errors import DataError
from grdnet.pixels import IMAGE_EXTENSIONS, content_mask, content_size, decode_pixels, to_channels


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


def _resize(tensor: torch.Tensor, size: tuple[int, int], resize: str, **interpolation) -> torch.Tensor:
    """`(C, h, w)` → `(C, *size)`: interpolate to the content size, then zero-pad the bottom and right."""
    rows, cols = content_size(tensor.shape[-2], tensor.shape[-1], size, resize)
    if tuple(tensor.shape[-2:]) != (rows, cols):
        tensor = F.interpolate(tensor[None], size=(rows, cols), **interpolation)[0]
    if (rows, cols) == tuple(size):
        return tensor
    return F.pad(tensor, (0, size[1] - cols, 0, size[0] - rows))


def resize_image(image: torch.Tensor, size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """Bilinear, antialiased resize of `(C, h, w)` in [0, 1] into `(C, *size)`; `size` is (height, width).

    "fit" keeps the aspect ratio and pads with zeros (see `grdnet.pixels.content_size`).
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return _resize(image, size, resize, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)


def resize_mask(mask: torch.Tensor, size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """Nearest-neighbour resize of a `(1, h, w)` {0, 1} mask into `(1, *size)`; values stay exactly 0 or 1
    ("fit": 0 on the padding)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return _resize(mask, size, resize, mode="nearest-exact")


def read_image(path: Path, channels: int, size: tuple[int, int] | None = None, resize: str = "stretch") -> torch.Tensor:
    """Image file → float32 `(channels, H, W)` in [0, 1], resized into `size` = (H, W) when given (see `resize_image`).

    Gray, RGB, RGBA (alpha dropped), palette, 1-bit and 16-bit (scaled by 65535) files are accepted.
    `channels=1` turns colour into BT.601 luminance; `channels=3` replicates gray.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = torch.from_numpy(np.ascontiguousarray(to_channels(_pixels(path), channels)))
    return image if size is None else resize_image(image, size, resize)


def read_image_with_valid(path: Path, channels: int, size: tuple[int, int], resize: str = "stretch") -> tuple[torch.Tensor, torch.Tensor]:
    """Image file → (image `(channels, *size)` in [0, 1], valid `(1, *size)`: 1 on the image, 0 on "fit" padding)."""
    image = read_image(path, channels)
    valid = torch.from_numpy(content_mask(image.shape[-2], image.shape[-1], size, resize))[None]
    return resize_image(image, size, resize), valid


def read_mask(path: Path, size: tuple[int, int] | None = None, resize: str = "stretch") -> torch.Tensor:
    """Mask or ROI file → float32 `(1, H, W)`: 1 where any channel is nonzero, else 0; nearest-resized into `size`."""
    pixels = _pixels(path)
    binary = pixels > 0 if pixels.ndim == 2 else (pixels > 0).any(axis=2)
    mask = torch.from_numpy(binary.astype(np.float32))[None]
    return mask if size is None else resize_mask(mask, size, resize)
