"""VT-ADL: a ViT autoencoder on image patches + a Gaussian-mixture density of the patch embeddings; the map is
the per-patch negative log-likelihood.

Model `grdnet.models.vtadl`, recipe `grdnet.training.recipes.vtadl`.
"""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from grdnet.methods.base import Method, MethodOptions, Width


class VTADLOptions(MethodOptions):
    name: Literal["vtadl"] = "vtadl"
    base_width: Width = 512
    """The transformer's embedding dimension D."""
    patch_size: int = 16
    """Side of the square patches (a power of two ≥ 2 dividing the model size's sides)."""
    depth: int = Field(6, ge=1)
    """Transformer blocks."""
    heads: int = Field(8, ge=1)
    """Attention heads; must divide base_width."""
    components: int = Field(16, ge=1)
    """Gaussians in the mixture."""

    @field_validator("patch_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 2 or value & (value - 1):
            raise ValueError(f"must be a power of two >= 2, got {value}")
        return value

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "VTADLOptions":
        if self.base_width % self.heads:
            raise ValueError(f"base_width {self.base_width} (the embedding dim) must be divisible by heads {self.heads}")
        return self


METHOD = Method(
    name="vtadl",
    summary="VT-ADL: ViT autoencoder on patches + Gaussian-mixture density network; map from per-patch NLL",
    options=VTADLOptions,
    model="grdnet.models.vtadl:VTADL",
    recipe="grdnet.training.recipes.vtadl:VTADLRecipe",
    map_scored=True,
    defaults={"train.betas": (0.9, 0.999), "synthesis.rotation_degrees": 0.0},
    quick={"base_width": 16, "depth": 1, "heads": 2, "components": 2},
)
