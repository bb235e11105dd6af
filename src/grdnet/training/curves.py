"""`training_curves.png`: loss terms, learning rates and validation scores per epoch (matplotlib, no pyplot)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from grdnet.visualize import axes_note, figure_png


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
            axes_note(axes, "no values yet")
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
            file.write(figure_png(figure))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
