"""Models: plain `nn.Module`s whose `forward(x)` returns maps and scores; `build_model` picks one by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import (
    PreActResidualBlock,
    ResidualDecoder,
    ResidualEncoder,
    UNet,
    init_weights,
    make_norm,
)
from grdnet.models.grdnet import Discriminator, Generator, GRDNet, Segmenter

if TYPE_CHECKING:
    from grdnet.config import RunConfig

__all__ = [
    "Discriminator",
    "GRDNet",
    "Generator",
    "PreActResidualBlock",
    "ResidualDecoder",
    "ResidualEncoder",
    "Segmenter",
    "UNet",
    "build_model",
    "init_weights",
    "make_norm",
]

IMPLEMENTED = {"grdnet": GRDNet.from_config}


def build_model(cfg: RunConfig) -> nn.Module:
    """The model named by `cfg.model.name`, built from the run configuration."""
    name = cfg.model.name
    if name not in IMPLEMENTED:
        raise ConfigError(
            f"model.name: '{name}' is not implemented yet; available: {', '.join(sorted(IMPLEMENTED))}"
        )
    return IMPLEMENTED[name](cfg)
