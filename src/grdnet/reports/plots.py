"""Matplotlib figures as PNG: ROC and precision–recall curves, training curves (no pyplot, no display)."""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _undefined(axes, why: str) -> None:
    axes.text(0.5, 0.5, why, ha="center", va="center", wrap=True, transform=axes.transAxes)


def curve_pngs(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, bytes]:
    """`{"roc": png, "pr": png}` for image scores `(N,)` and labels `(N,)` (1 = defect), with the operating
    point at `threshold` ("defect" means score >= threshold) marked when it is finite."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    both = 0 < labels.sum() < labels.size
    marked = both and math.isfinite(threshold)
    predicted = scores >= threshold
    tp, fp = int(np.sum(predicted & (labels == 1))), int(np.sum(predicted & (labels == 0)))
    out = {}
    for name in ("roc", "pr"):
        figure = Figure(figsize=(4.2, 3.6))
        axes = figure.add_subplot()
        if name == "roc":
            axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (image level)",
                     xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
            axes.plot([0, 1], [0, 1], color="0.75", linestyle="--", linewidth=1)
            if both:
                fpr, tpr, _ = roc_curve(labels, scores)
                axes.plot(fpr, tpr, color="tab:blue", linewidth=2)
            if marked:
                axes.plot(fp / max(1, np.sum(labels == 0)), tp / labels.sum(), "o", color="tab:red", label="threshold")
        else:
            axes.set(xlabel="recall", ylabel="precision", title="Precision–recall (image level)",
                     xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
            if both:
                precision, recall, _ = precision_recall_curve(labels, scores)
                axes.plot(recall, precision, color="tab:blue", linewidth=2, drawstyle="steps-post")
                axes.axhline(labels.mean(), color="0.75", linestyle="--", linewidth=1)
            if marked and tp + fp:
                axes.plot(tp / labels.sum(), tp / (tp + fp), "o", color="tab:red", label="threshold")
        if not both:
            _undefined(axes, "undefined: needs both normal and defect images")
        elif marked:
            axes.legend(loc="lower right")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        out[name] = _png(figure)
    return out


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], float(r[key])) for r in history if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss terms, learning rates and validation scores per epoch (records as in log.jsonl) → PNG at `path`.

    The file is replaced atomically (temporary file + `os.replace`), so a reader never sees half a PNG.
    """
    path = Path(path)
    keys = sorted({k for record in history for k in record})
    panels = [
        ("loss terms", [k for k in keys if k.startswith("loss_")], "loss_"),
        ("learning rates", [k for k in keys if k.startswith("lr_")], "lr_"),
        ("validation", [k for k in keys if k.startswith("val_")], ""),
    ]
    figure = Figure(figsize=(12, 3.6))
    for column, (title, names, prefix) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 3, column)
        axes.set(title=title, xlabel="epoch")
        values = []
        for name in names:
            epochs, ys = _series(history, name)
            axes.plot(epochs, ys, marker="o", markersize=3, label=name.removeprefix(prefix))
            values += ys
        if not values:
            _undefined(axes, "no values yet")
        else:
            if title != "validation" and all(v > 0 and math.isfinite(v) for v in values):
                axes.set_yscale("log")
            axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    figure.suptitle(f"training curves — {len(history)} epoch{'s' if len(history) != 1 else ''}")
    figure.tight_layout()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(_png(figure))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
