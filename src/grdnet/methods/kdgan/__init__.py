"""kdgan: a progressive GAN trained with a few known defect images as a penalised second "fake"; inference
searches the latent (AnoGAN-style) for the image's best reconstruction.

Model `grdnet.models.kdgan`, recipe `grdnet.training.recipes.kdgan`.
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Width


class KDGANOptions(MethodOptions):
    name: Literal["kdgan"] = "kdgan"
    base_width: Width = 64
    max_width: Width = 512
    latent_dim: int = Field(100, ge=1)
    search_steps: int = Field(100, ge=0)
    """Adam steps on z per image at inference."""
    search_lr: float = Field(0.05, gt=0)
    search_lambda: float = Field(0.1, ge=0.0, le=1.0)
    """Weight of discriminator-feature matching in the search loss (the rest: the image residual)."""
    progressive: bool = True
    """Grow the networks one resolution per phase (False: every resolution trains from the start)."""
    start_size: int = 8
    """Smaller side of the first resolution: a power of two, at least 4, dividing the image's sides."""
    phase_epochs: float = Field(10, gt=0)
    """Epochs per added resolution, the first half fading it in."""


METHOD = Method(
    name="kdgan",
    summary="GAN with known defect images as a penalised second fake, grown progressively; latent-search inference",
    options=KDGANOptions,
    model="grdnet.models.kdgan:KDGAN",
    recipe="grdnet.training.recipes.kdgan:KDGANRecipe",
    map_scored=False,
    onnx_exportable=False,  # the latent search runs Adam with autograd inside the forward
    defaults={"synthesis.rotation_degrees": 0, "train.lr": 2e-4},
    quick={"base_width": 4, "max_width": 8, "latent_dim": 16, "search_steps": 2},
)
