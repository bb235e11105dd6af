"""Typed run configuration, loadable from and savable to YAML.

One `RunConfig` describes a whole run: data, anomaly synthesis, model, losses, training and scoring.
Every field has a default (the GRD-Net paper's setting where the paper gives one); unknown keys are rejected so a typo in a YAML file is an
error, not a silently ignored setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grdnet.errors import ConfigError
from grdnet.methods import DEFAULT_METHOD, get_method, methods


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


def _model_section() -> Any:
    """The `model` section's type: the registered methods' options, discriminated by `name`."""
    options = tuple(record.options for record in methods().values())
    return Annotated[Union[options], Field(discriminator="name")] if len(options) > 1 else options[0]


ModelConfig = _model_section()
"""Architecture: `name` picks the method (`grdnet.methods`), the other keys are that method's options."""


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
    """'auto' = bf16 autocast on CUDA; on a CPU with AMX-BF16 matrix units bf16 (with channels-last) for wide models
    (median convolution ≥ 128 channels, e.g. the paper's widths), where it is several times faster; fp32 otherwise
    (`grdnet.runtime.uses_bf16`)."""
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
    standardize: bool = True
    """Map-scored methods: score the smoothed map in units of the validation normals' spread at each position
    (`grdnet.scoring.NormalStats`, fitted at every validation, stored in the checkpoint); False = raw maps."""
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


MAX_TILED_IMAGE_SIDE = 8192
"""Largest image_size side when tiling (without tiles, image_size is the model size: at most 1024)."""


class RunConfig(_Section):
    """Everything a run needs; stored resolved beside its checkpoints."""

    data: DataConfig = Field(default_factory=DataConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    model: ModelConfig = Field(default_factory=methods()[DEFAULT_METHOD].options)
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
        if not get_method(self.model.name).map_scored:
            scored = [name for name, record in methods().items() if record.map_scored]
            raise ValueError(
                f"model '{self.model.name}' cannot be tiled (its image score is not the maximum of its anomaly map, "
                f"so tile scores cannot be stitched); remove data.tile_size or use {', '.join(scored)}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _name_the_method(cls, data: Any) -> Any:
        """A `model` section without `name` is GRD-Net's; a `name` no method has is an error listing them."""
        section = data.get("model") if isinstance(data, dict) else None
        if isinstance(section, dict):
            name = section.get("name", DEFAULT_METHOD)
            if name not in methods():
                raise ValueError(f"model.name: unknown method {name!r}; choose one of {', '.join(methods())}")
            data = {**data, "model": {"name": name, **section}}
        return data

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
            raise ConfigError(f"{source}: {'; '.join(_problem(e) for e in error.errors())}") from None

    @classmethod
    def from_stored(cls, data: dict[str, Any], source: str = "stored config") -> "RunConfig":
        """A configuration stored by a run (checkpoint, ONNX metadata), including those written before each
        method had its own options: their `model` section held every method's keys and a `model.extra` dict,
        so `extra`'s keys move up and keys the method does not have are dropped."""
        section = data.get("model") if isinstance(data, dict) else None
        if isinstance(section, dict) and isinstance(section.get("extra"), dict):
            record = methods().get(section.get("name", DEFAULT_METHOD))
            if record is not None:
                known = record.options.model_fields
                moved = {**section, **section["extra"]}
                data = {**data, "model": {key: value for key, value in moved.items() if key in known}}
        return cls.from_dict(data, source=source)

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
        name = (section or {}).get("name", DEFAULT_METHOD) if isinstance(section, (dict, type(None))) else DEFAULT_METHOD
        if model is not None and isinstance(section, dict):
            data = {**data, "model": {**section, "name": model}}
        return cls.for_model(model or name, data, source=str(path))

    @classmethod
    def for_model(cls, name: str, data: dict[str, Any] | None = None, source: str = "configuration") -> "RunConfig":
        """Method `name`'s defaults (its options' and its record's `defaults`), with the sections in `data` laid
        over them."""
        record = get_method(name)
        base = cls(model=record.options()).updated(dict(record.defaults)).to_dict()
        for section, values in (data or {}).items():
            if section in base and isinstance(values, dict):
                base[section].update(values)
            else:
                base[section] = values
        return cls.from_dict(base, source=source)

    def updated(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {'train.epochs': 10}; None values are ignored.
        A new `model.name` starts the `model` section from that method's option defaults (other `model.*`
        overrides then apply to it)."""
        data = self.to_dict()
        name = overrides.get("model.name")
        if name is not None and name != self.model.name:
            data["model"] = get_method(name).options().model_dump(mode="json")
        for dotted, value in overrides.items():
            if value is None or dotted == "model.name":
                continue
            section, _, key = dotted.partition(".")
            if section == "model" and key not in data["model"]:
                settings = ", ".join(key for key in data["model"] if key != "name")
                raise ConfigError(f"unknown setting '{dotted}' for method '{data['model']['name']}'; its settings: {settings}")
            if section not in data or key not in data[section]:
                raise ConfigError(f"unknown setting '{dotted}'")
            data[section][key] = value.to_dict() if isinstance(value, RunConfig) else value
        return RunConfig.from_dict(data, source="command-line options")


def _problem(error: dict[str, Any]) -> str:
    """One pydantic error as `dotted.key: message`; in the `model` section the method's tag is taken out of the
    location and named in the message (an unknown key lists the method's settings)."""
    loc = [str(part) for part in error["loc"]]
    if len(loc) >= 2 and loc[0] == "model" and loc[1] in methods():
        name = loc.pop(1)
        if loc == ["model", "extra"]:
            return f"model.extra: no longer used; write its keys in `model` itself (e.g. `model.norm`) (method '{name}')"
        if error["type"] == "extra_forbidden":
            settings = ", ".join(key for key in methods()[name].options.model_fields if key != "name")
            return f"{'.'.join(loc)}: unknown setting for method '{name}'; its settings: {settings}"
        return f"{'.'.join(loc)}: {error['msg']} (method '{name}')"
    if not loc and error["type"] == "value_error":  # a whole-config check: its message names the setting
        return str(error["ctx"]["error"])
    return f"{'.'.join(loc) or '(top level)'}: {error['msg']}"
