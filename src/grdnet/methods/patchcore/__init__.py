"""PatchCore: nearest-neighbour distances of pretrained patch features to a coreset memory bank of normal ones.

Model `grdnet.models.patchcore`, recipe `grdnet.training.recipes.patchcore`. One pass over the normal images
(no optimiser) on a pretrained backbone at its native 224² (the paper's input size). The map comes
Gaussian-smoothed (σ = `sigma`) from the model, so the scoring head's average pool is off (kernel 1).
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Level, Method
from grdnet.methods.features import FeatureOptions


class PatchCoreOptions(FeatureOptions):
    name: Literal["patchcore"] = "patchcore"
    layers: list[Level] = Field(["layer2", "layer3"], min_length=1)
    coreset_ratio: float = Field(0.1, gt=0.0, le=1.0)
    """Share of the training patches the greedy coreset keeps (per chunk)."""
    projection_dim: int = Field(128, ge=1)
    """Dimensions of the coreset selection's random projection (none when the features have fewer)."""
    coreset_chunk: int = Field(16384, ge=1)
    """Most patches one greedy selection sees at once (bounds the cost on CPU)."""
    neighbours: int = Field(9, ge=1)
    """b, the bank entries the image score's re-weighting looks at."""


METHOD = Method(
    name="patchcore",
    summary="PatchCore: pretrained patch features, greedy-coreset memory bank, nearest-neighbour distance map",
    options=PatchCoreOptions,
    model="grdnet.models.patchcore:PatchCore",
    recipe="grdnet.training.recipes.patchcore:PatchCoreRecipe",
    map_scored=False,  # the image score is the re-weighted largest patch distance
    single_pass=True,
    defaults={"train.epochs": 1, "data.image_size": (224, 224), "synthesis.rotation_degrees": 0.0,
              "scoring.smoothing_kernel": 1},
    quick={},
)
