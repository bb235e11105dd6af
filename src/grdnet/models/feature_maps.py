"""What PatchCore and PaDiM share: the frozen backbone, multi-level patch features, the Gaussian-smoothed map, squashing.

Both are "fit once" methods on a frozen pretrained backbone (`grdnet.models.backbones`): their state is
statistics of the training images' patch features (tensors in the state dict), set by their recipe.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.models.backbones import FeatureExtractor, build_backbone


def frozen_backbone(options: dict[str, Any]) -> FeatureExtractor:
    """The method's `FeatureExtractor` with random weights: the recipe loads the pretrained ones before the fit,
    and a checkpoint carries them, so inference never needs the weights file or package data."""
    return build_backbone(options["backbone"], tuple(options["layers"]), pretrained=False)


def patch_features(extractor: FeatureExtractor, x: Tensor, aggregate: int = 0) -> Tensor:
    """x (B, C, H, W) in [0, 1] → (B, D, h, w): the levels' features (each averaged over an `aggregate`×`aggregate`
    neighbourhood when > 1) resized bilinearly to the shallowest level's grid and concatenated (D = Σ channels)."""
    features = extractor(x.float())
    maps = []
    size = features[extractor.levels[0]].shape[-2:]
    for level in extractor.levels:
        feature = features[level]
        if aggregate > 1:
            feature = F.avg_pool2d(feature, aggregate, stride=1, padding=aggregate // 2, count_include_pad=False)
        if feature.shape[-2:] != size:
            feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        maps.append(feature)
    return torch.cat(maps, dim=1)


class GaussianBlur(nn.Module):
    """Separable Gaussian smoothing of maps (B, 1, H, W), σ in pixels, kernel 2·⌈4σ⌉+1, reflected borders."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        radius = max(1, math.ceil(4 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / max(sigma, 1e-6)) ** 2)
        self.register_buffer("kernel", (kernel / kernel.sum()).view(1, 1, 1, -1), persistent=False)
        self.radius = radius

    def forward(self, maps: Tensor) -> Tensor:
        r = self.radius
        if min(maps.shape[-2:]) <= r:
            raise ValueError(f"maps of size {tuple(maps.shape[-2:])} are too small for a Gaussian of radius {r}")
        x = F.conv2d(F.pad(maps, (r, r, 0, 0), mode="reflect"), self.kernel)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), self.kernel.transpose(-1, -2))


def squash(distance: Tensor, reference: Tensor | float) -> Tensor:
    """Distances ≥ 0 → [0, 1): d / (d + reference); `reference` (a typical normal distance) maps to 0.5.
    Monotone and fixed after the fit, so rankings (AUROC, AUPRO) and calibrated thresholds are unaffected."""
    return distance / (distance + reference)
