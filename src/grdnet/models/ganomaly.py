"""GANomaly (Akcay et al. 2018): DCGAN-style encoder–decoder–encoder generator + discriminator.

Architecture as in the official code, with two adaptations: the decoder ends with a sigmoid (images are in
[0, 1], no mean/std normalisation), and the number of stride-2 stages follows the image size (see
`dcgan_stages`), so any side that is a multiple of 32 from 64 up works, square or not. Channel widths are
`base_width · 2^k`, capped at `max_width`.

`GanomalyGenerator`, `GanomalyDiscriminator`, `DCGANEncoder`, `DCGANDecoder` and `dcgan_init` are meant to be
reused by other DCGAN-based methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import INIT_STD, stage_widths

if TYPE_CHECKING:
    from grdnet.config import RunConfig

MIN_GRID = 4
"""The encoders halve the image until its smaller side would drop below this (4×4 in the official code)."""


def dcgan_stages(image_size: tuple[int, int]) -> int:
    """Number of stride-2 convs: the largest n with H and W divisible by 2^n and min(H, W) / 2^n ≥ 4.

    64² → 4 stages (4×4 grid), 128² → 5, 256² → 6, 64×96 → 4 (4×6 grid).
    """
    height, width = image_size
    if min(height, width) < 2 * MIN_GRID or height % 2 or width % 2:
        raise ConfigError(
            f"data.image_size: {tuple(image_size)} is too small or odd for GANomaly; use multiples of 32 from 64"
        )
    stages = 1
    while (
        height % 2 ** (stages + 1) == 0
        and width % 2 ** (stages + 1) == 0
        and min(height, width) // 2 ** (stages + 1) >= MIN_GRID
    ):
        stages += 1
    return stages


def dcgan_init(module: nn.Module) -> None:
    """For `model.apply(dcgan_init)` (DCGAN convention): conv / transposed-conv weights ~ N(0, 0.02),
    BatchNorm weights ~ N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


class DCGANEncoder(nn.Module):
    """conv4×4 s2 → LeakyReLU(0.2), then (conv4×4 s2 → BatchNorm → LeakyReLU(0.2)) per further stage, then a
    conv over the whole final grid to `out_channels` × 1 × 1.

    `features(x)`: (B, C, H, W) → (B, widths[-1], H / 2^n, W / 2^n), the last feature map;
    `forward(x)`: (B, C, H, W) → (B, out_channels, 1, 1).
    """

    def __init__(
        self, in_channels: int, image_size: tuple[int, int], out_channels: int, base_width: int = 64,
        max_width: int = 2048,
    ) -> None:
        super().__init__()
        stages = dcgan_stages(image_size)
        self.widths = stage_widths(base_width, max_width, stages - 1)
        self.grid = (image_size[0] // 2**stages, image_size[1] // 2**stages)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, self.widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for w_in, w_out in zip(self.widths[:-1], self.widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(self.widths[-1], out_channels, self.grid, 1, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class DCGANDecoder(nn.Module):
    """Mirror of `DCGANEncoder`: transposed conv from (B, in_channels, 1, 1) to the final grid, then
    (transposed conv4×4 s2 → BatchNorm → ReLU) per stage, a last transposed conv4×4 s2 to `out_channels` and a
    sigmoid. (B, in_channels, 1, 1) → (B, out_channels, H, W) in [0, 1]."""

    def __init__(
        self, in_channels: int, image_size: tuple[int, int], out_channels: int, base_width: int = 64,
        max_width: int = 2048,
    ) -> None:
        super().__init__()
        stages = dcgan_stages(image_size)
        widths = stage_widths(base_width, max_width, stages - 1)
        grid = (image_size[0] // 2**stages, image_size[1] // 2**stages)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_channels, widths[-1], grid, 1, 0, bias=False), nn.BatchNorm2d(widths[-1]), nn.ReLU(),
        ]  # fmt: skip
        for w_in, w_out in zip(widths[:0:-1], widths[-2::-1]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(widths[0], out_channels, 4, 2, 1, bias=False), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)


class GanomalyGenerator(nn.Module):
    """E1 (x → z), decoder (z → x̂ ∈ [0, 1]), E2 (x̂ → ẑ, separate weights); z, ẑ (B, latent_dim, 1, 1)."""

    def __init__(
        self, in_channels: int = 3, image_size: tuple[int, int] = (256, 256), latent_dim: int = 100,
        base_width: int = 64, max_width: int = 2048,
    ) -> None:
        super().__init__()
        shape = (image_size, latent_dim, base_width, max_width)
        self.encoder1 = DCGANEncoder(in_channels, *shape)
        self.decoder = DCGANDecoder(latent_dim, image_size, in_channels, base_width, max_width)
        self.encoder2 = DCGANEncoder(in_channels, *shape)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → `reconstruction` (B, C, H, W) in [0, 1], `z`, `z_hat` (B, latent_dim, 1, 1)."""
        z = self.encoder1(x)
        reconstruction = self.decoder(z)
        return {"reconstruction": reconstruction, "z": z, "z_hat": self.encoder2(reconstruction)}


class GanomalyDiscriminator(nn.Module):
    """DCGAN encoder with one output: (B, C, H, W) → (features (B, F, H/2^n, W/2^n), logit (B,)), logit > 0 = real."""

    def __init__(
        self, in_channels: int = 3, image_size: tuple[int, int] = (256, 256), base_width: int = 64,
        max_width: int = 2048,
    ) -> None:
        super().__init__()
        self.encoder = DCGANEncoder(in_channels, image_size, 1, base_width, max_width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder.features(x)
        return features, self.encoder.head(features).flatten(1).squeeze(1)


class GANomaly(nn.Module):
    """GANomaly: `generator` (E1, decoder, E2) and `discriminator`, initialised with `dcgan_init`.

    `forward` runs all of them: the primary score needs E2 and the residual scores D1/D2 need the
    discriminator's features.
    """


    def __init__(
        self, in_channels: int = 3, image_size: tuple[int, int] = (256, 256), latent_dim: int = 100,
        base_width: int = 64, max_width: int = 2048,
    ) -> None:
        super().__init__()
        self.generator = GanomalyGenerator(in_channels, image_size, latent_dim, base_width, max_width)
        self.discriminator = GanomalyDiscriminator(in_channels, image_size, base_width, max_width)
        self.apply(dcgan_init)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> GANomaly:
        """Build from a `RunConfig`: data.channels / model_size, model.latent_dim / base_width / max_width."""
        return cls(
            in_channels=cfg.data.channels,
            image_size=cfg.data.model_size,
            latent_dim=cfg.model.latent_dim,
            base_width=cfg.model.base_width,
            max_width=cfg.model.max_width,
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → dict of:

        - `reconstruction` (B, C, H, W) in [0, 1];
        - `anomaly_map` (B, 1, H, W): |x − x̂| averaged over channels, clamped to [0, 1] (already in range
          for inputs in [0, 1]);
        - `score` (B,): mean (z − ẑ)² over the latent vector (the GANomaly score, used for the threshold);
        - `score_d1` / `score_d2` (B,): L1 / L2 norm of f(x) − f(x̂), f = the discriminator's last
          feature map flattened; `score_d3` (B,): mean |x − x̂| over the image.
        """
        out = self.generator(x)
        x_hat = out["reconstruction"]
        features, _ = self.discriminator(torch.cat([x, x_hat]))
        f_real, f_fake = features.float().flatten(1).chunk(2)
        residual = (x.float() - x_hat.float()).abs()
        anomaly_map = residual.mean(dim=1, keepdim=True).clamp(0.0, 1.0)
        feature_gap = f_real - f_fake
        return {
            "reconstruction": x_hat,
            "anomaly_map": anomaly_map,
            "score": (out["z"].float() - out["z_hat"].float()).pow(2).flatten(1).mean(dim=1),
            "score_d1": feature_gap.abs().sum(dim=1),
            "score_d2": feature_gap.pow(2).sum(dim=1).sqrt(),
            "score_d3": residual.flatten(1).mean(dim=1),
        }
