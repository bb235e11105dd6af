"""What the feature methods share: the frozen backbone, multi-level patch features, nearest neighbours in a
memory bank, the Gaussian-smoothed map, squashing.

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


QUERY_ELEMENTS = 1 << 24
"""Largest query-chunk × bank distance matrix computed at once (64 MiB of float32)."""


def squared_distances(queries: Tensor, bank: Tensor, bank_norms: Tensor | None = None) -> Tensor:
    """‖q − m‖² − ‖q‖² for queries (N, D) and bank entries (M, D) → (N, M): one fused matrix product (the
    query norm, constant along a row, is left out: add it to whatever is taken per row); `bank_norms` (M,) = ‖m‖²."""
    norms = (bank * bank).sum(1) if bank_norms is None else bank_norms
    return torch.addmm(norms, queries, bank.T, alpha=-2.0)


def nearest_neighbours(queries: Tensor, bank: Tensor) -> tuple[Tensor, Tensor]:
    """queries (N, D), non-empty bank (M, D) → (Euclidean distance to the nearest entry (N,), its index (N,)),
    in query chunks of QUERY_ELEMENTS distances (in one piece while exporting to ONNX, where a loop would be
    frozen to the traced size)."""
    bank_norms = (bank * bank).sum(1)
    if torch.onnx.is_in_onnx_export():
        value, index = squared_distances(queries, bank, bank_norms).min(dim=1)
        return (value + (queries * queries).sum(1)).clamp_min(0).sqrt(), index
    chunk = max(1, QUERY_ELEMENTS // len(bank))
    distances, indices = [], []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        value, index = squared_distances(q, bank, bank_norms).min(dim=1)
        distances.append((value + (q * q).sum(1)).clamp_min(0).sqrt())
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


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
