"""Supervised capsule network for highly imbalanced data (Piciarelli et al. 2019/2021, after Sabour et al. 2017).

A convolutional stem halves the image until its smaller side is 16, a convolution turns the 8×8-scale grid
into primary capsules (`capsule_types` vectors of 8 values per position), and dynamic routing by agreement
(`routing_iterations`, default 3) sends them to two 16-value class capsules: good (index 0) and defect
(index 1). A capsule's length in [0, 1) is the network's confidence in its class; the image score is the
length of the defect capsule. The decision is image-level: the anomaly map is that score at every pixel
(no localisation), so the model cannot be tiled. Trained with the margin loss (`grdnet.losses.margin_loss`)
on normal images and a few known defect images, drawn class-balanced (recipe `capsnet`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from grdnet.models.blocks import stage_widths

if TYPE_CHECKING:
    from grdnet.config import RunConfig

STEM_SIDE = 16
"""The stem halves the image until its smaller side is this; the primary capsules then halve it once more."""
PRIMARY_DIM = 8
CLASS_DIM = 16
CLASSES = 2
DEFECT = 1
"""Index of the defect class capsule."""


def squash(s: Tensor, dim: int = -1) -> Tensor:
    """Sabour et al.'s non-linearity: the vector's direction kept, its length mapped to |s|² / (1 + |s|²) in [0, 1)."""
    squared = s.pow(2).sum(dim=dim, keepdim=True)
    return s * squared / ((1.0 + squared) * torch.sqrt(squared + 1e-8))


def stem_stages(image_size: tuple[int, int]) -> int:
    """Stride-2 stages that bring the smaller side down to STEM_SIDE: 64 → 2, 256 → 4."""
    stages = 0
    while min(image_size) // 2 ** (stages + 1) >= STEM_SIDE:
        stages += 1
    return stages


class DynamicRouting(nn.Module):
    """Routing by agreement from `num_inputs` capsules of `in_dim` to `CLASSES` capsules of `out_dim`.

    (B, num_inputs, in_dim) → (B, CLASSES, out_dim). Each input capsule predicts each output through its own
    matrix; coupling coefficients start uniform and are sharpened `iterations` times by the agreement
    (dot product) between predictions and outputs. Predictions are detached in the agreement updates, so the
    gradient flows through the last iteration only (the usual stable form).
    """

    def __init__(self, num_inputs: int, in_dim: int, out_dim: int, iterations: int = 3) -> None:
        super().__init__()
        self.iterations = iterations
        self.weight = nn.Parameter(0.01 * torch.randn(num_inputs, CLASSES, out_dim, in_dim))

    def forward(self, u: Tensor) -> Tensor:
        predictions = torch.einsum("ncoi,bni->bnco", self.weight, u)  # (B, N, CLASSES, out_dim)
        logits = predictions.new_zeros(predictions.shape[:3])
        for iteration in range(self.iterations):
            coupling = logits.softmax(dim=2).unsqueeze(-1)
            if iteration + 1 < self.iterations:
                v = squash((coupling * predictions.detach()).sum(dim=1))
                logits = logits + (predictions.detach() * v.unsqueeze(1)).sum(dim=-1)
            else:
                v = squash((coupling * predictions).sum(dim=1))
        return v


class CapsNet(nn.Module):
    """Stem → primary capsules → dynamic routing → good / defect class capsules.

    `forward(x)`: x (B, C, H, W) in [0, 1] → `class_lengths` (B, 2) in [0, 1), `score` (B,) = defect capsule
    length, `anomaly_map` (B, 1, H, W) = the score at every pixel.
    """


    def __init__(self, in_channels: int = 3, image_size: tuple[int, int] = (256, 256), base_width: int = 64,
                 max_width: int = 256, capsule_types: int = 8, routing_iterations: int = 3) -> None:
        super().__init__()
        stages = stem_stages(image_size)
        widths = stage_widths(base_width, max_width, stages)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.ReLU()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU()]
        self.stem = nn.Sequential(*layers)
        self.capsule_types = capsule_types
        self.primary = nn.Conv2d(widths[-1], capsule_types * PRIMARY_DIM, 3, 2, 1)
        grid = (image_size[0] // 2 ** (stages + 1), image_size[1] // 2 ** (stages + 1))
        self.routing = DynamicRouting(capsule_types * grid[0] * grid[1], PRIMARY_DIM, CLASS_DIM, routing_iterations)

    @classmethod
    def from_config(cls, cfg: RunConfig) -> CapsNet:
        """Build from a `RunConfig` (data.channels / model_size, the `grdnet.methods.capsnet` options)."""
        model = cfg.model
        return cls(cfg.data.channels, cfg.data.model_size, model.base_width, model.max_width,
                   model.capsule_types, model.routing_iterations)

    def class_capsules(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) → class capsules (B, 2, 16)."""
        primary = self.primary(self.stem(x))  # (B, types·8, h, w)
        b, _, h, w = primary.shape
        u = primary.view(b, self.capsule_types, PRIMARY_DIM, h * w).permute(0, 1, 3, 2).reshape(b, -1, PRIMARY_DIM)
        return self.routing(squash(u))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        lengths = self.class_capsules(x).float().norm(dim=-1)
        score = lengths[:, DEFECT]
        uniform = score.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return {"class_lengths": lengths, "score": score, "anomaly_map": uniform}
