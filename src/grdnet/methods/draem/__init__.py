"""DRAEM: reconstructive autoencoder + discriminative U-Net trained on synthetic anomalies.

Model `grdnet.models.draem`, recipe `grdnet.training.recipes.draem`. Defaults after the DRAEM paper: widths
128 / 64 (capped at 512: ≈ 87 M parameters, DRAEM ≈ 97 M), a 5-level U-Net, Adam(0.9, 0.999) 1e-4, 700 epochs
(MultiStepLR in its recipe), β ~ U(0, 0.8), no rotation. The paper's textures: --texture folder --texture-dir
DTD/images (the default stays "random" so no folder is required).
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Norm, SegmenterOutput, Upsample, Width


class DRAEMOptions(MethodOptions):
    name: Literal["draem"] = "draem"
    base_width: Width = 128
    max_width: Width = 512
    upsample: Upsample = "transpose"
    segmenter_width: Width = 64
    segmenter_levels: int = Field(5, ge=1, le=6)
    segmenter_output: SegmenterOutput = "sigmoid"
    norm: Norm = "group"
    """"batch" is the original's."""


METHOD = Method(
    name="draem",
    summary="DRAEM: reconstructive autoencoder + discriminative U-Net, DTD or random textures",
    options=DRAEMOptions,
    model="grdnet.models.draem:DRAEM",
    recipe="grdnet.training.recipes.draem:DRAEMRecipe",
    map_scored=True,
    tileable=True,
    defaults={"train.epochs": 700, "train.lr": 1e-4, "train.betas": (0.9, 0.999), "synthesis.beta": (0.0, 0.8),
              "synthesis.rotation_degrees": 0.0},
    profiles={
        "cpu": {"model.base_width": 16, "model.max_width": 64, "model.segmenter_width": 16,
                "model.segmenter_levels": 4, "train.batch_size": 16, "train.lr": 1e-3},
        "gpu": {"train.batch_size": 16},
    },
    quick={"base_width": 4, "max_width": 8, "segmenter_width": 4, "segmenter_levels": 2},
)
