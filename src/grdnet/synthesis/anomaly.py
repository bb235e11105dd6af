"""DRAEM-style synthetic anomalies on batches, on the training device."""

from __future__ import annotations

import torch
from torch import Tensor

from grdnet.config import SynthesisConfig
from grdnet.synthesis.perlin import local_windows, perlin_masks, stroke_masks
from grdnet.synthesis.textures import augment_textures, make_texture_source


def blend(images: Tensor, textures: Tensor, masks: Tensor, beta: Tensor) -> Tensor:
    """x_n = x·(1−M) + (1−β)·T·M + β·x·M.

    images, textures: (B, C, H, W) in [0, 1]; masks: (B, 1, H, W) in {0, 1}; beta: (B,) in [0, 1].
    Returns (B, C, H, W) in [0, 1]; equal to `images` wherever M = 0.
    """
    beta = beta.view(-1, 1, 1, 1)
    return images * (1 - masks) + (1 - beta) * textures * masks + beta * images * masks


STROKE_THICKNESS = (1.0, 3.0)
"""Width range of stroke anomalies in pixels (thin cracks and scratches at the working resolution)."""


class AnomalySynthesizer:
    """Adds a synthetic anomaly to each sample with probability `cfg.probability`.

    Per sample: a Perlin mask (`perlin_masks`), a texture from `cfg.texture` passed through
    `cfg.texture_augmentations` random augmentations, and β ~ U(cfg.beta). Samples not chosen are
    returned unchanged with an all-zero mask and label 0. Rotation is not done here (see
    `random_rotate`, which the trainer applies to clean images and ROIs first). Images and the generator
    must be on `device`; the texture folder (if any) is read on the first call.
    """

    def __init__(
        self, cfg: SynthesisConfig, image_size: tuple[int, int], channels: int, device: torch.device | str
    ) -> None:
        self.cfg = cfg
        self.image_size = tuple(image_size)
        self.channels = channels
        self.device = torch.device(device)
        self.texture_source = make_texture_source(cfg, self.image_size, channels, self.device)

    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, C, H, W) in [0, 1] -> (augmented (B, C, H, W) in [0, 1], masks (B, 1, H, W) in
        {0, 1}, labels (B,) float in {0, 1}); every label-1 sample has a non-empty mask."""
        batch, channels, height, width = images.shape
        if (channels, height, width) != (self.channels, *self.image_size):
            raise ValueError(
                f"AnomalySynthesizer built for {(self.channels, *self.image_size)}, got images {tuple(images.shape)}"
            )
        device = images.device
        cfg = self.cfg
        labels = (torch.rand(batch, generator=generator, device=device) < cfg.probability).float()
        masks = perlin_masks(
            batch, height, width, generator, device, scale_exponents=cfg.perlin_scale_exponents, min_area=cfg.min_area
        )
        if cfg.local_extent is not None:  # one local blob: Perlin shape inside a small window (the window if empty)
            windows = local_windows(batch, height, width, cfg.local_extent, generator, device)
            local = masks * windows
            empty = local.flatten(1).amax(1) == 0
            chosen = torch.rand(batch, generator=generator, device=device) < cfg.local_share
            local = torch.where(empty.view(-1, 1, 1, 1), windows, local)
            if cfg.stroke_share > 0:
                lo, hi = cfg.local_extent
                strokes = stroke_masks(batch, height, width, (2 * lo, 4 * hi), STROKE_THICKNESS, generator, device)
                drawn = torch.rand(batch, generator=generator, device=device) < cfg.stroke_share
                local = torch.where(drawn.view(-1, 1, 1, 1), strokes, local)
            masks = torch.where(chosen.view(-1, 1, 1, 1), local, masks)
        masks = masks * labels.view(-1, 1, 1, 1)
        textures = augment_textures(self.texture_source(images, generator), cfg.texture_augmentations, generator)
        lo, hi = cfg.beta
        beta = lo + (hi - lo) * torch.rand(batch, generator=generator, device=device)
        return blend(images, textures, masks, beta), masks, labels
