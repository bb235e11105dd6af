"""Capsule-network training logic: supervised, normal vs known defect images, class-balanced batches.

Every batch holds `batch_size` normal images and as many known defect images, drawn uniformly with
replacement from the known-defects folder (the trainer's class-balanced sampling, `Recipe.class_balanced`), so
each class weighs the same in the margin loss however few defect images there are. Both classes are flipped
horizontally and vertically at random (and rotated by up to `synthesis.rotation_degrees`, 0 by default).
"""

from __future__ import annotations

import torch

from grdnet import losses
from grdnet.synthesis import random_rotate
from grdnet.training.recipes.base import Recipe


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image (B,C,H,W) left-right and/or top-bottom, each with probability 1/2."""
    flips = torch.rand(2, len(images), 1, 1, 1, generator=generator, device=images.device) < 0.5
    images = torch.where(flips[0], images.flip(-1), images)
    return torch.where(flips[1], images.flip(-2), images)


class CapsNetRecipe(Recipe):
    """One Adam optimiser (`capsnet`); loss = margin loss on the class-capsule lengths (label 0 normal, 1 defect).

    Logged: `loss` (margin loss), `defect_length` / `normal_length` (mean defect-capsule length on each class).
    """

    monitored = "loss"
    class_balanced = True

    def parts(self) -> dict[str, torch.nn.Module]:
        return {"capsnet": self.model}

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        normal, known = batch["image"], batch["known_image"]
        images = torch.cat([normal, known])
        labels = torch.cat([normal.new_zeros(len(normal)), normal.new_ones(len(known))])
        images, _ = random_rotate(random_flips(images, generator), None, self.cfg.synthesis.rotation_degrees, generator)
        with self.autocast():
            lengths = self.parts_wrapped["capsnet"](images)["class_lengths"]
            loss = losses.margin_loss(lengths.float(), labels)
        self.step(self.optimizers["capsnet"], loss)
        defect = lengths.detach()[:, 1]
        return {"loss": loss.detach(), "normal_length": defect[: len(normal)].mean(),
                "defect_length": defect[len(normal) :].mean()}
