"""Shared pieces of the benchmark scripts: data locations, staged training, evaluation, JSON + Markdown output.

Staged training trains to the first epoch budget, evaluates, then resumes to the next budget: resume is
exact, so the figures at 10 / 35 / 100 epochs equal three separate runs, at the cost of one.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.data.builtin import make_builtin_dataset
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.runtime import versions
from grdnet.training import Trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REPORTED = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "accuracy", "F1")


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, or GRDNET_DATA_DIR."""
    return Path(os.environ.get("GRDNET_DATA_DIR", REPO.parent / "shared" / "data"))


def machine() -> dict[str, Any]:
    info = {"cpu_cores": os.cpu_count(), "platform": platform.platform(), **versions()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def quick_dataset(workdir: Path) -> Path:
    """The built-in dataset (64 px), the toy stand-in used by every `--quick` mode."""
    return make_builtin_dataset(workdir / "builtin", seed=0)


def staged_training(cfg: RunConfig, budgets: Iterable[int], use_test_rois: bool = False) -> list[dict[str, Any]]:
    """Train `cfg` up to each epoch budget in turn (resuming), evaluating the last weights at each.

    Returns one row per budget: epochs, cumulative training seconds, training images/s, and metrics.
    """
    rows = []
    seconds = 0.0
    resume = False
    for epochs in sorted(budgets):
        stage = cfg.updated({"train.epochs": epochs})
        start = time.perf_counter()
        result = Trainer(stage, resume=resume, show_progress=False).fit()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        resume = True
        rates = [h["images_per_s"] for h in result.history[1:]] or [h["images_per_s"] for h in result.history]
        rows.append({
            "model": cfg.model.name,
            "epochs": epochs,
            "train_seconds": round(seconds, 1),
            "train_images_per_s": round(sorted(rates)[len(rates) // 2], 1),
            **evaluate_checkpoint(result.last_checkpoint, stage, use_test_rois),
        })
    return rows


def evaluate_checkpoint(checkpoint: Path, cfg: RunConfig, use_test_rois: bool = False) -> dict[str, Any]:
    """Test-split metrics of a checkpoint (threshold from its validation calibration)."""
    predictor = Predictor.from_checkpoint(checkpoint, device=cfg.train.device)
    index = index_dataset(cfg.data)
    evaluation = evaluate_samples(predictor, index.test, use_rois=use_test_rois)
    metrics = evaluation.metrics
    return {k: _round(v) for k, v in metrics.items() if k in REPORTED or k.startswith("image_AUROC_")}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def write_results(name: str, rows: list[dict[str, Any]], command: str, out_dir: Path = RESULTS,
                  extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write `name.json` (rows, machine, command) and `name.md` (a Markdown table); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "command": command, "machine": machine(), "rows": rows, **(extra or {})}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=1))
    md_path = out_dir / f"{name}.md"
    md_path.write_text(markdown_table(rows) + f"\n\nCommand: `{command}`\n")
    return json_path, md_path


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
