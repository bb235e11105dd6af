"""The report's matplotlib figures as PNG: ROC and precision–recall curves (no pyplot, no display)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from grdnet.visualize import axes_note, figure_png


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
            axes_note(axes, "undefined: needs both normal and defect images")
        elif marked:
            axes.legend(loc="lower right")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        out[name] = figure_png(figure)
    return out
