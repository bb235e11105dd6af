"""VT-ADL training logic: one Adam over the whole model, on clean images only.

Loss 5·MSE + 0.5·(1 − SSIM) + mean per-patch mixture NLL (the mixture sees detached embeddings, see
`grdnet.models.vtadl`). After each step the running NLL statistics that standardise the anomaly map are
updated from the batch. No synthetic anomalies; known defect images, if given, are not used.
"""

from __future__ import annotations

import torch
from torch import nn

from grdnet import losses
from grdnet.synthesis import random_rotate
from grdnet.training.recipes.base import Recipe

DENSITY_LR_SCALE = 100.0
"""The mixture's learning rate relative to train.lr. The embeddings it models keep moving while the
autoencoder learns; at the autoencoder's rate the mixture lags far behind them (its NLL rises over a run),
at 100× it tracks them. The encoder never sees the mixture's gradient, so this cannot destabilise it."""


class VTADLRecipe(Recipe):
    """A single Adam optimiser (`vtadl`) with two parameter groups: the autoencoder at train.lr and the
    mixture at DENSITY_LR_SCALE × train.lr; the plateau scheduler watches the epoch-mean total loss."""

    monitored = "loss"

    def parts(self) -> dict[str, nn.Module]:
        return {"vtadl": self.model}

    def make_optimizer(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        train = self.cfg.train
        density = list(module.density.parameters())
        autoencoder = [p for p in module.parameters() if all(p is not q for q in density)]
        groups = [{"params": autoencoder}, {"params": density, "lr": train.lr * DENSITY_LR_SCALE}]
        return torch.optim.Adam(groups, lr=train.lr, betas=train.betas)

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        images, _ = random_rotate(batch["image"], batch["roi"], self.cfg.synthesis.rotation_degrees, generator)
        with self.autocast():
            out = self.parts_wrapped["vtadl"](images)
            loss, parts = losses.vtadl_loss(images, out["reconstruction"], out["patch_nll"], window=self.cfg.loss.ssim_window)
        self.step(self.optimizers["vtadl"], loss)
        self.model.update_nll_stats(out["patch_nll"])
        return {"loss": loss.detach(), **parts}

