"""PaDiM (Defard et al. 2021): a Gaussian per feature-map position over normal patch features; Mahalanobis map.

- Patch features: the backbone's `layers` (default layer1 + layer2 + layer3, strides 4, 8 and 16, as in the
  paper), the deeper ones resized to the stride-4 grid (h × w positions) and concatenated; a fixed random subset
  of `channels` of them (drawn from train.seed, stored in the state dict) is kept, as the paper does.
- Fit (`PaDiMRecipe`): per position, the mean (d,) and covariance (d, d) + 0.01·I of the training features; the
  model stores the means and the inverse covariances (`precision`).
- Map: Mahalanobis distance per position, resized bilinearly to the image, Gaussian-smoothed (σ = 4 px), squashed
  to [0, 1) by d / (d + √channels) (√channels ≈ a normal patch's distance); score = the map's maximum (taken by the scoring head).

Configuration (`grdnet.methods.padim`, keys of `model`): `backbone` ("efficientnet_lite0"), `backbone_weights` (None = the installed
package's; else a state dict file), `layers`, `channels` (100), `sigma` (4.0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.feature_maps import GaussianBlur, frozen_backbone, patch_features, squash
from grdnet.seeds import torch_generator

if TYPE_CHECKING:
    from grdnet.config import RunConfig

COVARIANCE_EPSILON = 0.01
"""Added to each covariance's diagonal (the paper's regularisation)."""
STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}


class PaDiM(nn.Module):
    """`backbone` (frozen) + `channel_index` (d,) + per-position `mean` (P, d) and `precision` (P, d, d)."""


    def __init__(self, options: dict[str, Any], image_size: tuple[int, int], seed: int = 0) -> None:
        super().__init__()
        self.options = options
        self.image_size = tuple(image_size)
        self.backbone = frozen_backbone(options)
        total = sum(self.backbone.channels.values())
        channels = int(options["channels"])
        if not 1 <= channels <= total:
            raise ConfigError(f"model.channels: {channels} must be between 1 and {total} (the backbone layers' channels)")
        stride = STRIDES[self.backbone.levels[0]]
        self.grid = (image_size[0] // stride, image_size[1] // stride)
        positions = self.grid[0] * self.grid[1]
        chosen = torch.randperm(total, generator=torch_generator(seed, "padim_channels"))[:channels].sort().values
        self.register_buffer("channel_index", chosen)
        self.register_buffer("mean", torch.zeros(positions, channels))
        self.register_buffer("precision", torch.eye(channels).repeat(positions, 1, 1))
        self.reference = math.sqrt(channels)
        self.blur = GaussianBlur(float(options["sigma"]))

    @classmethod
    def from_config(cls, cfg: RunConfig) -> PaDiM:
        return cls(cfg.model.model_dump(exclude={"name"}), cfg.data.model_size, cfg.train.seed)

    @torch.no_grad()
    def patches(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [0, 1] → the kept channels of the patch features, (B, P, d) float32."""
        features = patch_features(self.backbone, x).index_select(1, self.channel_index)
        return features.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def set_gaussians(self, mean: Tensor, covariance: Tensor) -> None:
        """Install the fitted per-position means (P, d) and covariances (P, d, d) (regularised here)."""
        eye = torch.eye(mean.shape[1], dtype=covariance.dtype, device=covariance.device)
        self.mean.copy_(mean.float())
        self.precision.copy_(torch.linalg.inv(covariance + COVARIANCE_EPSILON * eye).float())

    @torch.no_grad()
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → anomaly_map (B, 1, H, W) in [0, 1) (already Gaussian-smoothed: the method's
        scoring.smoothing_kernel default is 1; the scoring head takes its maximum), mahalanobis (B, 1, h, w)."""
        delta = self.patches(x) - self.mean  # (B, P, d)
        squared = torch.einsum("bpd,pde,bpe->bp", delta, self.precision, delta)
        distance = squared.clamp_min(0).sqrt().reshape(-1, 1, *self.grid)
        upsampled = F.interpolate(distance, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"anomaly_map": squash(self.blur(upsampled), self.reference), "mahalanobis": distance}
