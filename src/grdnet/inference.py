"""`Predictor`: a trained checkpoint → anomaly maps, smoothed maps, image scores and pass/fail decisions.

Only the inference path of the model runs (for GRD-Net: E1, decoder and segmenter). A checkpoint is
self-contained (config and threshold inside) and is read with `weights_only=True`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from grdnet.config import RunConfig
from grdnet.data import read_image
from grdnet.models import build_model
from grdnet.predictions_io import Prediction, list_images, write_predictions
from grdnet.runtime import autocast, resolve_device, uses_bf16
from grdnet.training.checkpoint import load_checkpoint


class Predictor:
    """Loads a model and its operating threshold; predicts on tensors, arrays, files or folders."""

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, threshold: float, device: torch.device, bf16: bool,
                 source: str = "") -> None:
        self.model = model.eval().to(device)
        self.cfg = cfg
        self.threshold = float(threshold)
        self.device = device
        self.bf16 = bf16
        self.source = source

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto", precision: str = "auto") -> "Predictor":
        """Build from a checkpoint file or a run folder (uses its best.pt)."""
        state = load_checkpoint(Path(path))
        cfg = RunConfig.from_dict(state["config"], source=f"{path} (stored config)")
        model = build_model(cfg)
        model.load_state_dict(state["model"])
        torch_device = resolve_device(device)
        return cls(model, cfg, state.get("threshold", float("nan")), torch_device, uses_bf16(precision, torch_device), str(path))

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.data.image_size)

    # ---------------------------------------------------------------- inputs
    def prepare(self, images: torch.Tensor | np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Arrays or tensors → (B,C,H,W) float in [0,1] at the model's size and channel count.

        Accepts a (B,C,H,W) tensor in [0,1], or arrays (H,W) / (H,W,C) of uint8, uint16 or float in [0,1].
        """
        if isinstance(images, torch.Tensor):
            batch = images.float()
            if batch.ndim == 3:
                batch = batch.unsqueeze(0)
        else:
            single = isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and not _is_batch(images)))
            arrays = [images] if single else list(images)
            batch = torch.stack([self._array_to_tensor(a) for a in arrays])
        channels = self.cfg.data.channels
        if batch.shape[1] != channels:
            batch = batch.mean(dim=1, keepdim=True) if channels == 1 else batch[:, :1].expand(-1, 3, -1, -1)
        if tuple(batch.shape[-2:]) != self.image_size:
            batch = F.interpolate(batch, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return batch.clamp(0, 1)

    @staticmethod
    def _array_to_tensor(array: np.ndarray) -> torch.Tensor:
        array = np.asarray(array)
        if array.dtype == np.uint8:
            scaled = array.astype(np.float32) / 255.0
        elif array.dtype == np.uint16:
            scaled = array.astype(np.float32) / 65535.0
        else:
            scaled = array.astype(np.float32)
        if scaled.ndim == 2:
            scaled = scaled[..., None]
        if scaled.shape[-1] == 4:
            scaled = scaled[..., :3]
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(scaled, -1, 0)))

    # ---------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray | Sequence[np.ndarray]) -> Prediction:
        """Predict one batch (see `prepare` for accepted inputs)."""
        batch = self.prepare(images).to(self.device, non_blocking=True)
        if self.device.type == "cuda" and self.cfg.train.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.bf16):
            out = self.model(batch)
        score = out["score"].float().cpu().numpy()
        return Prediction(
            anomaly_map=out["anomaly_map"].float().cpu().numpy()[:, 0],
            smoothed_map=out["smoothed_map"].float().cpu().numpy()[:, 0],
            score=score,
            decision=score >= self.threshold,
            extra_scores={k[len("score_"):]: v.float().cpu().numpy() for k, v in out.items() if k.startswith("score_")},
        )

    def load_files(self, paths: Sequence[Path], workers: int = 8) -> torch.Tensor:
        """Decode and resize image files in parallel threads → (N,C,H,W)."""
        def load(path: Path) -> torch.Tensor:
            image = read_image(path, self.cfg.data.channels)
            return F.interpolate(image[None], size=self.image_size, mode="bilinear", align_corners=False, antialias=True)[0]

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return torch.stack(list(pool.map(load, paths)))

    def predict_files(self, paths: Sequence[Path], batch_size: int = 32) -> Iterator[tuple[list[Path], torch.Tensor, Prediction]]:
        """Yield (paths, images (B,C,H,W), Prediction) batch by batch; decoding overlaps with the model."""
        chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
        if not chunks:
            return
        with ThreadPoolExecutor(max_workers=1) as prefetch:
            pending = prefetch.submit(self.load_files, chunks[0])
            for i, chunk in enumerate(chunks):
                images = pending.result()
                if i + 1 < len(chunks):
                    pending = prefetch.submit(self.load_files, chunks[i + 1])
                yield chunk, images, self.predict(images)

    def predict_folder(self, folder: Path, output_dir: Path, batch_size: int = 32, overlays: bool = True,
                       json_output: bool = False) -> Path:
        """Predict every image under `folder` (recursively); write `scores.csv` (+ `overlays/*.png`,
        + `predictions.json`), see `grdnet.predictions_io.write_predictions`. Returns the CSV path."""
        paths = list_images(folder)
        return write_predictions(self.predict_files(paths, batch_size), folder, output_dir, self.threshold, overlays, json_output)


def _is_batch(array: np.ndarray) -> bool:
    """A 3-D array is one (H,W,C) image when its last axis is 1, 3 or 4 channels; otherwise a batch of (H,W)."""
    return array.ndim == 3 and array.shape[-1] not in (1, 3, 4)

