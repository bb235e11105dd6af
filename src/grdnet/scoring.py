"""From anomaly maps to scores and defect regions (SPEC.md §3, inference).

`smooth_map` and `image_score` are plain torch ops (ONNX-exportable, any float dtype including bf16);
`regions` post-processes one smoothed map on the CPU for reports and the serving API.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from grdnet.predictions_io import find_regions


def smooth_map(maps: torch.Tensor, kernel: int = 21) -> torch.Tensor:
    """Average-pool anomaly maps `(B, 1, H, W)` with a `kernel`×`kernel` window, stride 1, same padding.

    Padding is excluded from the average (`count_include_pad=False`): a border pixel is the mean of the
    pixels that exist, so defects at the image border are not darkened by zero padding.
    Returns a tensor of the same shape and dtype.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"smoothing kernel must be a positive odd number, got {kernel}")
    return F.avg_pool2d(maps, kernel, stride=1, padding=kernel // 2, count_include_pad=False)


def image_score(smoothed: torch.Tensor) -> torch.Tensor:
    """Image score `(B,)`: the maximum of each smoothed map `(B, 1, H, W)`."""
    return smoothed.flatten(1).amax(dim=1)


def _as_2d(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        array = array.float() if array.is_floating_point() else array
        array = array.numpy()
    array = np.asarray(array)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"expected one map of shape (H, W) or (1, H, W), got shape {array.shape}")
    return array


def regions(
    smoothed_map: np.ndarray | torch.Tensor,
    threshold: float,
    roi: np.ndarray | torch.Tensor | None = None,
) -> list[dict]:
    """Connected regions (8-connectivity) of `smoothed_map >= threshold` inside the ROI.

    `smoothed_map` and `roi` are `(H, W)` or `(1, H, W)` (ROI: 1 inside, 0 outside; None = whole image).
    Each region is `{"bbox": [x0, y0, x1, y1], "area": pixels, "peak": max score}` with inclusive pixel
    coordinates; regions are sorted by peak, highest first. Values are plain Python numbers.
    """
    return find_regions(_as_2d(smoothed_map), threshold, None if roi is None else _as_2d(roi))
