"""From raw model outputs to smoothed maps, image scores and defect regions.

`ScoringHead` is the one scoring rule: the validator, both predictors, the service and the exported ONNX
graph all run it (`ScoredModel` = a model followed by its head). `smooth_map` and `image_score` are plain
torch ops (ONNX-exportable, any float dtype including bf16); `regions` post-processes one smoothed map on the
CPU for reports and the serving API.

The image score of a map-scored method (its record's `map_scored`, `grdnet.methods`) is
`max(smooth(anomaly_map) ⊙ region)`, where `region` (B, 1, H, W) is 1 where the image is inspected: inside the
ROI when one is given, and never on "fit" padding. Smoothing runs on the whole map first, so a defect at the
ROI's edge keeps its smoothed strength (the GRD-Net paper's inference: the ROI multiplies the smoothed map).
Other methods keep their own `score`; their maps are masked the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


class ScoringHead(nn.Module):
    """Raw model outputs → the outputs every entry point reports.

    `forward(outputs, region=None)`: `outputs` holds `anomaly_map` (B, 1, H, W) and, for methods that are not
    map-scored, `score` (B,); `region` (B, 1, H, W) in {0, 1} is where the image is inspected (None = all of
    it). Returns `anomaly_map` and `smoothed_map` (float32, 0 outside the region), `score` (B,) (see the
    module docstring) and the model's other outputs unchanged. A `smoothed_map` or (for map-scored methods)
    `score` the model returns is replaced.
    """

    def __init__(self, smoothing_kernel: int, map_scored: bool) -> None:
        super().__init__()
        self.smoothing_kernel = smoothing_kernel
        self.map_scored = map_scored

    def forward(self, outputs: dict[str, Tensor], region: Tensor | None = None) -> dict[str, Tensor]:
        anomaly_map = outputs["anomaly_map"].float()
        smoothed = smooth_map(anomaly_map, self.smoothing_kernel)
        if region is not None:
            region = region.to(smoothed)
            anomaly_map, smoothed = anomaly_map * region, smoothed * region
        scored = {name: value for name, value in outputs.items() if name not in ("anomaly_map", "smoothed_map", "score")}
        scored["anomaly_map"], scored["smoothed_map"] = anomaly_map, smoothed
        scored["score"] = image_score(smoothed) if self.map_scored else outputs["score"].float()
        return scored


class ScoredModel(nn.Module):
    """`model` (raw outputs, possibly a `TiledModel`) followed by its `ScoringHead`: `forward(image, region=None)`."""

    def __init__(self, model: nn.Module, head: ScoringHead) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.train(model.training)

    def forward(self, x: Tensor, region: Tensor | None = None) -> dict[str, Tensor]:
        return self.head(self.model(x), region)


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
