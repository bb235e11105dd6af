"""Models: plain `nn.Module`s whose `forward(x)` returns maps and scores; `build_model` builds the one the
configuration's method names (its record in `grdnet.methods` says which class)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from grdnet.models.blocks import (
    PreActResidualBlock,
    ResidualDecoder,
    ResidualEncoder,
    UNet,
    init_weights,
    make_norm,
)
from grdnet.models.capsnet import CapsNet
from grdnet.models.draem import DRAEM
from grdnet.models.ganomaly import GANomaly, GanomalyDiscriminator, GanomalyGenerator
from grdnet.models.grdnet import Discriminator, Generator, GRDNet, Segmenter
from grdnet.models.kdgan import KDGAN
from grdnet.models.padim import PaDiM
from grdnet.models.patchcore import PatchCore
from grdnet.models.pyramidal import PyramidalAutoencoder
from grdnet.models.vtadl import VTADL

if TYPE_CHECKING:
    from grdnet.config import RunConfig

__all__ = [
    "CapsNet",
    "DRAEM",
    "VTADL",
    "Discriminator",
    "GANomaly",
    "GRDNet",
    "GanomalyDiscriminator",
    "GanomalyGenerator",
    "KDGAN",
    "PaDiM",
    "PatchCore",
    "Generator",
    "PreActResidualBlock",
    "PyramidalAutoencoder",
    "ResidualDecoder",
    "ResidualEncoder",
    "Segmenter",
    "UNet",
    "build_model",
    "init_weights",
    "make_norm",
]

def build_model(cfg: RunConfig) -> nn.Module:
    """The model of method `cfg.model.name`, built from the run configuration."""
    from grdnet.methods import get_method

    return get_method(cfg.model.name).build_model(cfg)
