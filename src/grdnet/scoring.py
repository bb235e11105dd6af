"""From raw model outputs to smoothed maps, image scores and defect regions.

`ScoringHead` is the one scoring rule: the validator, both predictors, the service and the exported ONNX
graph all run it (`ScoredModel` = a model followed by its head). `smooth_map` and `image_score` are plain
torch ops (ONNX-exportable, any float dtype including bf16); `regions` post-processes one smoothed map on the
CPU for reports and the serving API.

The image score of a map-scored method (its record's `map_scored`, `grdnet.methods`) is
`max(standardize(smooth(anomaly_map)) ⊙ region)`, where `region` (B, 1, H, W) is 1 where the image is
inspected: inside the ROI when one is given, and never on "fit" padding. Smoothing runs on the whole map first,
so a defect at the ROI's edge keeps its smoothed strength (the GRD-Net paper's inference: the ROI multiplies the
smoothed map). Other methods keep their own `score`; their maps are masked the same way.

`standardize` is the per-position normal model (`NormalStats`): the smoothed map minus the mean that the
validation normals have at each pixel, over their standard deviation there. Products on a line sit where the
camera puts them, so a fixture edge, a chamfer or a printed mark that the model always reconstructs a little
badly is high in every map; in units of its own normal spread it is not, and a real defect of the same raw
height elsewhere is. Without stats (too few normals, or a method that is not map-scored) the map is left raw.
"""

from __future__ import annotations

from dataclasses import dataclass

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


NORMAL_STATS_PRIOR = 5.0
"""Pseudo-count of the image-wide moments in each position's mean and variance: a position seen in n
validation normals gets weight n / (n + 5) on its own moments, so few normals (or a position that only some
images cover) fall back toward the image-wide statistics instead of dividing by a noisy local spread."""

NORMAL_STATS_STD_FLOOR = 0.1
"""A position's standard deviation is at least this fraction of the median one (no division by ~0)."""


@dataclass(frozen=True)
class NormalStats:
    """Per-position statistics of validation normals' smoothed maps: `mean` and `std`, each (1, 1, H, W)
    float32 at data.image_size (`std` > 0). Stored in the checkpoint as `normal_stats` (`to_state`)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, smoothed: Tensor, region: Tensor, kernel: int) -> "NormalStats":
        """From the smoothed maps (N, 1, H, W) of N >= 1 normal images and where each was inspected, `region`
        (N, 1, H, W) in {0, 1}: per-position moments shrunk toward the image-wide ones (`NORMAL_STATS_PRIOR`),
        each smoothed with the map's own `kernel` (the scale the maps are compared at), std floored at
        `NORMAL_STATS_STD_FLOOR` × its median."""
        maps, weight = smoothed.float(), (region > 0.5).float()
        inspected = weight.sum()
        if inspected == 0:
            raise ValueError("normal statistics need at least one inspected pixel of a normal image")
        overall_mean = (maps * weight).sum() / inspected
        overall_square = (maps.square() * weight).sum() / inspected
        count = weight.sum(0, keepdim=True) + NORMAL_STATS_PRIOR
        mean = ((maps * weight).sum(0, keepdim=True) + NORMAL_STATS_PRIOR * overall_mean) / count
        square = ((maps.square() * weight).sum(0, keepdim=True) + NORMAL_STATS_PRIOR * overall_square) / count
        variance = (square - mean.square()).clamp_min(0)
        mean, std = smooth_map(mean, kernel), smooth_map(variance, kernel).sqrt()
        std = std.clamp_min(max(NORMAL_STATS_STD_FLOOR * float(std.median()), 1e-6))
        return cls(mean, std)

    def to_state(self) -> dict[str, Tensor]:
        return {"mean": self.mean.cpu(), "std": self.std.cpu()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor] | None) -> "NormalStats | None":
        return None if state is None else cls(state["mean"].float(), state["std"].float())


def standardize(smoothed: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """`(smoothed - mean) / std` per position; `smoothed` (B, 1, h, w), `mean` and `std` (1, 1, H, W) are
    resized (bilinear) to the map's size, an identity when it is data.image_size."""
    size = smoothed.shape[-2:]
    mean = F.interpolate(mean, size=size, mode="bilinear", align_corners=False)
    std = F.interpolate(std, size=size, mode="bilinear", align_corners=False)
    return (smoothed - mean) / std


class ScoringHead(nn.Module):
    """Raw model outputs → the outputs every entry point reports.

    `forward(outputs, region=None)`: `outputs` holds `anomaly_map` (B, 1, H, W) and, for methods that are not
    map-scored, `score` (B,); `region` (B, 1, H, W) in {0, 1} is where the image is inspected (None = all of
    it). Returns `anomaly_map` (float32, raw) and `smoothed_map` (float32, smoothed and, with `normal_stats`
    on a map-scored method, standardized: the units the threshold and the regions use), both 0 outside the
    region, `score` (B,) (see the module docstring) and the model's other outputs unchanged. A `smoothed_map`
    or (for map-scored methods) `score` the model returns is replaced.
    """

    def __init__(self, smoothing_kernel: int, map_scored: bool, normal_stats: NormalStats | None = None) -> None:
        super().__init__()
        self.smoothing_kernel = smoothing_kernel
        self.map_scored = map_scored
        self.standardized = map_scored and normal_stats is not None
        if self.standardized:
            self.register_buffer("normal_mean", normal_stats.mean.float().clone())
            self.register_buffer("normal_std", normal_stats.std.float().clone())

    def forward(self, outputs: dict[str, Tensor], region: Tensor | None = None) -> dict[str, Tensor]:
        anomaly_map = outputs["anomaly_map"].float()
        if region is not None:
            region = region.to(anomaly_map)
        scored = {name: value for name, value in outputs.items() if name not in ("anomaly_map", "smoothed_map", "score")}
        scored["anomaly_map"] = anomaly_map if region is None else anomaly_map * region
        scored["smoothed_map"], score = self.score_smoothed(smooth_map(anomaly_map, self.smoothing_kernel), region)
        scored["score"] = score if self.map_scored else outputs["score"].float()
        return scored

    def score_smoothed(self, smoothed: Tensor, region: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Smoothed raw maps (B, 1, H, W) → (the reported `smoothed_map`, the map score (B,)): standardized
        when the head holds normal stats, then masked by `region`."""
        if self.standardized:
            smoothed = standardize(smoothed, self.normal_mean, self.normal_std)
        if region is not None:
            smoothed = smoothed * region.to(smoothed)
        return smoothed, image_score(smoothed)


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
