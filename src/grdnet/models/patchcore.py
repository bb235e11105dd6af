"""PatchCore (Roth et al. 2022): nearest-neighbour distances of patch features to a memory bank of normal ones.

- Patch features: the backbone's `layers` (default layer2 + layer3, strides 8 and 16, as in the paper), each
  averaged over its 3×3 neighbourhood, the deeper one resized to the stride-8 grid, concatenated → D channels.
- Memory bank (M, D): a greedy coreset of the training patches (chosen by `PatchCoreRecipe`), float32.
- Patch score: Euclidean distance to the nearest bank entry (computed in query chunks, memory bounded).
- Image score: the largest patch score s*, re-weighted as in the paper: with m* the bank entry nearest to that
  patch and N_b(m*) its b nearest bank entries (m* first), s = (1 − softmax(‖patch − N_b(m*)‖)[m*]) · s*.
- Map: patch scores resized bilinearly to the image, Gaussian-smoothed (σ = 4 px); maps and score are squashed
  to [0, 1) by d / (d + r), r = the coreset's covering radius (the largest training-patch distance to the bank).

Configuration (`grdnet.methods.patchcore`, keys of `model`): `backbone` ("efficientnet_lite0"), `backbone_weights` (None = the installed
package's; else a state dict file), `layers`, `coreset_ratio` (0.1), `projection_dim` (128, the coreset's random
projection), `coreset_chunk` (16384), `neighbours` (b = 9), `sigma` (4.0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.models.feature_maps import (
    GaussianBlur,
    frozen_backbone,
    nearest_neighbours,
    patch_features,
    squared_distances,
    squash,
)

if TYPE_CHECKING:
    from grdnet.config import RunConfig

AGGREGATION = 3
"""Side of the neighbourhood each patch feature is averaged over (the paper's p = 3)."""
class PatchCore(nn.Module):
    """`backbone` (frozen) + `memory_bank` (M, D) + `radius` (); empty bank until fitted."""


    def __init__(self, options: dict[str, Any], image_size: tuple[int, int]) -> None:
        super().__init__()
        self.options = options
        self.image_size = tuple(image_size)
        self.backbone = frozen_backbone(options)
        self.feature_dim = sum(self.backbone.channels.values())
        self.neighbours = int(options["neighbours"])
        self.blur = GaussianBlur(float(options["sigma"]))
        self.register_buffer("memory_bank", torch.zeros(0, self.feature_dim))
        self.register_buffer("radius", torch.ones(()))

    @classmethod
    def from_config(cls, cfg: RunConfig) -> PatchCore:
        return cls(cfg.model.model_dump(exclude={"name"}), cfg.data.model_size)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """The bank's size comes from the fit: take the stored one's shape before loading it."""
        bank = state_dict.get(prefix + "memory_bank")
        if bank is not None:
            self.memory_bank = torch.empty_like(bank, device=self.memory_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def patches(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [0, 1] → aggregated patch features (B, D, h, w), float32."""
        return patch_features(self.backbone, x, AGGREGATION)

    @torch.no_grad()
    def set_memory_bank(self, bank: Tensor, radius: float) -> None:
        """Install the fitted bank (M, D) and covering radius."""
        self.memory_bank = bank.float().to(self.radius.device).contiguous()
        self.radius = torch.tensor(max(float(radius), 1e-6), device=self.radius.device)

    def nearest(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """queries (N, D) → (distance to the nearest bank entry (N,), its index (N,))."""
        if len(self.memory_bank) == 0:
            raise RuntimeError("PatchCore has an empty memory bank: fit it first (grdnet train --model patchcore)")
        return nearest_neighbours(queries, self.memory_bank)

    def reweighted_score(self, features: Tensor, distances: Tensor, indices: Tensor) -> Tensor:
        """The paper's image score from per-image patch features (B, P, D), their distances / nearest indices (B, P)."""
        worst, where = distances.max(dim=1)  # s* and its patch, (B,)
        patch = features.gather(1, where[:, None, None].expand(-1, 1, features.shape[2]))[:, 0]  # (B, D)
        anchor = self.memory_bank[indices.gather(1, where[:, None])[:, 0]]  # m*, (B, D)
        b = min(self.neighbours, len(self.memory_bank))
        support = squared_distances(anchor, self.memory_bank).topk(b, dim=1, largest=False).indices  # N_b(m*), m* first
        to_support = (patch[:, None, :] - self.memory_bank[support]).norm(dim=2)  # (B, b)
        weight = 1.0 - torch.softmax(to_support, dim=1)[:, 0]
        return weight * worst

    @torch.no_grad()
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → anomaly_map (B, 1, H, W) in [0, 1) (already Gaussian-smoothed: the method's
        scoring.smoothing_kernel default is 1), score (B,) in [0, 1), patch_distance (B, 1, h, w) (raw distances)."""
        features = self.patches(x)
        batch, dim, h, w = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(batch, h * w, dim)
        distances, indices = self.nearest(flat.reshape(-1, dim))
        distances, indices = distances.reshape(batch, h * w), indices.reshape(batch, h * w)
        score = self.reweighted_score(flat, distances, indices)
        patch_map = distances.reshape(batch, 1, h, w)
        upsampled = F.interpolate(patch_map, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {
            "anomaly_map": squash(self.blur(upsampled), self.radius),
            "score": squash(score, self.radius),
            "patch_distance": patch_map,
        }
