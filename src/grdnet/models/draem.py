"""DRAEM (Zavrtanik et al. 2021): reconstructive autoencoder + discriminative U-Net.

The reconstructive sub-network maps an (augmented) image to an anomaly-free reconstruction; the
discriminative U-Net sees concat(image, reconstruction) (2C channels) and outputs the anomaly map.
Both are built from the shared blocks: a 4-stage residual encoder / decoder (one residual block per
stage, the depth of DRAEM's plain conv blocks; widths base·2^k capped at `max_width`, bottleneck at 1/16
resolution) and `UNet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from grdnet.models.blocks import (
    NormKind,
    ResidualDecoder,
    ResidualEncoder,
    UNet,
    check_model_size,
    init_weights,
)

if TYPE_CHECKING:
    from grdnet.config import RunConfig

NUM_STAGES = 4
"""Reconstructive encoder stages: bottleneck at 1/16 resolution, as in DRAEM."""


class DRAEM(nn.Module):
    """`reconstructive` (x → x̂ ∈ [0, 1]) and `discriminative` (U-Net on concat(x, x̂) → A ∈ [0, 1])."""


    def __init__(
        self,
        in_channels: int = 3,
        base_width: int = 128,
        max_width: int = 512,
        upsample: Literal["transpose", "resize"] = "transpose",
        segmenter_width: int = 64,
        segmenter_levels: int = 5,
        segmenter_output: Literal["sigmoid", "softmax"] = "sigmoid",
        norm: NormKind = "group",
    ) -> None:
        super().__init__()
        encoder = ResidualEncoder(in_channels, base_width, max_width, NUM_STAGES, blocks_per_stage=1, norm=norm)
        decoder = ResidualDecoder(
            encoder.out_channels, in_channels, base_width, max_width, NUM_STAGES,
            blocks_per_stage=1, upsample=upsample, norm=norm,
        )  # fmt: skip
        self.reconstructive = nn.Sequential(encoder, decoder)
        self.discriminative = UNet(2 * in_channels, 1, segmenter_width, segmenter_levels, segmenter_output, norm=norm)
        self.apply(init_weights)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> DRAEM:
        """Build from a `RunConfig` (data.channels, the `grdnet.methods.draem` options)."""
        model = cfg.model
        check_model_size(cfg.data.model_size, NUM_STAGES, model.segmenter_levels, "DRAEM")
        return cls(
            in_channels=cfg.data.channels,
            base_width=model.base_width,
            max_width=model.max_width,
            upsample=model.upsample,
            segmenter_width=model.segmenter_width,
            segmenter_levels=model.segmenter_levels,
            segmenter_output=model.segmenter_output,
            norm=model.norm,
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → reconstruction (B, C, H, W) in [0, 1], anomaly_map (B, 1, H, W) in [0, 1].
        Differentiable end to end (training uses the same pass on augmented images)."""
        reconstruction = self.reconstructive(x)
        return {"reconstruction": reconstruction, "anomaly_map": self.discriminative(torch.cat([x, reconstruction], dim=1))}
