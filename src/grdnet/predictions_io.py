"""Torch-free prediction outputs: defect regions, inspection records, `scores.csv`, `predictions.json`, overlays.

Shared by the PyTorch `Predictor`, the ONNX Runtime `OnnxPredictor`, the `OpenVinoPredictor` and the HTTP service.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
from PIL import Image
from scipy import ndimage

from grdnet.errors import DataError, GrdnetError
from grdnet.files import writable_folder
from grdnet.pixels import IMAGE_EXTENSIONS
from grdnet.visualize import heatmap_scale, overlay

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
T = TypeVar("T")


@dataclass
class Prediction:
    """Per-batch results as NumPy arrays: maps (B,H,W) in [0,1], `score` (B,), `decision` (B,) True = defect.

    `extra_scores` holds a model's additional image scores (model outputs named `score_<name>`, e.g.
    GANomaly's `d1`, `d2`, `d3`), each (B,).
    """

    anomaly_map: np.ndarray
    smoothed_map: np.ndarray
    score: np.ndarray
    decision: np.ndarray
    extra_scores: dict[str, np.ndarray] = field(default_factory=dict)


def inspected_region(valid: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """(B, 1, H, W) float32 region the `ScoringHead` scores: `valid` (B, H, W) (0 on "fit" padding) times the
    ROI (B, H, W) or (H, W) in {0, 1} when one is given."""
    region = valid.astype(np.float32) if roi is None else valid.astype(np.float32) * np.asarray(roi, dtype=np.float32)
    return np.ascontiguousarray(region[:, None])


def build_prediction(outputs: dict[str, np.ndarray], threshold: float) -> Prediction:
    """A `Prediction` from scored outputs (`grdnet.scoring.ScoringHead`): `anomaly_map`, `smoothed_map`
    (B, 1, H, W), `score` and `score_<name>` (B,); decisions are `score >= threshold`."""
    score = outputs["score"].astype(np.float32)
    return Prediction(
        anomaly_map=outputs["anomaly_map"][:, 0],
        smoothed_map=outputs["smoothed_map"][:, 0],
        score=score,
        decision=score >= threshold,
        extra_scores={k[len("score_"):]: v for k, v in outputs.items() if k.startswith("score_")},
    )


def find_regions(scores: np.ndarray, threshold: float, roi: np.ndarray | None = None) -> list[dict]:
    """Connected regions (8-connectivity) of `scores >= threshold` inside `roi`, for (H, W) arrays.

    Each region is `{"bbox": [x0, y0, x1, y1], "area": pixels, "peak": max score}` with inclusive pixel
    coordinates, sorted by peak (highest first); plain Python numbers.
    """
    above = scores >= threshold
    if roi is not None:
        if roi.shape != scores.shape:
            raise ValueError(f"ROI shape {roi.shape} does not match map shape {scores.shape}")
        above &= roi > 0.5
    labelled, count = ndimage.label(above, structure=_EIGHT_CONNECTED)
    if count == 0:
        return []
    areas = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    peaks = ndimage.maximum(scores, labelled, np.arange(1, count + 1))
    found = [
        {
            "bbox": [int(box[1].start), int(box[0].start), int(box[1].stop - 1), int(box[0].stop - 1)],
            "area": int(area),
            "peak": float(peak),
        }
        for box, area, peak in zip(ndimage.find_objects(labelled), areas, peaks)
    ]
    return sorted(found, key=lambda region: region["peak"], reverse=True)


def inspection_record(path: str | Path, score: float, threshold: float, smoothed_map: np.ndarray,
                      roi: np.ndarray | None = None) -> dict:
    """One image's JSON-safe result: {path, score, decision ("defect" / "ok"), threshold, regions}.

    `smoothed_map` and `roi` are (H, W) at the model's resolution; regions are found only with a finite
    threshold (None in the record otherwise).
    """
    finite = math.isfinite(threshold)
    return {
        "path": str(path),
        "score": float(score),
        "decision": "defect" if finite and score >= threshold else "ok",
        "threshold": float(threshold) if finite else None,
        "regions": find_regions(np.asarray(smoothed_map), threshold, roi) if finite else [],
    }


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under `folder` (recursive, sorted), or `[folder]` for a file; DataError when there are none.

    Files inside `exclude` (the output folder: its overlays are images too) are never listed.
    """
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise DataError(f"{folder}: no such file or folder; pass an image file or a folder of images")
    skipped = Path(exclude).resolve() if exclude is not None else None
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                   and not (skipped is not None and p.resolve().is_relative_to(skipped)))
    if not paths:
        raise DataError(f"{folder}: contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); point to a folder of images")
    return paths


def with_progress(batches: Iterable[T], count: int, show: bool) -> Iterable[T]:
    """`batches` unchanged, drawing a progress bar of `count` steps on a terminal's stderr when `show`."""
    if not show:
        return batches
    from rich.console import Console
    from rich.progress import track

    return track(batches, description="predicting", total=count, transient=True, console=Console(stderr=True))


def predict_folder(predict_files: Callable[[list[Path], int], Iterable[tuple[Sequence[Path], np.ndarray, Prediction]]],
                   threshold: float, folder: Path, output_dir: Path, batch_size: int = 32, overlays: bool = True,
                   json_output: bool = False, on_records: Callable[[list[dict]], None] | None = None,
                   show_progress: bool = False) -> Path:
    """Predict every image under `folder` (recursively, never inside `output_dir`) in batches with
    `predict_files(paths, batch_size)` (either predictor's) and write them with `write_predictions`; `on_records`
    gets each batch's records as they are written, `show_progress` draws a progress bar. Returns the CSV path."""
    paths = list_images(folder, exclude=output_dir)
    batches = with_progress(predict_files(paths, batch_size), -(-len(paths) // batch_size), show_progress)
    return write_predictions(batches, folder, output_dir, threshold, overlays, json_output, on_records)


def write_predictions(batches: Iterable[tuple[Sequence[Path], np.ndarray, Prediction]], folder: Path,
                      output_dir: Path, threshold: float, overlays: bool = True, json_output: bool = False,
                      on_records: Callable[[list[dict]], None] | None = None) -> Path:
    """Write `scores.csv` (+ `overlays/*.png`, + `predictions.json`) from (paths, images (B,C,H,W), Prediction).

    CSV columns: path, score, decision, threshold, regions (JSON list of {bbox, area, peak} at the model's
    resolution); `predictions.json` is the list of `inspection_record`s. Returns the CSV path.

    Rows stream into `scores.csv.partial` batch by batch (and `on_records` gets each batch's records as it is
    scored), which replaces `scores.csv` only once every image is done: a failed run leaves an earlier
    `scores.csv` as it was and keeps what it did scored in the partial file.
    """
    folder = Path(folder)
    output_dir = writable_folder(output_dir)
    if overlays:
        writable_folder(output_dir / "overlays")
    records: list[dict] = []
    csv_path = output_dir / "scores.csv"
    partial = output_dir / "scores.csv.partial"
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "score", "decision", "threshold", "regions"])
        try:
            for paths, images, pred in batches:
                batch = []
                for j, path in enumerate(paths):
                    record = inspection_record(path, pred.score[j], threshold, pred.smoothed_map[j])
                    writer.writerow([record["path"], f"{pred.score[j]:.6f}", record["decision"], f"{threshold:.6f}",
                                     json.dumps(record["regions"])])
                    batch.append(record)
                    if overlays:
                        image = np.asarray(images[j])
                        scale = heatmap_scale(threshold, pred.smoothed_map[j])
                        Image.fromarray(overlay(image, pred.smoothed_map[j], vmax=scale)).save(output_dir / "overlays" / _flat_name(path, folder))
                handle.flush()
                if on_records is not None:
                    on_records(batch)
                records += batch
        except GrdnetError as error:
            kept = f"an earlier {csv_path} is unchanged" if csv_path.exists() else f"no {csv_path.name} was written"
            raise DataError(f"{error}; the {len(records)} images scored before it are in {partial}, {kept}") from None
    if json_output:
        _replace_text(output_dir / "predictions.json", json.dumps(records, indent=2))
    os.replace(partial, csv_path)
    return csv_path


def _replace_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so `path` is never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _flat_name(path: Path, root: Path) -> str:
    relative = Path(path).relative_to(root) if root.is_dir() else Path(Path(path).name)
    return "__".join(relative.with_suffix("").parts) + ".png"
