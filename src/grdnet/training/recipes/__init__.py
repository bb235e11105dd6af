"""One training recipe per method; `build_recipe` picks it from `cfg.model.name`."""

from __future__ import annotations

from torch import nn

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.training.recipes.base import FeatureFitRecipe, Recipe, StepContext, SyntheticAnomalyRecipe
from grdnet.training.recipes.capsnet import CapsNetRecipe
from grdnet.training.recipes.draem import DRAEMRecipe
from grdnet.training.recipes.ganomaly import GanomalyRecipe
from grdnet.training.recipes.grdnet import GRDNetRecipe
from grdnet.training.recipes.kdgan import KDGANRecipe
from grdnet.training.recipes.padim import PaDiMRecipe
from grdnet.training.recipes.patchcore import PatchCoreRecipe
from grdnet.training.recipes.piade import PIADERecipe
from grdnet.training.recipes.vtadl import VTADLRecipe

RECIPES: dict[str, type[Recipe]] = {"draem": DRAEMRecipe, "vtadl": VTADLRecipe, "ganomaly": GanomalyRecipe, "grdnet": GRDNetRecipe, "kdgan": KDGANRecipe,
                               "capsnet": CapsNetRecipe,
                               "piade": PIADERecipe, "patchcore": PatchCoreRecipe, "padim": PaDiMRecipe}


def build_recipe(model: nn.Module, cfg: RunConfig, context: StepContext) -> Recipe:
    """The recipe that trains `model` as `cfg.model.name` describes."""
    try:
        recipe_class = RECIPES[cfg.model.name]
    except KeyError:
        raise ConfigError(f"model '{cfg.model.name}' has no training recipe; choose one of {sorted(RECIPES)}") from None
    return recipe_class(model, cfg, context)


__all__ = ["FeatureFitRecipe", "Recipe", "StepContext", "SyntheticAnomalyRecipe", "build_recipe", "RECIPES"]
