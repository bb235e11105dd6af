"""Reading images, masks and ROIs from disk into tensors, and resizing them.

Images come back as float32 `(C, H, W)` in [0, 1] with C = 1 or 3; masks and ROIs as float32
`(1, H, W)` with values exactly 0 or 1. Every read problem raises `UnreadableImageError`
(a `DataError`) naming the file. Decoding, channels, resizing ("stretch" or "fit") and mask binarisation
are `grdnet.pixels`' (the one pixel path, shared with both predictors and the service); this module wraps
them in tensors and file errors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from grdnet.errors import DataError
from grdnet.pixels import (
    IMAGE_EXTENSIONS,
    binarize,
    content_mask,
    decode_pixels,
    resize_array,
    resize_mask_array,
    to_channels,
)


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


_END_MARKERS = {".png": b"IEND\xaeB`\x82", ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}
"""The bytes a complete PNG (IEND chunk) or JPEG (end-of-image marker) file ends with."""
_TAIL_BYTES = 64


def _has_end_marker(path: Path) -> bool:
    """True when a PNG / JPEG file's last bytes hold its end marker (a cut file has none); False for other types."""
    marker = _END_MARKERS.get(path.suffix.lower())
    if marker is None:
        return False
    with open(path, "rb") as handle:
        handle.seek(max(0, handle.seek(0, 2) - _TAIL_BYTES))
        return marker in handle.read()


def probe_image(path: Path, check_truncation: bool = True) -> tuple[int, int]:
    """(width, height) of an image file from its header.

    With `check_truncation` a cut file is rejected too: PNG and JPEG files by their end marker (no decoding),
    other files (or ones whose marker is not among the last bytes) by decoding the pixels. Damage inside a
    complete PNG / JPEG file is found when the image is read.
    """
    try:
        with Image.open(path) as img:
            if check_truncation and not _has_end_marker(Path(path)):
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


def resize_image(image: torch.Tensor, size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """`grdnet.pixels.resize_array` for a CPU `(C, h, w)` tensor in [0, 1] → `(C, *size)`; `size` is (height, width)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return torch.from_numpy(resize_array(image.float().numpy(), size, resize))


def resize_mask(mask: torch.Tensor, size: tuple[int, int], resize: str = "stretch") -> torch.Tensor:
    """`grdnet.pixels.resize_mask_array` for a CPU `(1, h, w)` {0, 1} tensor → `(1, *size)` ("fit": 0 on the padding)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return torch.from_numpy(resize_mask_array(mask.float().numpy(), size, resize))


def read_image(path: Path, channels: int, size: tuple[int, int] | None = None, resize: str = "stretch") -> torch.Tensor:
    """Image file → float32 `(channels, H, W)` in [0, 1], resized into `size` = (H, W) when given.

    Gray, RGB, RGBA (alpha dropped), palette, 1-bit and 16-bit (scaled by 65535) files are accepted.
    `channels=1` turns colour into BT.601 luminance; `channels=3` replicates gray (see `grdnet.pixels`).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = to_channels(_pixels(path), channels)
    return torch.from_numpy(np.ascontiguousarray(image if size is None else resize_array(image, size, resize)))


def read_image_with_valid(path: Path, channels: int, size: tuple[int, int], resize: str = "stretch") -> tuple[torch.Tensor, torch.Tensor]:
    """Image file → (image `(channels, *size)` in [0, 1], valid `(1, *size)`: 1 on the image, 0 on "fit" padding)."""
    image = to_channels(_pixels(path), channels)
    valid = torch.from_numpy(content_mask(image.shape[-2], image.shape[-1], size, resize))[None]
    return torch.from_numpy(np.ascontiguousarray(resize_array(image, size, resize))), valid


def read_mask(path: Path, size: tuple[int, int] | None = None, resize: str = "stretch") -> torch.Tensor:
    """Mask or ROI file → float32 `(1, H, W)`: 1 where any channel is nonzero, else 0; nearest-resized into `size`."""
    mask = binarize(_pixels(path))
    return torch.from_numpy(mask[None] if size is None else resize_mask_array(mask, size, resize))
