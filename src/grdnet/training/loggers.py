"""Training logs people open in the tools they know: TensorBoard event files (RUN/tensorboard) or an MLflow run
(local `mlruns/` unless MLFLOW_TRACKING_URI says otherwise).

Each logger is an epoch callback (`grdnet.training.callbacks`): once per epoch it gets the epoch's record (the
line `log.jsonl` gets): losses, learning rates, epoch seconds, images/s and, on validation epochs, the
validation metrics and threshold.
Every `train.log_images_every` validation epochs it also logs a strip of validation images with synthetic
defects (top row) and their heatmaps (bottom row).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.tiling import wrap_for_inference
from grdnet.training.callbacks import EpochCallback
from grdnet.training.validation import Validator, predict_batches

STRIP_IMAGES = 4
GROUPS = {"loss_": "loss/", "lr_": "lr/", "val_": "validation/"}


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record → {tag: value}: `loss/<part>`, `lr/<optimizer>`, `validation/<metric>`,
    `validation/threshold`, `speed/images_per_s`, `speed/epoch_seconds` (non-numbers left out)."""
    tags = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        prefix = next((p for p in GROUPS if key.startswith(p)), None)
        if prefix is not None:
            tag = GROUPS[prefix] + key[len(prefix):]
        elif key == "threshold":
            tag = "validation/threshold"
        elif key == "seconds":
            tag = "speed/epoch_seconds"
        else:
            tag = f"speed/{key}" if key == "images_per_s" else key
        tags[tag] = float(value)
    return tags


def heatmap_strip(model: torch.nn.Module, validator: Validator, cfg: RunConfig, count: int = STRIP_IMAGES) -> np.ndarray:
    """(2H, count·W, 3) uint8: the first `count` synthetic-defect validation images over their heatmap overlays."""
    from grdnet.visualize import heatmap_scale, overlay, to_rgb_uint8  # lazy: matplotlib only once an image is logged

    images = validator.corrupted[:count]
    inference = wrap_for_inference(model, cfg, validator.normal_stats).to(validator.device)
    regions = validator.regions[:count]
    maps = predict_batches(inference, images, regions, validator.device, validator.bf16, count)["smoothed_map"][:, 0].numpy()
    top = np.concatenate([to_rgb_uint8(image.numpy()) for image in images], axis=1)
    scale = heatmap_scale(float("nan"), maps)  # one scale for the strip, so its images compare
    bottom = np.concatenate([overlay(image.numpy(), heat, vmax=scale) for image, heat in zip(images, maps)], axis=1)
    return np.concatenate([top, bottom], axis=0)


class EpochLogger(EpochCallback):
    """Base: turns each epoch into scalars (+ an image strip); subclasses write them somewhere."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.validations = 0

    def epoch_end(self, history: list[dict[str, Any]], model: torch.nn.Module, validator: Validator) -> None:
        record = history[-1]
        epoch = int(record["epoch"])
        self.scalars(scalar_tags(record), epoch)
        every = self.cfg.train.log_images_every
        if "val_score" in record and len(validator):
            self.validations += 1
            if every and (self.validations - 1) % every == 0:
                self.image("validation/heatmaps", heatmap_strip(model, validator, self.cfg), epoch)

    def scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def image(self, tag: str, strip: np.ndarray, step: int) -> None:
        raise NotImplementedError



class TensorBoardLogger(EpochLogger):
    """Event files in RUN/tensorboard (open with `tensorboard --logdir RUN`)."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        super().__init__(cfg)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def image(self, tag: str, strip: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, strip, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowLogger(EpochLogger):
    """One MLflow run (experiment "grdnet") with the resolved config as parameters; heatmap strips as artifacts.

    Without MLFLOW_TRACKING_URI it writes to ./mlruns (MLflow's file store; view with `mlflow ui`)."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        super().__init__(cfg)
        import os

        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):  # a local folder, as MLflow's own default used to be
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow ≥ 3.x asks for this opt-in
            mlflow.set_tracking_uri(Path("mlruns").resolve().as_uri())
        mlflow.set_experiment("grdnet")
        mlflow.start_run(run_name=Path(run_dir).name)
        params = {f"{section}.{key}": str(value)[:500] for section, values in cfg.to_dict().items() for key, value in values.items()}
        mlflow.log_params(params)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({tag.replace("/", "."): value for tag, value in values.items()}, step=step)

    def image(self, tag: str, strip: np.ndarray, step: int) -> None:
        self.mlflow.log_image(strip, artifact_file=f"{tag.replace('/', '_')}/epoch_{step:04d}.png")

    def close(self) -> None:
        self.mlflow.end_run()


def open_logger(cfg: RunConfig, run_dir: Path) -> EpochLogger | None:
    """The logger `cfg.train.logger` asks for: "auto" = TensorBoard when `tensorboard` is installed, else none."""
    kind = cfg.train.logger
    installed = {name: importlib.util.find_spec(name) is not None for name in ("tensorboard", "mlflow")}
    if kind == "auto":
        kind = "tensorboard" if installed["tensorboard"] else "none"
    if kind == "none":
        return None
    if not installed[kind]:
        package = "'grdnet[tracking]'" if kind == "tensorboard" else "mlflow-skinny"
        raise ConfigError(f"train.logger: {kind} is not installed; install it with: pip install {package}, or use --logger none")
    return TensorBoardLogger(cfg, run_dir) if kind == "tensorboard" else MlflowLogger(cfg, run_dir)
