"""GRD-Net training logic: per batch D, then G with D frozen, then S on (x_n, x̂.detach())."""

from __future__ import annotations

import torch
from torch import nn

from grdnet import losses
from grdnet.config import RunConfig
from grdnet.models.feature_maps import nearest_neighbours
from grdnet.runtime import frozen
from grdnet.seeds import torch_generator
from grdnet.tiling import random_tile_crops
from grdnet.training.recipes.base import StepContext, SyntheticAnomalyRecipe

MEMORY_TILES_PER_IMAGE = 4
"""Random training tiles per image whose patches are candidates for the segmenter's memory bank."""
MEMORY_BATCH = 64
MEMORY_SCALE_SAMPLE = 4096
"""Patches not in the bank whose median distance to it is the segmenter's typical normal distance."""


class GRDNetRecipe(SyntheticAnomalyRecipe):
    """Three Adam optimisers (generator, discriminator, segmenter).

    Known defect images (`batch["known_image"]`, `known_mask`, `known_roi`), when given, are extra real
    positives for the segmenter: their reconstruction by the current generator is paired with them, and
    they never enter the generator's losses (their defect-free appearance is unknown).
    """

    monitored = "con"

    def __init__(self, model: nn.Module, cfg: RunConfig, context: StepContext) -> None:
        super().__init__(model, cfg, context)
        backbone = model.segmenter.backbone
        if backbone is not None:  # loaded here, so a checkpoint carries the weights and inference needs neither
            source = backbone.load_weights(cfg.model.backbone_weights)
            context.log(f"segmenter features: pretrained EfficientNet-Lite0 from {source}, frozen")

    def prepare(self, train_data: dict[str, torch.Tensor]) -> None:
        """Fill the segmenter's memory bank (`model.memory_bank_size` > 0): patch features of `MEMORY_TILES_PER_IMAGE`
        random training tiles per image (whole images without tiling), `memory_bank_size` of them drawn at random;
        the typical normal distance is the median distance of other drawn patches to the bank."""
        size = self.cfg.model.memory_bank_size
        if not size:
            return
        segmenter = self.model.segmenter
        generator = torch_generator(self.cfg.train.seed, "memory_bank")
        tile_size = self.cfg.data.tile_size
        patches = []
        rounds = MEMORY_TILES_PER_IMAGE if tile_size else 1
        with torch.no_grad():
            for _ in range(rounds):
                for start in range(0, len(train_data["image"]), MEMORY_BATCH):
                    batch = {key: value[start : start + MEMORY_BATCH] for key, value in train_data.items()}
                    if tile_size:
                        valid = batch.pop("valid")
                        batch = random_tile_crops(batch, tile_size, generator, valid=valid)
                    queries = segmenter.memory_queries(segmenter.backbone(batch["image"].to(self.context.device)))
                    patches.append(queries.permute(0, 2, 3, 1).reshape(-1, queries.shape[1]).cpu())
            patches = torch.cat(patches)
            order = torch.randperm(len(patches), generator=generator)
            bank, others = patches[order[:size]], patches[order[size : size + MEMORY_SCALE_SAMPLE]]
            bank = bank.to(self.context.device)
            scale = nearest_neighbours(others.to(self.context.device), bank)[0].median() if len(others) else 1.0
            segmenter.set_memory(bank, float(scale))
        self.context.log(f"segmenter memory bank: {len(bank)} of {len(patches)} normal patch features, "
                         f"typical distance {float(scale):.3g}")

    def parts(self) -> dict[str, nn.Module]:
        return {
            "generator": self.model.generator,
            "discriminator": self.model.discriminator,
            "segmenter": self.model.segmenter,
        }

    def training_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        weights = self.cfg.loss
        data = self.corrupt(batch, generator)
        x, x_n, roi, mask = data["clean"], data["corrupted"], data["roi"], data["mask"]
        G, D, S = (self.parts_wrapped[name] for name in ("generator", "discriminator", "segmenter"))

        with self.autocast():
            out = G(x_n)
            x_hat = out["reconstruction"]

            # 1. Discriminator: real = clean x, fake = x̂ (detached).
            _, logits = D(torch.cat([x, x_hat.detach()]))
            real_logits, fake_logits = logits.chunk(2)
            loss_d = losses.discriminator_loss(real_logits, fake_logits)
        self.step(self.optimizers["discriminator"], loss_d)

        # 2. Generator, D frozen: feature matching + contextual + latent.
        with frozen(self.raw["discriminator"]), self.autocast():
            features, _ = self.raw["discriminator"](torch.cat([x, x_hat]))
            real_features, fake_features = features.chunk(2)
            loss_g, parts = losses.generator_loss(
                x, x_hat, out["z"], out["z_hat"], real_features.detach(), fake_features, weights
            )
        self.step(self.optimizers["generator"], loss_g)

        # 3. Segmenter on (x_n, x̂) with x̂ detached; focal loss on the ROI intersection.
        seg_input, seg_mask, seg_roi = x_n, mask, roi
        x_hat_seg = x_hat.detach()
        if "known_image" in batch:
            with torch.no_grad(), self.autocast():
                known_hat = self.raw["generator"](batch["known_image"])["reconstruction"]
            seg_input = torch.cat([seg_input, batch["known_image"]])
            x_hat_seg = torch.cat([x_hat_seg, known_hat])
            seg_mask = torch.cat([seg_mask, batch["known_mask"]])
            seg_roi = torch.cat([seg_roi, batch["known_roi"]])
        with self.autocast():
            anomaly_map = S(seg_input, x_hat_seg)
            loss_s = losses.segmentation_loss(
                anomaly_map.float(), seg_mask, seg_roi, roi_on=weights.roi_on,
                gamma=weights.focal_gamma, alpha=weights.focal_alpha,
            )
        self.step(self.optimizers["segmenter"], loss_s)

        return {
            "d": loss_d.detach(),
            "g": loss_g.detach(),
            **parts,
            "seg": loss_s.detach(),
        }
