"""Deep pyramidal autoencoder (survey paper: Mishra et al. 2020, "aggregating deep pyramidal representations";
PIADE), trained on normal images only.

A convolutional encoder halves the image stage by stage; at each of its last `pyramid_levels` stages a 1×1
convolution squeezes the features into a narrow latent, so the image is described at several resolutions at
once (the deepest latent has `latent_channels` channels, each shallower one a quarter as many, at least 1:
every level holds about the same number of values). One decoder reads them all: it starts from the deepest
latent and, going up, concatenates each shallower latent at its own resolution before the next upsampling,
then continues to the full size. Trained with a reconstruction loss plus a perceptual loss on the features
of a fixed network (recipe `piade`, `grdnet.models.perceptual`). The survey's optional dynamic-routing
layer is not used.

Anomaly map = |x − x̂| (channel mean); the model is map-scored (its image score is the maximum of the smoothed
map, `grdnet.scoring.ScoringHead`), so it can be tiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import stage_widths

if TYPE_CHECKING:
    from grdnet.config import RunConfig

DEEPEST_SIDE = 4
"""The encoder halves the image until its smaller side would drop below this."""


def encoder_stages(image_size: tuple[int, int]) -> int:
    """Stride-2 stages down to a grid whose smaller side is DEEPEST_SIDE or more: 64 → 4, 256 → 6."""
    stages = 0
    while min(image_size) // 2 ** (stages + 1) >= DEEPEST_SIDE:
        stages += 1
    return stages


def _down(w_in: int, w_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2))


def _up(w_in: int, w_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU())


class PyramidalAutoencoder(nn.Module):
    """Multi-resolution latents, decoded together.

    `encode(x)`: (B, C, H, W) → latents, shallowest first, level l of L at 1/2^(S−L+1+l) of the size (S stages);
    `forward(x)`: → `reconstruction` (B, C, H, W) in [0, 1], `anomaly_map` (B, 1, H, W) in [0, 1].
    """


    def __init__(self, in_channels: int = 3, image_size: tuple[int, int] = (256, 256), base_width: int = 64,
                 max_width: int = 512, latent_channels: int = 16, pyramid_levels: int = 3) -> None:
        super().__init__()
        stages = encoder_stages(image_size)
        if not 1 <= pyramid_levels <= stages:
            raise ConfigError(
                f"model.pyramid_levels: must be between 1 and {stages} for image size {tuple(image_size)}, "
                f"got {pyramid_levels}"
            )
        self.levels = pyramid_levels
        widths = stage_widths(base_width, max_width, stages)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(_down(w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:]))
        tapped = widths[-pyramid_levels:]  # encoder widths at the latent levels, shallowest first
        self.latent_widths = [max(1, latent_channels // 4 ** (pyramid_levels - 1 - i)) for i in range(pyramid_levels)]
        self.squeeze = nn.ModuleList(nn.Conv2d(w, c, 1) for w, c in zip(tapped, self.latent_widths))
        # Decoder, deepest first: expand the deepest latent, then per level up: upsample, concat that level's latent.
        self.expand = nn.Sequential(nn.Conv2d(self.latent_widths[-1], widths[-1], 3, 1, 1), nn.ReLU())
        ups, merges = [], []
        for level in range(stages, 0, -1):  # decoder at widths[level] → widths[level - 1]
            ups.append(_up(widths[level], widths[level - 1]))
            latent = stages - level + 1  # index from the deep end of the level arriving at widths[level - 1]
            extra = self.latent_widths[-1 - latent] if latent < pyramid_levels else 0
            merges.append(nn.Conv2d(widths[level - 1] + extra, widths[level - 1], 3, 1, 1) if extra else nn.Identity())
        self.ups, self.merges = nn.ModuleList(ups), nn.ModuleList(merges)
        self.head = nn.Sequential(nn.Conv2d(widths[0], in_channels, 3, 1, 1), nn.Sigmoid())

    @classmethod
    def from_config(cls, cfg: RunConfig) -> PyramidalAutoencoder:
        """Build from a `RunConfig` (data.channels / model_size, the `grdnet.methods.piade` options)."""
        model = cfg.model
        return cls(cfg.data.channels, cfg.data.model_size, model.base_width, model.max_width,
                   model.latent_channels, model.pyramid_levels)

    def encode(self, x: Tensor) -> list[Tensor]:
        h = self.stem(x)
        features = []
        for down in self.down:
            h = down(h)
            features.append(h)
        return [squeeze(f) for squeeze, f in zip(self.squeeze, features[-self.levels :])]

    def decode(self, latents: list[Tensor]) -> Tensor:
        h = self.expand(latents[-1])
        for i, (up, merge) in enumerate(zip(self.ups, self.merges)):
            h = up(h)
            if i + 1 < self.levels:
                h = merge(torch.cat([h, latents[-2 - i]], dim=1))
        return self.head(h)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        reconstruction = self.decode(self.encode(x))
        anomaly_map = (x.float() - reconstruction.float()).abs().mean(dim=1, keepdim=True).clamp(0.0, 1.0)
        return {"reconstruction": reconstruction, "anomaly_map": anomaly_map}
