"""VT-ADL (Mishra et al. 2021): vision-transformer autoencoder + Gaussian mixture on patch embeddings.

- Patch embedding: conv p×p stride p → tokens (B, N, D), N = (H/p)·(W/p), plus a learned position
  embedding (sized for the configured image size), then a pre-norm `nn.TransformerEncoder` and a LayerNorm.
- Decoder: the token grid (B, D, H/p, W/p) → shared `ResidualDecoder` with log2(p) ×2 stages → x̂ ∈ [0, 1].
- Density: a diagonal Gaussian mixture (learned weights, means, scales) over the D-dim patch embeddings.
  It sees the embeddings *detached*, so the encoder is shaped by the reconstruction loss only and cannot
  shrink its embeddings to lower the NLL (a collapse seen when both are trained jointly). It learns at a
  higher rate than the autoencoder to keep up with the moving embeddings (see the VT-ADL recipe).
- Anomaly map: per-patch NLL, standardised with running statistics of training-patch NLL stored as
  buffers (`nll_mean`, `nll_std`), A_patch = sigmoid((NLL − mean) / std − Z_OFFSET); up-sampled
  bilinearly to H×W. Monotone in the NLL and fixed after training, so thresholds stay valid; a training
  patch at the mean NLL maps to ≈ 0.05, one 3 std above to 0.5.

Configuration (`grdnet.methods.vtadl`): `model.base_width` = embedding dim D, `model.patch_size` (power of two,
default 16), `model.depth` (transformer layers, 6), `model.heads` (attention heads, 8; must divide D),
`model.components` (mixture size, 16).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import ResidualDecoder, init_weights

if TYPE_CHECKING:
    from grdnet.config import RunConfig

Z_OFFSET = 3.0
"""Standardised NLL mapped to 0.5 in the anomaly map."""
STATS_MOMENTUM = 0.1
"""Exponential-moving-average weight of a new batch in the NLL statistics."""
MIN_SCALE = 1e-2
"""Lower bound of the mixture components' standard deviations."""


def gaussian_mixture_log_prob(x: Tensor, logits: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """log Σ_k π_k N(x; μ_k, diag σ_k²) for x (..., D); logits (K,) → π = softmax, means / log_scales (K, D).

    Uses matrix products (memory O(…·K), not O(…·K·D)). Returns (...).
    """
    x = x.float()
    inv_var = torch.exp(-2.0 * log_scales)  # (K, D)
    squared = (x * x) @ inv_var.T - 2.0 * x @ (means * inv_var).T + (means * means * inv_var).sum(dim=1)
    dim = x.shape[-1]
    log_normal = -0.5 * (squared + dim * math.log(2.0 * math.pi)) - log_scales.sum(dim=1)
    return torch.logsumexp(torch.log_softmax(logits, dim=0) + log_normal, dim=-1)


class GaussianMixture(nn.Module):
    """Diagonal Gaussian mixture with K learned components in D dims; forward gives the NLL of x (..., D) → (...)."""

    def __init__(self, dim: int, components: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, dim))
        self.log_scales = nn.Parameter(torch.zeros(components, dim))

    def forward(self, x: Tensor) -> Tensor:
        log_scales = self.log_scales.clamp(min=math.log(MIN_SCALE))
        with torch.autocast(x.device.type, enabled=False):  # float32: NLLs of hundreds need the precision
            return -gaussian_mixture_log_prob(x.float(), self.logits, self.means, log_scales)


class VTADL(nn.Module):
    """Patch transformer autoencoder (`embed`, `encoder`, `decoder`) + `density` on patch embeddings."""


    def __init__(
        self,
        in_channels: int = 3,
        image_size: tuple[int, int] = (256, 256),
        embed_dim: int = 512,
        patch_size: int = 16,
        depth: int = 6,
        heads: int = 8,
        components: int = 16,
    ) -> None:
        super().__init__()
        self.grid = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.image_size = tuple(image_size)
        self.embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        layer = nn.TransformerEncoderLayer(
            embed_dim, heads, 4 * embed_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False)
        stages = int(math.log2(patch_size))
        self.decoder = ResidualDecoder(
            embed_dim, in_channels, max(4, embed_dim // patch_size), embed_dim, stages, blocks_per_stage=1
        )
        self.density = GaussianMixture(embed_dim, components)
        self.register_buffer("nll_mean", torch.zeros(()))
        self.register_buffer("nll_std", torch.ones(()))
        self.register_buffer("nll_updates", torch.zeros((), dtype=torch.long))
        self.apply(init_weights)
        nn.init.normal_(self.position, 0.0, 0.02)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> VTADL:
        """Build from a `RunConfig`: data.channels / model_size and the `grdnet.methods.vtadl` options."""
        model = cfg.model
        if any(side % model.patch_size for side in cfg.data.model_size):
            raise ConfigError(
                f"data.image_size (data.tile_size when tiling): {tuple(cfg.data.model_size)} is not divisible by the "
                f"patch size {model.patch_size}; change model.patch_size or the image size"
            )
        return cls(cfg.data.channels, cfg.data.model_size, model.base_width, model.patch_size, model.depth,
                   model.heads, model.components)

    @torch.no_grad()
    def update_nll_stats(self, patch_nll: Tensor) -> None:
        """Fold a training batch's per-patch NLL (B, N) into the running mean / std (first batch: copied)."""
        values = patch_nll.detach().float()
        mean, std = values.mean(), values.std().clamp_min(1e-6)
        weight = 1.0 if int(self.nll_updates) == 0 else STATS_MOMENTUM
        self.nll_mean.lerp_(mean, weight)
        self.nll_std.lerp_(std, weight)
        self.nll_updates += 1

    def encode(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [0, 1] → patch embeddings (B, N, D) after the transformer and its LayerNorm."""
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.position
        return self.encoder(tokens)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → reconstruction (B, C, H, W) in [0, 1], patch_nll (B, N), anomaly_map
        (B, 1, H, W) in [0, 1], score_reconstruction (B,) = mean squared reconstruction error (the global,
        reconstruction-based score)."""
        tokens = self.encode(x)
        grid = tokens.transpose(1, 2).unflatten(2, self.grid)
        reconstruction = self.decoder(grid)
        patch_nll = self.density(tokens.detach())
        standardised = (patch_nll - self.nll_mean) / self.nll_std
        patch_map = torch.sigmoid(standardised - Z_OFFSET).unflatten(1, self.grid).unsqueeze(1)
        anomaly_map = F.interpolate(patch_map, size=self.image_size, mode="bilinear", align_corners=False)
        return {
            "reconstruction": reconstruction,
            "patch_nll": patch_nll,
            "anomaly_map": anomaly_map,
            "score_reconstruction": (x.float() - reconstruction.float()).pow(2).flatten(1).mean(dim=1),
        }
