"""DRAEM training logic: one Adam over both sub-networks, trained jointly on synthetic anomalies.

Per batch: rotate (off by default) and corrupt the clean images, run the model on the augmented images
(x̂ is *not* detached: the focal loss also trains the reconstructive part, as in DRAEM), loss
L2 + (1 − SSIM) against the clean images + focal on the anomaly map.

Known defect images (`batch["known_image"]`, `known_mask`, `known_roi`), when given, go through the same
forward pass as extra real positives for the segmentation loss; their clean appearance is unknown, so they
are left out of the reconstruction terms.

Schedule: DRAEM trains 700 epochs and multiplies the lr by 0.1 at epochs 400 and 600; here the milestones
are at 4/7 and 6/7 of `train.epochs` (rounded, at least 1), so shorter runs keep the same shape.
"""

from __future__ import annotations

import torch
from torch import nn

from grdnet import losses
from grdnet.training.recipes.base import SyntheticAnomalyRecipe

MILESTONE_FRACTIONS = (4 / 7, 6 / 7)
"""Where the lr drops, as fractions of train.epochs (400 and 600 of 700)."""
LR_DROP = 0.1


def milestones(epochs: int) -> list[int]:
    """Epochs after which the lr is multiplied by LR_DROP: [400, 600] for 700 epochs."""
    return [max(1, round(fraction * epochs)) for fraction in MILESTONE_FRACTIONS]


class DRAEMRecipe(SyntheticAnomalyRecipe):
    """A single Adam optimiser (`draem`) over the reconstructive and discriminative sub-networks."""

    monitored = "loss"

    def parts(self) -> dict[str, nn.Module]:
        return {"draem": self.model}

    def make_scheduler(self, name: str, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
        """MultiStepLR ×0.1 at `milestones(train.epochs)`; stepped once per epoch."""
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones(self.cfg.train.epochs), gamma=LR_DROP)

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        data = self.corrupt(batch, generator)
        inputs, masks, rois = data["corrupted"], data["mask"], data["roi"]
        if "known_image" in batch:
            inputs = torch.cat([inputs, batch["known_image"]])
            masks = torch.cat([masks, batch["known_mask"]])
            rois = torch.cat([rois, batch["known_roi"]])
        synthetic = len(data["clean"])
        with self.autocast():
            out = self.parts_wrapped["draem"](inputs)
            loss, parts = losses.draem_loss(
                data["clean"], out["reconstruction"][:synthetic], out["anomaly_map"].float(), masks, rois, self.cfg.loss
            )
        self.step(self.optimizers["draem"], loss)
        return {"loss": loss.detach(), **parts}
