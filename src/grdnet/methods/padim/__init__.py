"""PaDiM: a per-position Gaussian of pretrained patch features; the map is the Mahalanobis distance.

Model `grdnet.models.padim`, recipe `grdnet.training.recipes.padim`. One pass over the normal images (no
optimiser) on a pretrained backbone at its native 224² (the paper's input size). The map comes
Gaussian-smoothed (σ = `sigma`) from the model, so the scoring head's average pool is off (kernel 1).
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Level, Method
from grdnet.methods.features import FeatureOptions


class PaDiMOptions(FeatureOptions):
    name: Literal["padim"] = "padim"
    layers: list[Level] = Field(["layer1", "layer2", "layer3"], min_length=1)
    channels: int = Field(100, ge=1)
    """Random subset of the layers' channels kept (at most their total)."""


METHOD = Method(
    name="padim",
    summary="PaDiM: per-position Gaussian of pretrained features; Mahalanobis distance map",
    options=PaDiMOptions,
    model="grdnet.models.padim:PaDiM",
    recipe="grdnet.training.recipes.padim:PaDiMRecipe",
    map_scored=True,
    single_pass=True,
    defaults={"train.epochs": 1, "data.image_size": (224, 224), "synthesis.rotation_degrees": 0.0,
              "scoring.smoothing_kernel": 1},
    quick={"channels": 16},
)
