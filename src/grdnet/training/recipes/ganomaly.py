"""GANomaly training logic (official update order): per batch G with D frozen, then D; D is
re-initialised when its loss collapses."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from grdnet import losses
from grdnet.config import RunConfig
from grdnet.models.ganomaly import dcgan_init
from grdnet.runtime import frozen
from grdnet.synthesis import random_rotate
from grdnet.training.recipes.base import Recipe, StepContext

D_COLLAPSE = 1e-5
"""The discriminator is re-initialised when its loss falls below this."""


class GanomalyRecipe(Recipe):
    """Two Adam optimisers (generator, discriminator) on clean training images; no synthetic anomalies.

    Generator loss: w_adv · ‖f(x) − f(x̂)‖² (feature matching on D's last feature map) + w_con · L_con +
    w_enc · ‖z − ẑ‖², with L_con = w_l1 · L1 (+ w_ssim · (1 − SSIM); GANomaly's defaults set w_ssim = 0).
    Discriminator: BCE, real = x, fake = x̂ (detached); real and fake go through D as separate batches
    (BatchNorm). Images are rotated by up to `synthesis.rotation_degrees` (0 by default).

    Logged per step: `d`, `g`, `adv`, `con`, `enc`, and `d_reinit` (1 when D was re-initialised at this step,
    so its epoch mean is the fraction of such steps); `reinit_count` keeps the run total of this process.
    """

    monitored = "con"

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        self.reinit_count = 0

    def parts(self) -> dict[str, nn.Module]:
        return {"generator": self.model.generator, "discriminator": self.model.discriminator}

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, _ = random_rotate(batch["image"], None, self.cfg.synthesis.rotation_degrees, generator)
        G, D = self.parts_wrapped["generator"], self.parts_wrapped["discriminator"]

        # 1. Generator, D frozen.
        with self.autocast():
            out = G(x)
            x_hat = out["reconstruction"]
        with frozen(self.raw["discriminator"]), self.autocast():
            real_features, _ = self.raw["discriminator"](x)
            fake_features, _ = self.raw["discriminator"](x_hat)
            loss_g, parts = losses.generator_loss(
                x, x_hat, out["z"], out["z_hat"], real_features.detach(), fake_features, self.cfg.loss
            )
        self.step(self.optimizers["generator"], loss_g)

        # 2. Discriminator: real = x, fake = x̂ (detached).
        with self.autocast():
            _, real_logits = D(x)
            _, fake_logits = D(x_hat.detach())
            loss_d = losses.discriminator_loss(real_logits, fake_logits)
        self.step(self.optimizers["discriminator"], loss_d)

        reinit = self.reinit_if_collapsed(loss_d.detach())
        return {"d": loss_d.detach(), "g": loss_g.detach(), **parts, "d_reinit": reinit}

    def reinit_if_collapsed(self, loss_d: torch.Tensor) -> torch.Tensor:
        """Re-draw D's weights (`dcgan_init`) when `loss_d` < 1e-5 on any rank; returns 1.0 if it did, else 0.0."""
        collapsed = (loss_d.float() < D_COLLAPSE).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(collapsed, op=dist.ReduceOp.MAX)
        if collapsed.item():
            self.raw["discriminator"].apply(dcgan_init)
            self.reinit_count += 1
        return collapsed
