"""Score a trained model on the test split and compute the reported metrics (`grdnet.metrics.evaluate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from grdnet.data import ImageDataset, Sample
from grdnet.inference import Predictor
from grdnet.metrics import effective_labels, evaluate, image_auroc


@dataclass
class Evaluation:
    """Metrics plus what produced them: per-image records and (N,H,W) maps, masks and ROIs."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    images: np.ndarray = field(repr=False)
    maps: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    rois: np.ndarray | None = field(repr=False)


def evaluate_samples(predictor: Predictor, samples: list[Sample], use_rois: bool, batch_size: int = 32,
                     num_workers: int = 0, show_progress: bool = False) -> Evaluation:
    """Predict every test sample and evaluate with the predictor's (validation-calibrated) threshold.

    With `use_rois`, images are scored inside their ROI (`grdnet.scoring.ScoringHead`), an image counts as
    defective only when its defect touches the ROI, and pixel metrics are computed inside the ROI; without,
    "fit" padding is still left out of scores and pixel metrics. Defect images without a mask (image-level
    labels) count in the image metrics only (`metrics["pixel_note"]` says so). `show_progress` draws a
    progress bar on a terminal's stderr.
    """
    cfg = predictor.cfg
    dataset = ImageDataset(samples, cfg.data.image_size, cfg.data.channels, cfg.data.resize)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    images, scores, maps, masks, rois, valids = [], [], [], [], [], []
    extra: dict[str, list[np.ndarray]] = {}
    from rich.console import Console  # lazy: rich only when testing
    from rich.progress import track

    for batch in track(loader, description="testing", total=len(loader), transient=True, console=Console(stderr=True),
                       disable=not show_progress):
        valid = batch["valid"][:, 0].numpy()
        pred = predictor.predict(batch["image"], valid, batch["roi"][:, 0].numpy() if use_rois else None)
        scores.append(pred.score)
        for name, values in pred.extra_scores.items():
            extra.setdefault(name, []).append(values)
        maps.append(pred.smoothed_map)
        masks.append(batch["mask"][:, 0].numpy())
        rois.append(batch["roi"][:, 0].numpy())
        valids.append(valid)
        images.append(batch["image"].numpy())
    score = np.concatenate(scores)
    smoothed = np.concatenate(maps)
    mask = np.concatenate(masks)
    roi = np.concatenate(rois) if use_rois else None
    scored_region = np.concatenate(valids) if roi is None and cfg.data.resize == "fit" else roi
    labels = np.array([s.label for s in samples])
    defect_types = [s.defect_type for s in samples]
    metrics = evaluate(score, labels, smoothed, mask, scored_region, threshold=predictor.threshold, defect_types=defect_types,
                       pixel_labelled=np.array([s.pixel_labelled for s in samples]))
    counted = effective_labels(labels, mask, scored_region)
    for name, values in extra.items():
        metrics[f"image_AUROC_{name}"] = image_auroc(np.concatenate(values), counted)
    records = [
        {
            "path": str(s.image),
            "defect_type": s.defect_type,
            "label": int(s.label),
            "counted_label": int(counted[i]),
            "score": float(score[i]),
            "decision": bool(score[i] >= predictor.threshold),
        }
        for i, s in enumerate(samples)
    ]
    return Evaluation(metrics, records, np.concatenate(images), smoothed, mask, roi)

