"""GAN trained with known defect images (known defect images as a penalised second "fake" for the discriminator).

A DCGAN generator G(z) (GANomaly's `DCGANDecoder`, z (B, latent_dim, 1, 1)) and discriminator D(x) →
(features, logit) (`GanomalyDiscriminator`). Training (recipe `kdgan`) treats a
few known defect images as a second kind of fake, weighted by γ. Inference is an AnoGAN-style latent
search: z is optimised so that G(z) reproduces the input; the final search loss is the image score and
|x − G(z)| the anomaly map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.ganomaly import DCGANDecoder, GanomalyDiscriminator, dcgan_init
from grdnet.runtime import frozen

if TYPE_CHECKING:
    from grdnet.config import RunConfig

EXTRA_OPTIONS = {"search_steps", "search_lr", "search_lambda"}
"""`model.extra` keys kdgan reads: `search_steps` (100), `search_lr` (0.05, Adam on z), `search_lambda`
(0.1, weight of feature matching in the search loss)."""


class KDGAN(nn.Module):
    """`generator` G(z), `discriminator` D(x); `forward` runs the latent search (model parameters untouched).

    Search loss per image: (1 − λ)·mean |x − G(z)| + λ·mean (f(x) − f(G(z)))², f = D's features. Every image
    starts from the same fixed-seed z, so a given input always gets the same score, whatever its batch.
    """

    map_scored = False
    """The image score is the model's own `score` output, not its map's maximum."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: tuple[int, int] = (256, 256),
        base_width: int = 64,
        max_width: int = 512,
        latent_dim: int = 100,
        search_steps: int = 100,
        search_lr: float = 0.05,
        search_lambda: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.search_steps = search_steps
        self.search_lr = search_lr
        self.search_lambda = search_lambda
        self.seed = seed
        self.generator = DCGANDecoder(latent_dim, image_size, in_channels, base_width, max_width)
        self.discriminator = GanomalyDiscriminator(in_channels, image_size, base_width, max_width)
        self.apply(dcgan_init)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> KDGAN:
        """Build from a `RunConfig` (data.channels / model_size, model widths and latent_dim, model.extra)."""
        extra = cfg.model.extra
        unknown = sorted(set(extra) - EXTRA_OPTIONS)
        if unknown:
            raise ConfigError(f"model.extra: unknown option(s) {unknown} for kdgan; supported: {sorted(EXTRA_OPTIONS)}")
        steps = extra.get("search_steps", 100)
        if not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"model.extra.search_steps: must be a whole number >= 0, got {steps!r}")
        lam = float(extra.get("search_lambda", 0.1))
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"model.extra.search_lambda: must be in [0, 1], got {lam}")
        return cls(
            in_channels=cfg.data.channels,
            image_size=cfg.data.model_size,
            base_width=cfg.model.base_width,
            max_width=cfg.model.max_width,
            latent_dim=cfg.model.latent_dim,
            search_steps=steps,
            search_lr=float(extra.get("search_lr", 0.05)),
            search_lambda=lam,
            seed=cfg.train.seed,
        )

    def initial_latent(self, batch: int, device: torch.device) -> Tensor:
        """The search's starting z (batch, latent_dim, 1, 1): one fixed-seed draw, the same for every image."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn(1, self.latent_dim, 1, 1, generator=generator).to(device).expand(batch, -1, -1, -1).clone()

    def search_loss(self, x: Tensor, fake: Tensor, x_features: Tensor) -> Tensor:
        """Per-image search loss (B,): (1 − λ)·residual + λ·feature matching."""
        fake_features, _ = self.discriminator(fake)
        residual = (x.float() - fake.float()).abs().flatten(1).mean(dim=1)
        matching = (x_features.float() - fake_features.float()).pow(2).flatten(1).mean(dim=1)
        return (1.0 - self.search_lambda) * residual + self.search_lambda * matching

    def search(self, x: Tensor, steps: int | None = None) -> dict[str, Tensor]:
        """Optimise z (Adam) so G(z) reproduces x; works under `torch.no_grad()` and leaves parameters untouched.

        Returns `z` (B, latent_dim, 1, 1), `reconstruction` G(z) (B, C, H, W), `loss` (B,) at the final z and
        `history` (steps,): the batch-mean loss before each step.
        """
        steps = self.search_steps if steps is None else steps
        z = self.initial_latent(x.shape[0], x.device).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=self.search_lr)
        history = []
        with frozen(self), torch.enable_grad():
            x_features = self.discriminator(x)[0].detach()
            for _ in range(steps):
                loss = self.search_loss(x, self.generator(z), x_features)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                history.append(loss.detach().mean())
        with torch.no_grad():
            reconstruction = self.generator(z)
            loss = self.search_loss(x, reconstruction, x_features)
        history_tensor = torch.stack(history) if history else loss.new_zeros(0)
        return {"z": z.detach(), "reconstruction": reconstruction, "loss": loss, "history": history_tensor}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → reconstruction G(z*), anomaly_map |x − G(z*)| (channel mean)
        (B, 1, H, W) in [0, 1], score (B,) = the final search loss."""
        found = self.search(x)
        reconstruction = found["reconstruction"]
        anomaly_map = (x.float() - reconstruction.float()).abs().mean(dim=1, keepdim=True).clamp(0.0, 1.0)
        return {
            "reconstruction": reconstruction,
            "anomaly_map": anomaly_map,
            "score": found["loss"],
        }
