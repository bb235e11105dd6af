"""`Predictor`: a trained checkpoint → anomaly maps, smoothed maps, image scores and pass/fail decisions.

Only the inference path of the model runs (for GRD-Net: E1, decoder and segmenter), over tiles when the
run was trained on tiles (`grdnet.tiling`). A checkpoint is self-contained (config, threshold and the scoring
head's normal statistics inside) and is read with `weights_only=True`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from grdnet.checkpoint import load_checkpoint, model_from_checkpoint
from grdnet.config import RunConfig
from grdnet.data import read_image_with_valid
from grdnet.pixels import array_pixels, chw_pixels, prepare_pixels
from grdnet.predictions_io import (
    Prediction,
    build_prediction,
    inspected_region,
    predict_folder,
)
from grdnet.runtime import autocast, resolve_device, uses_bf16
from grdnet.scoring import NormalStats
from grdnet.tiling import wrap_for_inference


class Predictor:
    """Loads a model and its operating threshold; predicts on tensors, arrays, files or folders."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, threshold: float, device: torch.device, bf16: bool,
                 source: str = "", normal_stats: NormalStats | None = None) -> None:
        memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = wrap_for_inference(model, cfg, normal_stats).eval().to(device, memory_format=memory_format)
        self.cfg = cfg
        self.threshold = float(threshold)
        self.device = device
        self.bf16 = bf16
        self.source = source

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto", precision: str | None = None) -> "Predictor":
        """Build from a checkpoint file or a run folder (uses its best.pt). `precision` None = the run's own
        `train.precision` (so scores match the validation that set the threshold, on the same kind of machine)."""
        state = load_checkpoint(Path(path))
        cfg, model = model_from_checkpoint(state, Path(path))
        torch_device = resolve_device(device)
        bf16 = uses_bf16(precision or cfg.train.precision, torch_device, model)
        return cls(model, cfg, state.get("threshold", float("nan")), torch_device, bf16, str(path),
                   NormalStats.from_state(state.get("normal_stats")))

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.data.image_size)

    # ---------------------------------------------------------------- inputs
    def prepare(self, images: torch.Tensor | np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
        """Arrays or tensors → (batch (B,C,H,W) float in [0,1] resized into image_size (data.resize) with the
        model's channel count, valid (B,H,W) float32: 1 where the image lies, 0 on "fit" padding).

        Accepts a (B,C,H,W) / (C,H,W) tensor in [0,1], or arrays (H,W) / (H,W,C) of uint8, uint16 or float in
        [0,1] (one array or a list; sizes may differ). Anything not already at the model's size and channel
        count goes through `grdnet.pixels.prepare_pixels`, as image files do.
        """
        channels, resize, size = self.cfg.data.channels, self.cfg.data.resize, self.image_size
        if isinstance(images, torch.Tensor):
            batch = images.float().unsqueeze(0) if images.ndim == 3 else images.float()
            if batch.shape[1] == channels and tuple(batch.shape[-2:]) == size:
                return batch.clamp(0, 1), np.ones((len(batch), *size), dtype=np.float32)
            pixels = [chw_pixels(image.detach().cpu().numpy()) for image in batch]
        else:
            single = isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and not _is_batch(images)))
            pixels = [array_pixels(array) for array in ([images] if single else list(images))]
        prepared = [prepare_pixels(p, channels, size, resize) for p in pixels]
        return (torch.from_numpy(np.stack([image for image, _ in prepared])),
                np.stack([valid for _, valid in prepared]))

    # ---------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray | Sequence[np.ndarray], valid: np.ndarray | None = None,
                roi: np.ndarray | None = None) -> Prediction:
        """Predict one batch (see `prepare` for accepted inputs) with the `ScoringHead`'s rule: maps are 0
        outside the inspected region (the ROI, never "fit" padding), map-scored methods score its maximum.

        `valid` (B,H,W) overrides the padding mask `prepare` derives from the inputs' sizes: pass the one from
        `load_files` (or `ImageDataset`'s `valid`) for images that were resized already. `roi` (B,H,W) or
        (H,W) in {0, 1} at the model's size; None = the whole image.
        """
        batch, derived = self.prepare(images)
        batch = batch.to(self.device, non_blocking=True)
        region = torch.from_numpy(inspected_region(derived if valid is None else valid, roi)).to(self.device)
        if self.cfg.train.channels_last:  # NHWC: faster convolutions on CPUs (oneDNN) and GPUs alike
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.bf16):
            out = self.model(batch, region)
        outputs = {k: v.float().cpu().numpy() for k, v in out.items() if k in ("anomaly_map", "smoothed_map") or k.startswith("score")}
        return build_prediction(outputs, self.threshold)

    def load_files(self, paths: Sequence[Path], workers: int = 8) -> tuple[torch.Tensor, np.ndarray]:
        """Decode and resize image files in parallel threads → (images (N,C,H,W), valid (N,H,W), see `prepare`)."""
        def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
            return read_image_with_valid(path, self.cfg.data.channels, self.image_size, self.cfg.data.resize)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            loaded = list(pool.map(load, paths))
        return torch.stack([image for image, _ in loaded]), torch.cat([valid for _, valid in loaded]).numpy()

    def predict_files(self, paths: Sequence[Path], batch_size: int = 32) -> Iterator[tuple[list[Path], torch.Tensor, Prediction]]:
        """Yield (paths, images (B,C,H,W), Prediction) batch by batch; decoding overlaps with the model."""
        chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1) as prefetch:
            pending = prefetch.submit(self.load_files, chunks[0])
            for i, chunk in enumerate(chunks):
                images, valid = pending.result()
                if i + 1 < len(chunks):
                    pending = prefetch.submit(self.load_files, chunks[i + 1])
                yield chunk, images, self.predict(images, valid)

    def predict_folder(self, folder: Path, output_dir: Path, batch_size: int = 32, overlays: bool = True,
                       json_output: bool = False, on_records: Callable[[list[dict]], None] | None = None,
                       show_progress: bool = False) -> Path:
        """Predict every image under `folder` (recursively, never inside `output_dir`); write `scores.csv`
        (+ `overlays/*.png`, + `predictions.json`), see `grdnet.predictions_io.write_predictions`; `on_records`
        gets each batch's records as they are written. `show_progress` draws a progress bar (batches) on a
        terminal's stderr. Returns the CSV path."""
        return predict_folder(self.predict_files, self.threshold, folder, output_dir, batch_size, overlays, json_output,
                              on_records, show_progress)


def _is_batch(array: np.ndarray) -> bool:
    """A 3-D array is one (H,W,C) image when its last axis is 1, 3 or 4 channels; otherwise a batch of (H,W)."""
    return array.ndim == 3 and array.shape[-1] not in (1, 3, 4)

