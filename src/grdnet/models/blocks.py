"""Shared building blocks: pre-activation residual blocks, residual encoder / decoder, U-Net, weight init.

Options are constructor arguments so every method can reuse the same blocks.

Normalisation (`norm`): `"group"` (default) = GroupNorm with gcd(32, channels) groups, `"batch"` = BatchNorm2d,
`"instance"` = InstanceNorm2d with affine parameters. GroupNorm is the default because it does not depend on
the batch: it behaves the same for batch sizes 1–8, in train and eval mode, for the separate real / fake
batches a discriminator sees, and under DDP without SyncBatchNorm.

Initialisation (`init_weights`): DCGAN / GANomaly convention — conv, transposed-conv and linear weights
~ N(0, 0.02), biases 0; norm weights 1, biases 0. Every conv inside the networks is followed by a norm, so
the small scale does not shrink activations through depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from grdnet.errors import ConfigError

NormKind = Literal["batch", "group", "instance"]


INIT_STD = 0.02
"""Standard deviation of conv / linear weights set by `init_weights`."""


def check_model_size(size: tuple[int, int], stages: int, segmenter_levels: int, method: str) -> None:
    """ConfigError unless both sides of the model's input `size` divide by 2**stages and 2**segmenter_levels."""
    multiple = max(2**stages, 2**segmenter_levels)
    if any(side % multiple for side in size):
        raise ConfigError(
            f"data.image_size (data.tile_size when tiling): {tuple(size)} is not divisible by {multiple} "
            f"({method} with segmenter_levels={segmenter_levels}); use multiples of {multiple} or fewer levels"
        )


def leaky_relu() -> nn.Module:
    """The default activation: LeakyReLU with slope 0.2."""
    return nn.LeakyReLU(0.2)


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer: `"batch"`, `"group"` (gcd(32, channels) groups) or `"instance"` (affine)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be 'batch', 'group' or 'instance', got {kind!r}")


def stage_widths(base_width: int, max_width: int, num_stages: int) -> list[int]:
    """Channels of the stem and of each stage: base_width doubled per stage, capped at max_width."""
    return [min(base_width * 2**k, max_width) for k in range(num_stages + 1)]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)


class PreActResidualBlock(nn.Module):
    """ResNet-V2 block: (norm → act → conv3×3) twice, plus identity or 1×1-projection shortcut.

    (B, in_ch, H, W) → (B, out_ch, H/stride, W/stride).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        norm: NormKind = "group",
        act: Callable[[], nn.Module] = leaky_relu,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_ch)
        self.act1 = act()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.norm2 = make_norm(norm, out_ch)
        self.act2 = act()
        self.conv2 = _conv3x3(out_ch, out_ch)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.act1(self.norm1(x)))
        out = self.conv2(self.act2(self.norm2(out)))
        return out + self.shortcut(x)


class ResidualEncoder(nn.Module):
    """Stem conv3×3, then `num_stages` stages of (norm → act → strided conv3×3) + residual blocks.

    Each stage halves H and W and doubles the channels (capped at `max_width`); a final norm → act closes
    the pre-activation stream. (B, C, H, W) → (B, out_channels, H / 2**num_stages, W / 2**num_stages).
    """

    def __init__(
        self,
        in_channels: int,
        base_width: int = 64,
        max_width: int = 512,
        num_stages: int = 5,
        blocks_per_stage: int = 2,
        norm: NormKind = "group",
        act: Callable[[], nn.Module] = leaky_relu,
    ) -> None:
        super().__init__()
        self.widths = stage_widths(base_width, max_width, num_stages)
        self.stem = _conv3x3(in_channels, self.widths[0])
        self.stages = nn.ModuleList(
            nn.Sequential(
                make_norm(norm, w_in),
                act(),
                _conv3x3(w_in, w_out, stride=2),
                *(PreActResidualBlock(w_out, w_out, norm=norm, act=act) for _ in range(blocks_per_stage)),
            )
            for w_in, w_out in zip(self.widths[:-1], self.widths[1:])
        )
        self.final = nn.Sequential(make_norm(norm, self.widths[-1]), act())

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def stage_features(self, x: Tensor) -> list[Tensor]:
        """Residual-stream outputs of the stem and of every stage (before the final norm → act)."""
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.stage_features(x)[-1])


def _upsample(in_ch: int, out_ch: int, mode: str, resize_mode: str) -> nn.Module:
    """×2 upsampling: transposed conv 4×4 stride 2, or resize (nearest / bilinear) followed by conv3×3."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False)
    if mode == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2.0, mode=resize_mode), _conv3x3(in_ch, out_ch))
    raise ValueError(f"upsample must be 'transpose' or 'resize', got {mode!r}")


class ResidualDecoder(nn.Module):
    """Mirror of `ResidualEncoder`: conv3×3 from `in_channels`, then stages of residual blocks followed by
    norm → act → ×2 upsampling (halving the channels), then norm → act → conv3×3 → sigmoid.

    (B, in_channels, h, w) → (B, out_channels, h * 2**num_stages, w * 2**num_stages) in [0, 1].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_width: int = 64,
        max_width: int = 512,
        num_stages: int = 5,
        blocks_per_stage: int = 2,
        upsample: Literal["transpose", "resize"] = "transpose",
        resize_mode: Literal["nearest", "bilinear"] = "nearest",
        norm: NormKind = "group",
        act: Callable[[], nn.Module] = leaky_relu,
    ) -> None:
        super().__init__()
        widths = stage_widths(base_width, max_width, num_stages)
        self.stem = _conv3x3(in_channels, widths[-1])
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    *(PreActResidualBlock(w_in, w_in, norm=norm, act=act) for _ in range(blocks_per_stage)),
                    make_norm(norm, w_in),
                    act(),
                    _upsample(w_in, w_out, upsample, resize_mode),
                )
                for w_in, w_out in zip(widths[:0:-1], widths[-2::-1])
            )
        )
        self.head = nn.Sequential(
            make_norm(norm, widths[0]), act(), _conv3x3(widths[0], out_channels, bias=True), nn.Sigmoid()
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(z)))


class _DoubleConv(nn.Sequential):
    """(conv3×3 → norm → act) twice: the U-Net level block."""

    def __init__(self, in_ch: int, out_ch: int, norm: NormKind, act: Callable[[], nn.Module]) -> None:
        super().__init__(
            _conv3x3(in_ch, out_ch), make_norm(norm, out_ch), act(),
            _conv3x3(out_ch, out_ch), make_norm(norm, out_ch), act(),
        )  # fmt: skip


class UNet(nn.Module):
    """U-Net: `levels` max-pool downsamplings with skip connections; widths base_width·2^k capped at max_width
    (default 8·base_width); bilinear ×2 upsampling + conv on the way up.

    (B, in_channels, H, W) → (B, out_channels, H, W) probabilities; H and W divisible by 2**levels.
    `output="sigmoid"`: independent per-channel sigmoid. `output="softmax"`: out_channels + 1 classes
    (class 0 = background) with softmax over classes; the out_channels foreground probabilities are returned,
    so out_channels=1 gives the defect-class probability of a 2-class softmax.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        base_width: int = 64,
        levels: int = 4,
        output: Literal["sigmoid", "softmax"] = "sigmoid",
        max_width: int | None = None,
        norm: NormKind = "group",
        act: Callable[[], nn.Module] = leaky_relu,
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "softmax"):
            raise ValueError(f"output must be 'sigmoid' or 'softmax', got {output!r}")
        self.output = output
        widths = stage_widths(base_width, max_width or 8 * base_width, levels)
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0], norm, act)])
        self.down.extend(_DoubleConv(w_in, w_out, norm, act) for w_in, w_out in zip(widths[:-1], widths[1:]))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
                _conv3x3(w_in, w_out), make_norm(norm, w_out), act(),
            )  # fmt: skip
            for w_in, w_out in zip(widths[:0:-1], widths[-2::-1])
        )
        self.merge = nn.ModuleList(_DoubleConv(2 * w, w, norm, act) for w in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], out_channels + (output == "softmax"), 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        logits = self.head(x)
        if self.output == "softmax":
            return torch.softmax(logits, dim=1)[:, 1:]
        return torch.sigmoid(logits)


def init_weights(module: nn.Module) -> None:
    """For `model.apply(init_weights)`: conv / transposed-conv / linear weights ~ N(0, 0.02) and biases 0;
    norm weights 1 and biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
