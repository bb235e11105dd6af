"""`OnnxPredictor`: runs a file written by `grdnet export` with ONNX Runtime — NumPy, Pillow, no torch.

Threshold, input size, resize mode ("stretch" / "fit") and channels come from the file's `grdnet.*`
metadata. Files and arrays go through the same pixel path (`grdnet.pixels`) as training and the PyTorch
`Predictor`, so both predictors see identical pixels and agree within float32 precision.

`ExportedPredictor` is everything but the runtime call, shared with `grdnet.openvino_predictor.OpenVinoPredictor`.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from grdnet.errors import CheckpointError, DataError
from grdnet.extras import require
from grdnet.pixels import array_pixels, chw_pixels, decode_pixels, prepare_pixels
from grdnet.predictions_io import (
    Prediction,
    build_prediction,
    inspected_region,
    predict_folder,
)

FORMAT = "grdnet-onnx-v2"
"""v2: the graph takes `region` beside `image` and scores inside it (v1 graphs scored the whole image). An
OpenVINO IR converted from such a graph carries the same value: it names the graph's inputs and outputs."""


class ExportedPredictor:
    """Predicts on arrays, files or folders with an exported graph; a subclass loads the file, calls
    `_read_metadata` and implements `run` (the one runtime call)."""

    path: Path
    metadata: dict[str, str]
    config: dict
    threshold: float
    image_size: tuple[int, int]
    resize: str
    channels: int
    outputs: list[str]

    def _read_metadata(self, path: Path, meta: dict[str, str], input_shape: list, outputs: list[str]) -> None:
        """Check and keep a file's `grdnet.*` metadata (keys without the prefix); `input_shape` is the graph's
        image input [batch, C, H, W] (str = dynamic axis), `outputs` its output names in order."""
        if meta.get("format", "").startswith("grdnet-onnx-") and meta["format"] != FORMAT:
            raise CheckpointError(f"{path}: exported by another grdnet version ({meta['format']}, this one reads {FORMAT}); "
                                  "re-export the checkpoint with grdnet export")
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a grdnet export (no grdnet metadata); write one with grdnet export")
        self.path = path
        self.metadata = meta
        self.config, self.threshold, self.image_size, self.resize, self.channels = _checked_metadata(path, meta, input_shape)
        self.outputs = outputs

    def run(self, batch: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
        """The graph on `batch` (B,C,H,W) float32 in [0, 1] and `region` (B,1,H,W) float32 in {0, 1} → every
        output by name (anomaly_map, smoothed_map (B,1,H,W), score (B,), score_* (B,))."""
        raise NotImplementedError

    def prepare(self, images: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Arrays → (batch (B,C,H,W) float32 in [0,1] resized into the model's input size (its resize mode) with
        its channel count, valid (B,H,W) float32: 1 where the image lies, 0 on "fit" padding).

        Accepts a (B,C,H,W) float batch, or arrays (H,W) / (H,W,C) of uint8, uint16 or float in [0,1].
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            pixels = [chw_pixels(np.clip(image.astype(np.float32), 0.0, 1.0)) for image in images]
        else:
            single = isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)))
            pixels = [array_pixels(a) for a in ([images] if single else list(images))]
        prepared = [prepare_pixels(p, self.channels, self.image_size, self.resize) for p in pixels]
        return np.stack([image for image, _ in prepared]), np.stack([valid for _, valid in prepared])

    def predict(self, images: np.ndarray | Sequence[np.ndarray], valid: np.ndarray | None = None,
                roi: np.ndarray | None = None) -> Prediction:
        """Predict one batch (see `prepare` for accepted inputs), scored as `Predictor.predict` scores: maps are 0
        outside the inspected region. `valid` (B,H,W) overrides the padding mask derived from the inputs'
        sizes (pass the one from `load_files`); `roi` (B,H,W) or (H,W) in {0, 1}, None = the whole image."""
        batch, derived = self.prepare(images)
        region = inspected_region(derived if valid is None else valid, roi)
        return build_prediction(self.run(batch, region), self.threshold)

    def load_files(self, paths: Sequence[Path], workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Decode and resize image files in parallel threads → (images (N,C,H,W) float32, valid (N,H,W))."""
        def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
            try:
                pixels = decode_pixels(path)
            except Exception as error:  # Pillow raises many types for corrupt files
                raise DataError(f"{path}: cannot read image ({error or type(error).__name__}); replace or delete the file") from None
            return prepare_pixels(pixels, self.channels, self.image_size, self.resize)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            loaded = list(pool.map(load, paths))
        return np.stack([image for image, _ in loaded]), np.stack([valid for _, valid in loaded])

    def predict_files(self, paths: Sequence[Path], batch_size: int = 32) -> Iterator[tuple[list[Path], np.ndarray, Prediction]]:
        """Yield (paths, images (B,C,H,W), Prediction) batch by batch."""
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start : start + batch_size])
            images, valid = self.load_files(chunk)
            yield chunk, images, self.predict(images, valid)

    def predict_folder(self, folder: Path, output_dir: Path, batch_size: int = 32, overlays: bool = True,
                       json_output: bool = False, on_records: Callable[[list[dict]], None] | None = None,
                       show_progress: bool = False) -> Path:
        """Same outputs as `Predictor.predict_folder` (`scores.csv`, overlays, `predictions.json`); returns the CSV path."""
        return predict_folder(self.predict_files, self.threshold, folder, output_dir, batch_size, overlays, json_output,
                              on_records, show_progress)


class OnnxPredictor(ExportedPredictor):
    """Loads an exported ONNX file and its metadata; predicts on arrays, files or folders."""

    def __init__(self, path: Path | str, providers: Sequence[str] | None = None, threads: int = 0) -> None:
        ort = require("onnxruntime")

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found; write one with grdnet export CHECKPOINT --format onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as error:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: cannot be loaded by ONNX Runtime ({str(error).splitlines()[0]}); re-export it") from None
        meta = {k[len("grdnet."):]: v for k, v in self.session.get_modelmeta().custom_metadata_map.items() if k.startswith("grdnet.")}
        self._read_metadata(path, meta, self.session.get_inputs()[0].shape, [o.name for o in self.session.get_outputs()])

    def run(self, batch: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, {"image": batch, "region": region})))


def _checked_metadata(path: Path, meta: dict[str, str], input_shape: list) -> tuple[dict, float, tuple[int, int], str, int]:
    """(config dict, threshold, image_size (H, W), resize, channels) from a file's `grdnet.*` metadata, each checked
    against the stored config's own limits and the graph's input shape [batch, C, H, W] (str = dynamic axis);
    CheckpointError naming the field otherwise, so a tampered file cannot make the predictor allocate
    arbitrary memory."""
    from grdnet.config import RunConfig
    from grdnet.errors import ConfigError

    def bad(field: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: metadata grdnet.{field} {problem}; re-export the file with grdnet export")

    try:
        config = json.loads(meta["config"])
        cfg = RunConfig.from_stored(config)
    except KeyError:
        raise bad("config", "is missing") from None
    except json.JSONDecodeError as error:
        raise bad("config", f"is not valid JSON ({error.msg} at character {error.pos})") from None
    except (ConfigError, TypeError, ValueError) as error:
        raise bad("config", f"is not a valid run configuration ({str(error).split(';')[0]})") from None
    try:
        threshold = float(meta["threshold"])
        image_size = tuple(int(side) for side in json.loads(meta["image_size"]))
        channels = int(meta["channels"])
    except (KeyError, TypeError, ValueError) as error:
        raise bad("threshold/image_size/channels", f"is missing or malformed ({type(error).__name__})") from None
    resize = meta.get("resize", "stretch")  # files exported before "fit" existed stretch
    if image_size != tuple(cfg.data.image_size):
        raise bad("image_size", f"{list(image_size)} differs from the stored config's {list(cfg.data.image_size)}")
    if channels != cfg.data.channels:
        raise bad("channels", f"{channels} differs from the stored config's {cfg.data.channels}")
    if resize != cfg.data.resize:
        raise bad("resize", f"'{resize}' differs from the stored config's '{cfg.data.resize}'")
    if len(input_shape) != 4:
        raise bad("image_size", f"does not fit the graph's input of rank {len(input_shape)} (expected batch, C, H, W)")
    for name, expected, got in (("channels", channels, input_shape[1]), ("image_size", image_size[0], input_shape[2]),
                                ("image_size", image_size[1], input_shape[3])):
        if isinstance(got, int) and got != expected:
            raise bad(name, f"says {expected} but the graph's input is {input_shape[1:]}")
    return config, threshold, image_size, resize, channels

