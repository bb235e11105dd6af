"""piade: a deep pyramidal autoencoder (latents at several resolutions decoded together), trained with a
reconstruction + perceptual loss.

Model `grdnet.models.pyramidal`, recipe `grdnet.training.recipes.piade`.
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Width


class PIADEOptions(MethodOptions):
    name: Literal["piade"] = "piade"
    base_width: Width = 64
    max_width: Width = 512
    latent_channels: int = Field(32, ge=1)
    """Channels of the deepest latent (each shallower level: a quarter as many)."""
    pyramid_levels: int = 3
    """Encoder stages with a latent (the last ones; 16², 8² and 4² for a 256² image); at most the encoder's stages."""


METHOD = Method(
    name="piade",
    summary="deep pyramidal autoencoder: latents at several resolutions, reconstruction + perceptual loss",
    options=PIADEOptions,
    model="grdnet.models.pyramidal:PyramidalAutoencoder",
    recipe="grdnet.training.recipes.piade:PIADERecipe",
    map_scored=True,
    defaults={"train.lr": 1e-3, "train.betas": (0.9, 0.999), "train.epochs": 100, "synthesis.rotation_degrees": 0.0},
    quick={"base_width": 4, "max_width": 8, "latent_channels": 8},
)
