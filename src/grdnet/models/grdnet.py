"""GRD-Net: residual encoder–decoder–encoder generator, discriminator and U-Net segmenter.

Inference (`GRDNet.forward`) runs only E1 → bottleneck → decoder → segmenter; E2 and the discriminator are
training-only submodules the recipe calls directly.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grdnet.errors import ConfigError
from grdnet.models.blocks import (
    NormKind,
    ResidualDecoder,
    ResidualEncoder,
    UNet,
    check_model_size,
    init_weights,
)
from grdnet.models.feature_maps import nearest_neighbours, squash

if TYPE_CHECKING:
    from grdnet.config import RunConfig

NUM_STAGES = 5
"""Default encoder stages (the paper's): the latent grid is at 1/2**stages = 1/32 of the input resolution."""


def _latent_grid(image_size: tuple[int, int], stages: int) -> tuple[int, int]:
    height, width = image_size
    return height // 2**stages, width // 2**stages


def _latent_encoder(
    in_channels: int,
    image_size: tuple[int, int],
    base_width: int,
    max_width: int,
    bottleneck: str,
    latent_channels: int,
    latent_dim: int,
    stages: int,
    norm: NormKind,
) -> nn.Sequential:
    """Residual encoder + bottleneck: (B, C, H, W) → z.

    CRAE: z = 1×1 conv at 1/2**stages resolution, (B, latent_channels, H/2**stages, W/2**stages).
    DRAE: the same 1×1 conv, then flatten → linear → z (B, latent_dim); the 1×1 reduction keeps the linear
    layer at latent_channels·(H/32)·(W/32) × latent_dim (2048 × 2048 at 256², 5 stages).
    """
    encoder = ResidualEncoder(in_channels, base_width, max_width, stages, norm=norm)
    layers: list[tuple[str, nn.Module]] = [
        ("features", encoder),
        ("to_latent", nn.Conv2d(encoder.out_channels, latent_channels, 1)),
    ]
    if bottleneck == "drae":
        grid_h, grid_w = _latent_grid(image_size, stages)
        layers += [("flatten", nn.Flatten(1)), ("dense", nn.Linear(latent_channels * grid_h * grid_w, latent_dim))]
    return nn.Sequential(OrderedDict(layers))


def _latent_decoder(
    out_channels: int,
    image_size: tuple[int, int],
    base_width: int,
    max_width: int,
    bottleneck: str,
    latent_channels: int,
    latent_dim: int,
    upsample: Literal["transpose", "resize"],
    stages: int,
    norm: NormKind,
) -> nn.Sequential:
    """z → x̂ (B, C, H, W) in [0, 1]; DRAE first maps the vector back to a latent_channels grid."""
    layers: list[tuple[str, nn.Module]] = []
    if bottleneck == "drae":
        grid_h, grid_w = _latent_grid(image_size, stages)
        layers += [
            ("dense", nn.Linear(latent_dim, latent_channels * grid_h * grid_w)),
            ("unflatten", nn.Unflatten(1, (latent_channels, grid_h, grid_w))),
        ]
    decoder = ResidualDecoder(
        latent_channels, out_channels, base_width, max_width, stages, upsample=upsample, norm=norm
    )
    layers.append(("image", decoder))
    return nn.Sequential(OrderedDict(layers))


class Generator(nn.Module):
    """Encoder–decoder–encoder: E1 (x → z), decoder (z → x̂ ∈ [0, 1]), E2 (x̂ → ẑ, separate weights)."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: tuple[int, int] = (256, 256),
        base_width: int = 64,
        max_width: int = 512,
        bottleneck: Literal["crae", "drae"] = "crae",
        latent_channels: int = 32,
        latent_dim: int = 2048,
        upsample: Literal["transpose", "resize"] = "transpose",
        stages: int = NUM_STAGES,
        norm: NormKind = "group",
    ) -> None:
        super().__init__()
        latent = (image_size, base_width, max_width, bottleneck, latent_channels, latent_dim)
        self.encoder1 = _latent_encoder(in_channels, *latent, stages=stages, norm=norm)
        self.decoder = _latent_decoder(in_channels, *latent, upsample=upsample, stages=stages, norm=norm)
        self.encoder2 = _latent_encoder(in_channels, *latent, stages=stages, norm=norm)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, C, H, W) in [0, 1] → reconstruction (B, C, H, W) in [0, 1], z and z_hat (same shape)."""
        z = self.encoder1(x)
        reconstruction = self.decoder(z)
        return {"reconstruction": reconstruction, "z": z, "z_hat": self.encoder2(reconstruction)}


class Discriminator(nn.Module):
    """Residual encoder; (B, C, H, W) → (features (B, F, H/2**stages, W/2**stages), logit (B,)) — logit > 0
    means real."""

    def __init__(
        self,
        in_channels: int = 3,
        base_width: int = 64,
        max_width: int = 512,
        stages: int = NUM_STAGES,
        norm: NormKind = "group",
    ) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(in_channels, base_width, max_width, stages, norm=norm)
        self.classifier = nn.Linear(self.encoder.out_channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder(x)
        return features, self.classifier(features.mean(dim=(2, 3))).squeeze(1)


FEATURE_LEVELS = ("layer1", "layer2")
"""Backbone stages projected into the segmenter's U-Net with `segmenter_features="pretrained"` (strides 4 and 8: local
structure, fine enough for small marks)."""
MEMORY_LEVELS = ("layer2", "layer3")
"""Backbone stages of the memory's patch features (strides 8 and 16, PatchCore's): deep enough that normal texture
lies close to normal texture (development probes P1/P6 in benchmarks/NOTES.md: pixel AUROC 0.74 → 0.76, image 0.50 → 0.61)."""


class Segmenter(nn.Module):
    """U-Net on concat(x_n, x̂) (2C channels) → anomaly map A (B, 1, H, W) in [0, 1].

    With a frozen `backbone` (`grdnet.models.backbones.FeatureExtractor`), the U-Net also sees, per level, the
    backbone's features φ(x_n) and the residual |φ(x_n) − φ(x̂)|: GRD-Net's comparison of input and reconstruction
    made in a space where normal texture looks alike. Each level's pair is projected by a learned 1×1 conv to
    `width` channels at its own resolution, then upsampled bilinearly to (H, W) (the two commute; projecting
    first keeps the full-resolution input narrow).

    With `memory`, it also sees the residual against normal training patches: `memory_bank` (M, D) holds
    patch features of normal training tiles (`memory_queries` on `MEMORY_LEVELS`, filled by the recipe before
    training), and each patch of x_n gets |q − m| to its nearest entry m and the distance ‖q − m‖ / `memory_scale`
    (a typical normal one), projected 1×1 to `width` channels and upsampled like the levels. `forward(...,
    with_distance=True)` also returns that distance map (B, 1, h, w) on the memory grid (stride 16).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        levels: int = 4,
        output: Literal["sigmoid", "softmax"] = "sigmoid",
        norm: NormKind = "group",
        backbone: nn.Module | None = None,
        memory: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.projections = nn.ModuleList(
            nn.Conv2d(2 * backbone.channels[level], width, 1) for level in (FEATURE_LEVELS if backbone else ())
        )
        self.memory = memory
        if memory:
            dim = sum(backbone.channels[level] for level in MEMORY_LEVELS)
            self.memory_projection = nn.Conv2d(dim + 1, width, 1)
            self.register_buffer("memory_bank", torch.zeros(0, dim))
            self.register_buffer("memory_scale", torch.ones(()))
        self.unet = UNet(2 * in_channels + width * (len(self.projections) + memory), 1, width, levels, output, norm=norm)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """The bank's size comes from the training data: take the stored one's shape before loading it."""
        bank = state_dict.get(prefix + "memory_bank")
        if self.memory and bank is not None:
            self.memory_bank = torch.empty_like(bank, device=self.memory_bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def memory_queries(levels: dict[str, Tensor]) -> Tensor:
        """The backbone's output of one batch ({level: (B, c, h, w)}) → patch features (B, D, h, w) of
        `MEMORY_LEVELS` on the deepest one's grid: the shallower averaged down to it, concatenated, each position
        averaged over its 3×3 neighbourhood (PatchCore's local aggregation), float32."""
        features = [levels[level] for level in MEMORY_LEVELS]
        size = features[-1].shape[-2:]
        pooled = [F.avg_pool2d(f.float(), f.shape[-2] // size[0]) if f.shape[-2:] != size else f.float() for f in features]
        return F.avg_pool2d(torch.cat(pooled, dim=1), 3, stride=1, padding=1, count_include_pad=False)

    @torch.no_grad()
    def set_memory(self, bank: Tensor, scale: float) -> None:
        """Install the bank (M, D) of normal patch features and the typical normal distance."""
        self.memory_bank = bank.float().to(self.memory_scale.device).contiguous()
        self.memory_scale = torch.tensor(max(float(scale), 1e-6), device=self.memory_scale.device)

    def forward(self, x: Tensor, reconstruction: Tensor, with_distance: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """x_n, x̂ (B, C, H, W) in [0, 1] → the map (B, 1, H, W) in [0, 1]; with `with_distance` (needs the memory)
        also the normalised distance to the memory (B, 1, H/16, W/16), ≥ 0, ≈ 1 for a typical normal patch."""
        inputs = [x, reconstruction]
        size = x.shape[-2:]
        distance = None
        if self.backbone is not None:
            with torch.no_grad():
                levels = {name: both.chunk(2)
                          for name, both in self.backbone(torch.cat([x, reconstruction]).float()).items()}
            for projection, level in zip(self.projections, FEATURE_LEVELS):
                f_x, f_r = (f.to(x.dtype) for f in levels[level])
                projected = projection(torch.cat([f_x, (f_x - f_r).abs()], dim=1))
                inputs.append(F.interpolate(projected, size=size, mode="bilinear", align_corners=False))
            if self.memory:
                residual, distance = self._memory_residual({name: pair[0] for name, pair in levels.items()})
                inputs.append(F.interpolate(residual.to(x.dtype), size=size, mode="bilinear", align_corners=False))
        anomaly_map = self.unet(torch.cat(inputs, dim=1))
        if not with_distance:
            return anomaly_map
        if distance is None:
            raise RuntimeError("the segmenter's memory distance needs segmenter_features: pretrained and a memory bank")
        return anomaly_map, distance

    def _memory_residual(self, levels: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """x_n's level features → (the projected residual against the memory bank (B, width, h, w), the normalised
        distance to the nearest entry (B, 1, h, w))."""
        if len(self.memory_bank) == 0:
            raise RuntimeError("GRD-Net's segmenter memory bank is empty: it is filled when training starts")
        with torch.no_grad():
            queries = self.memory_queries(levels)
            batch, dim, h, w = queries.shape
            distances, indices = nearest_neighbours(queries.permute(0, 2, 3, 1).reshape(-1, dim), self.memory_bank)
            nearest = self.memory_bank[indices].reshape(batch, h, w, dim).permute(0, 3, 1, 2)
            distance = (distances / self.memory_scale).reshape(batch, 1, h, w)
            residual = torch.cat([(queries - nearest).abs(), distance], 1)
        return self.memory_projection(residual), distance


def _backbone_levels(memory: bool) -> tuple[str, ...]:
    """The backbone stages the segmenter needs: `FEATURE_LEVELS`, and `MEMORY_LEVELS` with a memory."""
    return tuple(dict.fromkeys(FEATURE_LEVELS + (MEMORY_LEVELS if memory else ())))


class GRDNet(nn.Module):
    """GRD-Net: `generator` (E1, decoder, E2), `discriminator`, `segmenter`.

    Image sides must be multiples of 2**stages (32 by default) and of 2**segmenter_levels; non-square sizes
    are fine. `stages` sets the generator's and discriminator's depth: fewer stages keep a finer latent grid
    (1/8 at 3 stages), which a small tile needs for x̂ to carry its texture. The DRAE
    bottleneck's linear layers are sized for `image_size`; CRAE works at any valid size.

    The image score is the max of the smoothed anomaly map (`grdnet.scoring.ScoringHead`). With a memory bank
    and `memory_map_weight` w > 0, the anomaly map is the segmenter's plus w · squash(distance to the memory): the
    learned map ranks images, the memory's training-free evidence outlines the defect (benchmarks/NOTES.md, E9).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: tuple[int, int] = (256, 256),
        base_width: int = 64,
        max_width: int = 512,
        bottleneck: Literal["crae", "drae"] = "crae",
        latent_channels: int = 32,
        latent_dim: int = 2048,
        upsample: Literal["transpose", "resize"] = "transpose",
        segmenter_width: int = 64,
        segmenter_levels: int = 4,
        segmenter_output: Literal["sigmoid", "softmax"] = "sigmoid",
        stages: int = NUM_STAGES,
        norm: NormKind = "group",
        segmenter_features: Literal["none", "pretrained"] = "none",
        memory_bank_size: int = 0,
        memory_map_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if bottleneck not in ("crae", "drae"):
            raise ConfigError(f"model.bottleneck: unknown value {bottleneck!r}; use 'crae' or 'drae'")
        check_model_size(image_size, stages, segmenter_levels, "GRD-Net")
        self.image_size = tuple(image_size)
        self.memory_map_weight = float(memory_map_weight) if memory_bank_size > 0 else 0.0
        self.generator = Generator(
            in_channels, image_size, base_width, max_width, bottleneck, latent_channels, latent_dim, upsample, stages, norm
        )
        self.discriminator = Discriminator(in_channels, base_width, max_width, stages, norm)
        self.segmenter = Segmenter(in_channels, segmenter_width, segmenter_levels, segmenter_output, norm)
        self.apply(init_weights)
        if segmenter_features == "pretrained":  # after init_weights: the backbone's weights are loaded by the recipe
            from grdnet.models.backbones import build_backbone

            self.segmenter = Segmenter(in_channels, segmenter_width, segmenter_levels, segmenter_output, norm,
                                       build_backbone("efficientnet_lite0", _backbone_levels(memory_bank_size > 0),
                                                      pretrained=False),
                                       memory=memory_bank_size > 0)
            for part in (self.segmenter.unet, self.segmenter.projections, getattr(self.segmenter, "memory_projection", None)):
                if part is not None:
                    part.apply(init_weights)
        elif memory_bank_size > 0:
            raise ConfigError("model.memory_bank_size needs model.segmenter_features: pretrained")

    @classmethod
    def from_config(cls, cfg: RunConfig) -> GRDNet:
        """Build from a `RunConfig` (data.channels / model_size, the `grdnet.methods.grdnet` options)."""
        model = cfg.model
        return cls(
            in_channels=cfg.data.channels,
            image_size=cfg.data.model_size,
            base_width=model.base_width,
            max_width=model.max_width,
            bottleneck=model.bottleneck,
            latent_channels=model.latent_channels,
            latent_dim=model.latent_dim,
            upsample=model.upsample,
            segmenter_width=model.segmenter_width,
            segmenter_levels=model.segmenter_levels,
            segmenter_output=model.segmenter_output,
            stages=model.stages,
            norm=model.norm,
            segmenter_features=model.segmenter_features,
            memory_bank_size=model.memory_bank_size,
            memory_map_weight=model.memory_map_weight,
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Inference on x (B, C, H, W) in [0, 1]: reconstruction (B, C, H, W), anomaly_map (B, 1, H, W) in
        [0, 1 + memory_map_weight]. Runs E1, decoder and segmenter only; the image score is the `ScoringHead`'s."""
        reconstruction = self.generator.decoder(self.generator.encoder1(x))
        if not self.memory_map_weight:
            return {"reconstruction": reconstruction, "anomaly_map": self.segmenter(x, reconstruction)}
        anomaly_map, distance = self.segmenter(x, reconstruction, with_distance=True)
        evidence = F.interpolate(squash(distance, 1.0), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"reconstruction": reconstruction, "anomaly_map": anomaly_map + self.memory_map_weight * evidence.to(anomaly_map.dtype)}

    def latent_score(self, x: Tensor) -> Tensor:
        """GANomaly latent score: mean of (z − ẑ)² per image, (B,). Runs E1, decoder and E2."""
        out = self.generator(x)
        return (out["z"] - out["z_hat"]).float().pow(2).flatten(1).mean(dim=1)
