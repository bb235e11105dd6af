"""GANomaly: DCGAN encoder–decoder–encoder + discriminator; the image score is the latent distance.

Model `grdnet.models.ganomaly`, recipe `grdnet.training.recipes.ganomaly`.
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Width


class GanomalyOptions(MethodOptions):
    name: Literal["ganomaly"] = "ganomaly"
    base_width: Width = 64
    max_width: Width = 2048
    latent_dim: int = Field(100, ge=1)
    """Size of the latent vectors z and ẑ (the paper's 100)."""


METHOD = Method(
    name="ganomaly",
    summary="GANomaly: DCGAN E–D–E + discriminator; scores: latent (z − ẑ)², discriminator features, image L1",
    options=GanomalyOptions,
    model="grdnet.models.ganomaly:GANomaly",
    recipe="grdnet.training.recipes.ganomaly:GanomalyRecipe",
    map_scored=False,
    defaults={"train.lr": 2e-4, "train.epochs": 15, "loss.w_ssim": 0.0, "synthesis.rotation_degrees": 0.0},
    quick={"base_width": 4, "max_width": 8, "latent_dim": 16},
)
