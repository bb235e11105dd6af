"""kdgan training logic: a GAN whose discriminator also learns known defect images as fakes, grown
progressively (`grdnet.models.kdgan`)."""

from __future__ import annotations

import torch
from torch import nn

from grdnet import losses
from grdnet.runtime import frozen
from grdnet.synthesis import random_rotate
from grdnet.training.recipes.base import Recipe


class KDGANRecipe(Recipe):
    """Two Adam optimisers (generator, discriminator); per batch D, then G with D frozen.

    D loss = BCE(D(x) → real) + BCE(D(G(z)) → fake) + γ·BCE(D(known defect) → fake), γ =
    `loss.known_defect_gamma`: known defect images (`batch["known_image"]`) are a penalised second fake, so
    the generator's distribution is pushed away from defects. G loss = non-saturating BCE + `loss.w_adv` ·
    batch-mean feature matching (`losses.kdgan_generator_loss`). No synthetic anomalies; clean images are
    rotated by up to `synthesis.rotation_degrees` (0 by default). ROIs are not used: G models whole images.

    Before each step the growth stage is set from the steps taken so far (`model.trained_steps`, saved with the
    weights) over the steps per epoch, so the schedule — and a resumed run — depends only on that count; each
    new resolution is written to the run's log.
    """

    monitored = "fm"

    def parts(self) -> dict[str, nn.Module]:
        return {"generator": self.model.generator, "discriminator": self.model.discriminator}

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.advance_growth()
        x, _ = random_rotate(batch["image"], None, self.cfg.synthesis.rotation_degrees, generator)
        z = torch.randn(len(x), self.model.latent_dim, 1, 1, generator=generator, device=x.device)
        G, D = self.parts_wrapped["generator"], self.parts_wrapped["discriminator"]
        known = batch.get("known_image")

        with self.autocast():
            fake = G(z)
            _, logits = D(torch.cat([x, fake.detach()] + ([known] if known is not None else [])))
            real_logits, fake_logits, known_logits = logits[: len(x)], logits[len(x) : 2 * len(x)], logits[2 * len(x) :]
            loss_d = losses.discriminator_loss(
                real_logits, fake_logits, known_logits if known is not None else None, self.cfg.loss.known_defect_gamma
            )
        self.step(self.optimizers["discriminator"], loss_d)

        with frozen(self.raw["discriminator"]), self.autocast():
            features, logits = self.raw["discriminator"](torch.cat([x, fake]))
            real_features, fake_features = features.chunk(2)
            loss_g, parts = losses.kdgan_generator_loss(
                logits[len(x) :], real_features.detach(), fake_features, self.cfg.loss.w_adv
            )
        self.step(self.optimizers["generator"], loss_g)
        self.model.trained_steps += 1
        return {"d": loss_d.detach(), "g": loss_g.detach(), **parts}

    def advance_growth(self) -> None:
        """Set the model's stage for this step; log when a new resolution starts fading in."""
        steps = int(self.model.trained_steps)
        before = self.model.set_progress((steps - 1) / self.context.steps_per_epoch)[0] if steps else -1
        level, _ = self.model.set_progress(steps / self.context.steps_per_epoch)
        if level != before:
            height, width = (side // 2 ** (self.model.generator.levels - 1 - level) for side in self.cfg.data.model_size)
            self.context.log(f"kdgan: training at {height}×{width} (resolution {level + 1} of {self.model.generator.levels})")
