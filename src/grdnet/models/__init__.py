"""Models: plain `nn.Module`s whose `forward(x)` returns maps and scores; `build_model` picks one by name."""

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

IMPLEMENTED = {
    "grdnet": GRDNet.from_config,
    "ganomaly": GANomaly.from_config,
    "draem": DRAEM.from_config,
    "kdgan": KDGAN.from_config,
    "vtadl": VTADL.from_config,
    "capsnet": CapsNet.from_config,
    "piade": PyramidalAutoencoder.from_config,
    "patchcore": PatchCore.from_config,
    "padim": PaDiM.from_config,
}


def build_model(cfg: RunConfig) -> nn.Module:
    """The model named by `cfg.model.name`, built from the run configuration."""
    return IMPLEMENTED[cfg.model.name](cfg)
