"""Synthetic anomalies (Perlin masks, textures, blend) and rotation, batched on the training device."""

from grdnet.synthesis.anomaly import AnomalySynthesizer, blend
from grdnet.synthesis.geometry import random_rotate, rotate
from grdnet.synthesis.perlin import ellipse_masks, min_area_pixels, perlin_masks, perlin_noise
from grdnet.synthesis.textures import (
    AUGMENTATIONS,
    FolderTextures,
    augment_textures,
    make_texture_source,
    random_textures,
    self_textures,
    texture_files,
)

__all__ = [
    "AUGMENTATIONS",
    "AnomalySynthesizer",
    "FolderTextures",
    "augment_textures",
    "blend",
    "ellipse_masks",
    "make_texture_source",
    "min_area_pixels",
    "perlin_masks",
    "perlin_noise",
    "random_rotate",
    "random_textures",
    "rotate",
    "self_textures",
    "texture_files",
]
