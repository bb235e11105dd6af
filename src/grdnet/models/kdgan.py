"""GAN trained with known defect images, grown progressively: the method of the paper on GANs trained with noisy
data, whose normal training images may hold small defects and which uses a few known defect images as a second
kind of "fake" for the discriminator.

The paper trains its GAN with progressive growing (Karras et al. 2018) so that it reaches high resolution and
finds pixel-level micro defects. Generator G(z) and discriminator D(x) are built as a pyramid of resolutions,
from a start grid whose smaller side is `start_size` (8 by default; the aspect ratio is kept: 8×12 for a
64×96 image) doubling up to the image size. Training (recipe `kdgan`) begins at the start grid and adds one
resolution per phase of `phase_epochs` epochs: in the first half of a phase the new layers fade in (their
output is blended with the upsampled output of the previous resolution, weight α rising linearly from 0 to
1), in the second half they train at full weight. With `progressive: false` every resolution trains from the
first step. The current stage (resolution level and α) is stored in the model (`stage` buffers), so a
checkpoint taken before the growth ends still predicts at the resolution it reached.

As in Karras et al., G normalises every pixel's feature vector (pixel norm) instead of batch norm, and both
networks have a 1×1 convolution to / from the image at each resolution; kdgan's BCE losses are kept (no
WGAN-GP, equalised learning rate or minibatch standard deviation). G always returns a full-size image (its
current-resolution output upsampled, nearest neighbour) and D average-pools its full-size input to its
current resolution, so the rest of the method never sees the stage.

Training treats a few known defect images as a second kind of fake, weighted by γ. Inference is an
AnoGAN-style latent search: z is optimised so that G(z) reproduces the input; the final search loss is the
image score and |x − G(z)| the anomaly map.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import stage_widths
from grdnet.runtime import frozen
from grdnet.seeds import torch_generator

if TYPE_CHECKING:
    from grdnet.config import RunConfig



def resolution_levels(image_size: tuple[int, int], start_size: int) -> int:
    """Number of resolutions from the start grid to `image_size` (doubling): 64² from 8 → 4 (8, 16, 32, 64)."""
    smaller = min(image_size)
    doublings = math.log2(smaller / start_size) if start_size > 0 else -1.0
    if (start_size < 4 or doublings < 0 or doublings != int(doublings)
            or any(side % (2 ** int(doublings)) for side in image_size)):
        raise ConfigError(
            f"model.start_size: {start_size} must be a power of two, at least 4, that divides the image's "
            f"smaller side {smaller} (e.g. 8 or 16)"
        )
    return int(doublings) + 1


def growth_stage(epochs_done: float, levels: int, phase_epochs: float) -> tuple[int, float]:
    """(level, α) after `epochs_done` (fractional) epochs: phase k ≥ 1 adds level k, fading in over its first
    half. Level 0 (the start grid) trains alone for the first phase; past the last phase: (levels − 1, 1)."""
    phase = int(epochs_done // phase_epochs)
    if phase >= levels:
        return levels - 1, 1.0
    if phase == 0:
        return 0, 1.0
    return phase, min(1.0, (epochs_done - phase * phase_epochs) / (phase_epochs / 2))


class PixelNorm(nn.Module):
    """Each pixel's feature vector divided by its root mean square (Karras et al.): (B, C, H, W) → same."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _g_conv(w_in: int, w_out: int) -> list[nn.Module]:
    return [nn.Conv2d(w_in, w_out, 3, 1, 1), nn.LeakyReLU(0.2), PixelNorm()]


def _d_conv(w_in: int, w_out: int) -> list[nn.Module]:
    return [nn.Conv2d(w_in, w_out, 3, 1, 1), nn.LeakyReLU(0.2)]


def kaiming_init(module: nn.Module) -> None:
    """For `model.apply`: conv / transposed-conv weights Kaiming-normal (LeakyReLU 0.2), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, a=0.2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _Staged(nn.Module):
    """Holds the current (level, α) in the buffer `stage` (saved in checkpoints)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("stage", torch.tensor([levels - 1, 1.0]))

    def current(self) -> tuple[int, float]:
        level, alpha = self.stage.tolist()
        return int(level), float(alpha)


class ProgressiveGenerator(_Staged):
    """z (B, latent_dim, 1, 1) → image (B, C, H, W) in [0, 1], built at the current stage and upsampled to
    `image_size`. Widths: base_width at the image size, doubled per coarser level, capped at max_width."""

    def __init__(self, latent_dim: int, image_size: tuple[int, int], out_channels: int, base_width: int,
                 max_width: int, start_size: int) -> None:
        levels = resolution_levels(image_size, start_size)
        super().__init__(levels)
        self.image_size = tuple(image_size)
        widths = stage_widths(base_width, max_width, levels - 1)[::-1]  # coarsest first
        grid = (image_size[0] // 2 ** (levels - 1), image_size[1] // 2 ** (levels - 1))
        first = [nn.ConvTranspose2d(latent_dim, widths[0], grid, 1, 0), nn.LeakyReLU(0.2), PixelNorm()]
        self.blocks = nn.ModuleList([nn.Sequential(*first, *_g_conv(widths[0], widths[0]))])
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            self.blocks.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                             *_g_conv(w_in, w_out), *_g_conv(w_out, w_out)))
        self.to_image = nn.ModuleList(nn.Conv2d(w, out_channels, 1) for w in widths)

    def forward(self, z: Tensor) -> Tensor:
        level, alpha = self.current()
        h = z
        for block in self.blocks[:level]:
            h = block(h)
        previous = h
        h = self.blocks[level](h)
        out = self.to_image[level](h)
        if alpha < 1.0 and level > 0:
            coarse = F.interpolate(self.to_image[level - 1](previous), scale_factor=2.0, mode="nearest")
            out = alpha * out + (1.0 - alpha) * coarse
        out = torch.sigmoid(out)
        if tuple(out.shape[-2:]) != self.image_size:
            out = F.interpolate(out, size=self.image_size, mode="nearest")
        return out


class ProgressiveDiscriminator(_Staged):
    """x (B, C, H, W) → (features (B, widths[0], grid), logit (B,)), at the current stage: x is average-pooled
    to the stage's resolution first; during a fade-in the new level's path is blended with the pooled input
    going straight into the previous level."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], base_width: int, max_width: int,
                 start_size: int) -> None:
        levels = resolution_levels(image_size, start_size)
        super().__init__(levels)
        self.image_size = tuple(image_size)
        widths = stage_widths(base_width, max_width, levels - 1)[::-1]  # coarsest first
        grid = (image_size[0] // 2 ** (levels - 1), image_size[1] // 2 ** (levels - 1))
        self.from_image = nn.ModuleList(nn.Sequential(nn.Conv2d(in_channels, w, 1), nn.LeakyReLU(0.2)) for w in widths)
        # blocks[k] takes level k's resolution down to level k − 1's (block 0: the final convolution at the grid)
        self.blocks = nn.ModuleList([nn.Sequential(*_d_conv(widths[0], widths[0]))])
        for w_coarse, w_fine in zip(widths[:-1], widths[1:]):
            self.blocks.append(nn.Sequential(*_d_conv(w_fine, w_fine), *_d_conv(w_fine, w_coarse), nn.AvgPool2d(2)))
        self.head = nn.Conv2d(widths[0], 1, grid, 1, 0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        level, alpha = self.current()
        factor = 2 ** (self.levels - 1 - level)
        if factor > 1:
            x = F.avg_pool2d(x, factor)
        h = self.blocks[level](self.from_image[level](x))
        if alpha < 1.0 and level > 0:
            h = alpha * h + (1.0 - alpha) * self.from_image[level - 1](F.avg_pool2d(x, 2))
        for block in self.blocks[level - 1 :: -1] if level > 0 else []:
            h = block(h)
        return h, self.head(h).flatten(1).squeeze(1)


class KDGAN(nn.Module):
    """`generator` G(z), `discriminator` D(x); `forward` runs the latent search (model parameters untouched).

    `set_progress(epochs_done)` moves both networks to the growth stage of that point of training.

    Search loss per image: (1 − λ)·mean |x − G(z)| + λ·mean (f(x) − f(G(z)))², f = D's features. Every image
    starts from the same fixed-seed z, so a given input always gets the same score, whatever its batch.
    """


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
        progressive: bool = True,
        start_size: int = 8,
        phase_epochs: float = 10.0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.search_steps = search_steps
        self.search_lr = search_lr
        self.search_lambda = search_lambda
        self.seed = seed
        self.progressive = progressive
        self.phase_epochs = phase_epochs
        self.generator = ProgressiveGenerator(latent_dim, image_size, in_channels, base_width, max_width, start_size)
        self.discriminator = ProgressiveDiscriminator(in_channels, image_size, base_width, max_width, start_size)
        self.apply(kaiming_init)
        self.register_buffer("trained_steps", torch.tensor(0))
        """Optimisation steps taken so far (the recipe's clock for the growth schedule; saved in checkpoints)."""
        self.set_progress(0.0)

    def set_progress(self, epochs_done: float) -> tuple[int, float]:
        """Set G's and D's stage for `epochs_done` (fractional) epochs of training; returns (level, α).
        Without progressive growing every level is active from the start."""
        levels = self.generator.levels
        stage = growth_stage(epochs_done, levels, self.phase_epochs) if self.progressive else (levels - 1, 1.0)
        for network in (self.generator, self.discriminator):
            network.stage.copy_(torch.tensor(stage, dtype=network.stage.dtype))
        return stage

    @classmethod
    def from_config(cls, cfg: RunConfig) -> KDGAN:
        """Build from a `RunConfig` (data.channels / model_size, the `grdnet.methods.kdgan` options, train.seed)."""
        model = cfg.model
        return cls(
            in_channels=cfg.data.channels,
            image_size=cfg.data.model_size,
            base_width=model.base_width,
            max_width=model.max_width,
            latent_dim=model.latent_dim,
            search_steps=model.search_steps,
            search_lr=model.search_lr,
            search_lambda=model.search_lambda,
            seed=cfg.train.seed,
            progressive=model.progressive,
            start_size=model.start_size,
            phase_epochs=float(model.phase_epochs),
        )

    def initial_latent(self, batch: int, device: torch.device) -> Tensor:
        """The search's starting z (batch, latent_dim, 1, 1): one fixed-seed draw, the same for every image."""
        generator = torch_generator(self.seed, "latent_search")
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
