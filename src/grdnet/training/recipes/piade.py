"""Pyramidal-autoencoder training logic: normal images only, reconstruction + perceptual loss.

Loss = mean (x − x̂)² + `loss.w_perceptual` · mean squared difference of the features of a fixed network
(`grdnet.models.perceptual.feature_extractor`, which network is written to the run's console log). No
synthetic anomalies; images are rotated by up to `synthesis.rotation_degrees` (0 by default); known defect
images, if given, are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grdnet.config import RunConfig
from grdnet.models.perceptual import feature_extractor, perceptual_distance
from grdnet.synthesis import random_rotate
from grdnet.training.recipes.base import Recipe, StepContext


class PIADERecipe(Recipe):
    """One Adam optimiser (`piade`); logs `loss`, `mse` and `perceptual`."""

    monitored = "loss"

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        network, description = feature_extractor(cfg.data.channels, cfg.train.seed)
        self.perceptual_network = network.to(context.device)
        context.log(description)

    def parts(self) -> dict[str, nn.Module]:
        return {"piade": self.model}

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        x, _ = random_rotate(batch["image"], None, self.cfg.synthesis.rotation_degrees, generator)
        with self.autocast():
            x_hat = self.parts_wrapped["piade"](x)["reconstruction"]
            mse = F.mse_loss(x_hat.float(), x.float())
            perceptual = perceptual_distance(self.perceptual_network, x, x_hat)
            loss = mse + self.cfg.loss.w_perceptual * perceptual.float()
        self.step(self.optimizers["piade"], loss)
        return {"loss": loss.detach(), "mse": mse.detach(), "perceptual": perceptual.detach().float()}
