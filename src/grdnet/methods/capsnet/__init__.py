"""capsnet: a supervised capsule network for highly imbalanced data (normal + a few known defect images); the
image score is the defect capsule's length.

Model `grdnet.models.capsnet`, recipe `grdnet.training.recipes.capsnet`. Sabour et al.'s Adam 1e-3; needs
`data.known_defects`; flips augment both classes.
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Width


class CapsNetOptions(MethodOptions):
    name: Literal["capsnet"] = "capsnet"
    base_width: Width = 32
    max_width: Width = 256
    capsule_types: int = Field(8, ge=1)
    """Primary capsules (8 values each) per position."""
    routing_iterations: int = Field(3, ge=1)
    """Rounds of dynamic routing by agreement."""


METHOD = Method(
    name="capsnet",
    summary="supervised capsule network for highly imbalanced data; image-level decision",
    options=CapsNetOptions,
    model="grdnet.models.capsnet:CapsNet",
    recipe="grdnet.training.recipes.capsnet:CapsNetRecipe",
    map_scored=False,
    defaults={"train.lr": 1e-3, "train.betas": (0.9, 0.999), "train.epochs": 50, "synthesis.rotation_degrees": 0.0},
    quick={"base_width": 4, "max_width": 8, "capsule_types": 4},
)
