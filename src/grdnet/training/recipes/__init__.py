"""Training recipes, one per method; `build_recipe` builds the one `cfg.model.name`'s record names
(`grdnet.methods`: its `recipe` is imported only here, in the training layer)."""

from __future__ import annotations

from torch import nn

from grdnet.config import RunConfig
from grdnet.methods import get_method
from grdnet.training.recipes.base import FeatureFitRecipe, Recipe, StepContext, SyntheticAnomalyRecipe


def build_recipe(model: nn.Module, cfg: RunConfig, context: StepContext) -> Recipe:
    """The recipe that trains `model` as `cfg.model.name` describes."""
    return get_method(cfg.model.name).recipe_class()(model, cfg, context)


__all__ = ["FeatureFitRecipe", "Recipe", "StepContext", "SyntheticAnomalyRecipe", "build_recipe"]
