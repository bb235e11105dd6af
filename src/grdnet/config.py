"""Typed run configuration, loadable from and savable to YAML.

One `RunConfig` describes a whole run: data, anomaly synthesis, model, losses, training and scoring.
Every field has a default (the GRD-Net paper's setting where the paper gives one); unknown keys are rejected so a typo in a YAML file is an
error, not a silently ignored setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grdnet.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images are and how they are read."""

    root: Path | None = None
    """Dataset root. For `mvtec` / `btad` the category folder is `root/category`; None = built-in dataset."""
    category: str | None = None
    layout: Literal["mvtec", "btad", "folder"] = "mvtec"
    normal_dir: Path | None = None
    """`folder` layout: directory of normal (good) images; a `train` and `test` split is drawn from it."""
    abnormal_dirs: list[Path] = Field(default_factory=list)
    """`folder` layout: directories of defect images (test only); the folder name is the defect type."""
    mask_dir: Path | None = None
    """`folder` layout: directory of defect masks named `<stem>.png` or `<stem>_mask.png`."""
    roi: Path | None = None
    """ROI for training images: a folder mirroring the image paths, or one image file for all; None = whole image."""
    test_roi: Path | None = None
    """ROI for test images (evaluation inside the ROI): folder mirroring test paths or one file; None = whole image."""
    image_size: tuple[int, int] = (256, 256)
    """(height, width) images are resized to (see `resize`); masks and ROIs are resized with nearest neighbour.
    With `tile_size` it is the working resolution of the whole image, and the model sees tiles of it."""
    resize: Literal["stretch", "fit"] = "stretch"
    """"stretch": resize to image_size; "fit": scale uniformly to fit inside image_size, keeping the aspect ratio,
    and pad the bottom and right with zeros (mask 0 and ROI 0 on the padding; predicted maps are 0 there)."""
    tile_size: tuple[int, int] | None = None
    """(height, width) of the tiles the model is built for, trained on (random crops) and run over at inference
    (overlapping maps averaged); None = the model sees the whole image at image_size."""
    tile_stride: tuple[int, int] | None = None
    """Step between inference tiles, between 1 and tile_size per side; None = half the tile size."""
    channels: Literal[1, 3] = 3
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of normal training images held out as validation (thresholds, checkpoint choice)."""
    split_seed: int = 0
    skip_unreadable: bool = False
    """Skip unreadable / truncated image files with a warning instead of stopping."""
    contamination: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of defect images mixed into the normal training set, drawn from a pool removed from the test set."""
    known_defects: Path | None = None
    """Folder of a few real defect images (masks as `<stem>_mask.png` beside them or in `masks/`) used in training."""
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_tiles(self) -> "DataConfig":
        if self.tile_size is None:
            if self.tile_stride is not None:
                raise ValueError("tile_stride is set without tile_size; set data.tile_size too or remove tile_stride")
            return self
        if any(tile > side for tile, side in zip(self.tile_size, self.image_size)):
            raise ValueError(
                f"tile_size {self.tile_size} is larger than image_size {self.image_size} on a side; "
                "use a smaller tile_size or a larger image_size"
            )
        if self.tile_stride is not None and not all(1 <= step <= tile for step, tile in zip(self.tile_stride, self.tile_size)):
            raise ValueError(
                f"tile_stride {self.tile_stride} must be between 1 and tile_size {self.tile_size} on each side "
                "(a larger step leaves pixels unseen); lower tile_stride or remove it (default: half the tile)"
            )
        return self

    @property
    def model_size(self) -> tuple[int, int]:
        """(height, width) the model and the training synthesizer are built for: tile_size, else image_size."""
        return tuple(self.tile_size or self.image_size)


class SynthesisConfig(_Section):
    """DRAEM-style synthetic anomalies."""

    probability: float = Field(0.5, ge=0.0, le=1.0)
    beta: tuple[float, float] = (0.1, 1.0)
    """Blend factor range: x_n = x(1-M) + (1-β)TM + βxM."""
    texture: Literal["random", "folder", "self"] = "random"
    texture_dir: Path | None = None
    texture_augmentations: int = Field(3, ge=0)
    """How many random photometric augmentations are applied to each texture."""
    perlin_scale_exponents: tuple[int, int] = (0, 6)
    """Perlin grid scales are 2**randint(lo, hi) (hi exclusive), clamped to the image size."""
    min_area: int = Field(25, ge=0)
    """Minimum anomaly area in pixels at 256×256; scaled with the image area."""
    local_extent: tuple[float, float] | None = None
    """Confine each anomaly to one random ellipse whose longer semi-axis is in this range of pixels (at the
    working resolution; the shorter axis 15–100 % of it): small local marks such as pits, short cracks and
    stains instead of Perlin blobs spread over the whole image. None = anywhere (the DRAEM / GRD-Net default)."""
    local_share: float = Field(0.5, ge=0.0, le=1.0)
    """With local_extent: the share of anomalies confined that way (the others spread as usual), so both small
    marks and large defects are taught."""
    stroke_share: float = Field(0.0, ge=0.0, le=1.0)
    """With local_extent: the share of the local anomalies drawn as one thin curved stroke (scratches, cracks:
    1–3 px wide, 2·lo to 4·hi of local_extent long) instead of a blob."""
    rotation_degrees: float = Field(90.0, ge=0.0, le=180.0)
    """Clean images (and their ROI) are rotated by a random angle in [-r, r] before synthesis; 0 = off."""

    @model_validator(mode="after")
    def _check(self) -> "SynthesisConfig":
        lo, hi = self.beta
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"beta range must satisfy 0 <= lo <= hi <= 1, got {self.beta}")
        if self.local_extent is not None and not 0.5 <= self.local_extent[0] <= self.local_extent[1]:
            raise ValueError(f"local_extent must satisfy 0.5 <= lo <= hi (pixels), got {self.local_extent}")
        if self.texture == "folder" and self.texture_dir is None:
            raise ValueError("texture 'folder' needs texture_dir (for example ../shared/data/dtd/images)")
        return self


class ModelConfig(_Section):
    """Architecture. `name` picks the method; the other fields are read by the methods that use them."""

    name: Literal["grdnet", "ganomaly", "draem", "kdgan", "vtadl", "capsnet", "piade", "patchcore", "padim"] = "grdnet"
    base_width: int = Field(64, ge=4)
    max_width: int = Field(512, ge=4)
    bottleneck: Literal["crae", "drae"] = "crae"
    latent_channels: int = Field(32, ge=1)
    """CRAE: channels of z at 1/32 resolution (32×8×8 at 256²)."""
    latent_dim: int = Field(2048, ge=1)
    """DRAE: size of the dense latent vector."""
    upsample: Literal["transpose", "resize"] = "transpose"
    stages: int = Field(5, ge=2, le=7)
    """GRD-Net: encoder stages of the generator and discriminator; the latent grid is at 1/2**stages."""
    segmenter_width: int = Field(64, ge=4)
    segmenter_levels: int = Field(4, ge=1, le=6)
    segmenter_output: Literal["sigmoid", "softmax"] = "sigmoid"
    extra: dict[str, Any] = Field(default_factory=dict)
    """Method-specific options (documented by each method)."""


class LossConfig(_Section):
    """Loss weights (GRD-Net paper eq. 3) and segmentation loss options."""

    w_adv: float = 1.0
    w_con: float = 50.0
    w_enc: float = 1.0
    w_l1: float = 1.0
    w_ssim: float = 1.0
    ssim_window: int = 11
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    roi_on: Literal["prediction", "target"] = "prediction"
    known_defect_gamma: float = 1.0
    """Weight of the penalised second 'fake' (known defect images) in the discriminator loss."""
    w_perceptual: float = Field(1.0, ge=0.0)
    """piade: weight of the perceptual loss (fixed-network features) beside the reconstruction MSE."""


class TrainConfig(_Section):
    """Optimisation and run control."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    plateau_patience: int = Field(3, ge=0)
    plateau_factor: float = Field(math.exp(-0.1), gt=0, lt=1)
    seed: int = 0
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', …"""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """'auto' = bf16 autocast on CUDA, fp32 on CPU."""
    channels_last: bool = True
    compile: bool = False
    val_every: int = Field(1, ge=1)
    """Validate (synthetic anomalies on held-out normal images) every N epochs; picks the best checkpoint."""
    val_share: float | None = Field(None, gt=0.0, lt=1.0)
    """Space validations by cost: a due validation (every val_every epochs) runs only once the training time since
    the last one reaches (1 − share) / share times that validation's duration, so validation takes about this
    share of the time. For tiled runs on a CPU, where scoring whole validation images costs several epochs.
    None = every val_every epochs."""
    output_dir: Path = Path("runs/latest")
    max_minutes: float | None = None
    """Stop after this much training wall time (checked between epochs)."""
    logger: Literal["auto", "tensorboard", "mlflow", "none"] = "auto"
    """Training logs: TensorBoard event files in RUN/tensorboard, an MLflow run (local mlruns/), or none;
    'auto' = TensorBoard when the tensorboard package is installed (pip install 'grdnet[tracking]')."""
    log_images_every: int = Field(5, ge=0)
    """Log a strip of validation images with their heatmaps every N validations (0 = never)."""


class ScoringConfig(_Section):
    """From anomaly maps to decisions."""

    smoothing_kernel: int = Field(21, ge=1)
    threshold_quantile: float = Field(0.99, gt=0.0, le=1.0)
    """Operating threshold = this quantile of validation normal scores (no test labels)."""
    threshold_margin: float = Field(0.0, ge=0.0)
    """Added to the quantile as a fraction of the normal scores' spread (robustness on tiny validation sets)."""

    @field_validator("smoothing_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"smoothing_kernel must be odd (same padding), got {value}")
        return value


METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "grdnet": {},
    "ganomaly": {"train.lr": 2e-4, "train.epochs": 15, "model.latent_dim": 100, "model.max_width": 2048,
                 "loss.w_ssim": 0.0, "synthesis.rotation_degrees": 0.0},
    "kdgan": {"synthesis.rotation_degrees": 0, "train.lr": 2e-4, "model.latent_dim": 100},
    # DRAEM: widths 128 / 64 (capped at 512: ≈ 87 M parameters, DRAEM ≈ 97 M), 5-level U-Net,
    # Adam(0.9, 0.999) 1e-4, 700 epochs (MultiStepLR in its recipe), β ~ U(0, 0.8), no rotation. Paper textures: --texture folder
    # --texture-dir ../shared/data/dtd/images (the default stays "random" so no folder is required).
    "draem": {"model.base_width": 128, "model.segmenter_width": 64,
              "model.segmenter_levels": 5, "train.epochs": 700, "train.lr": 1e-4, "train.betas": (0.9, 0.999),
              "synthesis.beta": (0.0, 0.8), "synthesis.rotation_degrees": 0.0},
    # VT-ADL: base_width = transformer embedding dim; patch_size / depth / heads / components in model.extra.
    "vtadl": {"model.base_width": 512, "train.betas": (0.9, 0.999), "synthesis.rotation_degrees": 0.0},
    # Capsule network (Sabour et al.'s Adam 1e-3); needs data.known_defects; flips augment both classes.
    "capsnet": {"model.base_width": 32, "model.max_width": 256, "train.lr": 1e-3, "train.betas": (0.9, 0.999),
                "train.epochs": 50, "synthesis.rotation_degrees": 0.0},
    # Pyramidal autoencoder: latent_channels = channels of the deepest latent (shallower levels: ÷4 each).
    "piade": {"model.latent_channels": 32, "train.lr": 1e-3, "train.betas": (0.9, 0.999), "train.epochs": 100,
              "synthesis.rotation_degrees": 0.0},
    # PatchCore / PaDiM: one pass over the normal images (no optimiser) on a pretrained backbone at its native
    # 224² (the papers' input size); backbone, layers and the rest in model.extra (see their model modules).
    # Their maps come Gaussian-smoothed (σ = 4) from the model, so the scoring head's average pool is off (kernel 1).
    "patchcore": {"train.epochs": 1, "data.image_size": (224, 224), "synthesis.rotation_degrees": 0.0,
                  "scoring.smoothing_kernel": 1},
    "padim": {"train.epochs": 1, "data.image_size": (224, 224), "synthesis.rotation_degrees": 0.0,
              "scoring.smoothing_kernel": 1},
}
"""Per-method defaults (dotted keys) that differ from GRD-Net's, e.g. DRAEM's widths and schedule."""


MAP_SCORED_MODELS = ("grdnet", "draem", "vtadl", "piade", "padim")
"""Methods whose image score is the maximum of their smoothed anomaly map: they can be tiled, and "fit" padding
can be left out of their score. GANomaly (latent distance), kdgan (search loss) and capsnet (defect capsule length)
score whole images; PatchCore re-weights its largest patch distance."""

MAX_TILED_IMAGE_SIDE = 8192
"""Largest image_size side when tiling (without tiles, image_size is the model size: at most 1024)."""


class RunConfig(_Section):
    """Everything a run needs; stored resolved beside its checkpoints."""

    data: DataConfig = Field(default_factory=DataConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)

    @model_validator(mode="after")
    def _check_size(self) -> "RunConfig":
        data = self.data
        field = "tile_size" if data.tile_size else "image_size"
        if any(side % 32 or not 64 <= side <= 1024 for side in data.model_size):
            raise ValueError(f"{field} sides must be multiples of 32 between 64 and 1024, got {data.model_size}")
        if data.tile_size is None:
            return self
        if max(data.image_size) > MAX_TILED_IMAGE_SIDE:
            raise ValueError(
                f"image_size {data.image_size} has a side over {MAX_TILED_IMAGE_SIDE}; use a smaller data.image_size"
            )
        if self.model.name not in MAP_SCORED_MODELS:
            raise ValueError(
                f"model '{self.model.name}' cannot be tiled (its image score is not the maximum of its anomaly map, "
                f"so tile scores cannot be stitched); remove data.tile_size or use {', '.join(MAP_SCORED_MODELS)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (paths as strings, tuples as lists)."""
        return self.model_dump(mode="json")

    def to_yaml(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> "RunConfig":
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors()
            )
            raise ConfigError(f"{source}: {problems}") from None

    @classmethod
    def from_yaml(cls, path: Path, model: str | None = None) -> "RunConfig":
        """The file's settings laid over the defaults of its method, or of `model` when given (e.g. the
        `--model` flag): then only the keys the file sets carry over, never another method's defaults."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, model, train, …)")
        section = data.get("model")
        name = (section or {}).get("name", "grdnet") if isinstance(section, (dict, type(None))) else "grdnet"
        if model is not None and isinstance(section, dict):
            data = {**data, "model": {**section, "name": model}}
        return cls.for_model(model or name, data, source=str(path))

    @classmethod
    def for_model(cls, name: str, data: dict[str, Any] | None = None, source: str = "configuration") -> "RunConfig":
        """Defaults of method `name` (METHOD_DEFAULTS), with the sections in `data` laid over them."""
        if name not in METHOD_DEFAULTS:
            raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(METHOD_DEFAULTS)}")
        base = cls().updated({"model.name": name, **METHOD_DEFAULTS[name]}).to_dict()
        for section, values in (data or {}).items():
            if section in base and isinstance(values, dict):
                base[section].update(values)
            else:
                base[section] = values
        return cls.from_dict(base, source=source)

    def updated(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {'train.epochs': 10}; None values are ignored."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section not in data or key not in data[section]:
                raise ConfigError(f"unknown setting '{dotted}'")
            data[section][key] = value.to_dict() if isinstance(value, RunConfig) else value
        return RunConfig.from_dict(data, source="command-line options")
