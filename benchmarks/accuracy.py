"""Accuracy at fixed budgets: each model trained for N epochs (--epochs) and for M wall-clock minutes
(--minutes → train.max_minutes) over several seeds; image / pixel AUROC, AUPRO and accuracy at the
validation threshold, aggregated as mean ± std per model and budget.

Rows of the Markdown table are the aggregates; the JSON also holds every run (`runs`). A minutes budget
trains up to MINUTES_EPOCH_CAP epochs, so DRAEM's lr milestones (fractions of train.epochs) never trigger there.

    python benchmarks/accuracy.py                          # MTD 256², 10 epochs and 5 minutes, seeds 0,1,2, GPU
    python benchmarks/accuracy.py --quick                  # built-in data, 1 epoch / 0.001 min (one epoch), seeds 0,1, CPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Any

import torch

from grdnet.training import Trainer

from common import (
    add_run_arguments,
    evaluate_checkpoint,
    int_list,
    publish,
    resolve_data,
    run_config,
)

NAME = "accuracy"
MODELS = ("grdnet", "draem", "ganomaly")
METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "accuracy")
MINUTES_EPOCH_CAP = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-accuracy")
    parser.set_defaults(seeds=[0, 1, 2])
    parser.add_argument("--epochs", type=int_list, default=[10], help="comma-separated epoch budgets")
    parser.add_argument("--minutes", type=lambda text: [float(v) for v in text.split(",") if v.strip()],
                        default=[5.0], help="comma-separated wall-clock budgets in minutes ('' for none)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    resolve_data(args)
    if args.quick:
        args.epochs, args.minutes, args.seeds = [1], [0.001], [0, 1]
    budgets = [("epochs", e, {"train.epochs": e}) for e in args.epochs] + [
        ("minutes", m, {"train.epochs": MINUTES_EPOCH_CAP, "train.max_minutes": m}) for m in args.minutes]

    runs = []
    for model in args.models.split(","):
        for kind, value, overrides in budgets:
            for seed in args.seeds:
                output = args.work / f"{model}-{kind}{value}-s{seed}"
                cfg = run_config(args, model, output).updated({"train.seed": seed, **overrides})
                runs.append({"model": model, "budget": f"{value} {kind}", "seed": seed, **train_and_evaluate(cfg)})
    rows = aggregate(runs)
    publish(NAME, rows, "accuracy.py", argv, args.out, args.quick, {"runs": runs})
    return 0


def train_and_evaluate(cfg) -> dict[str, Any]:
    """Train `cfg` from scratch; epochs done, training seconds and test metrics of the last weights."""
    start = time.perf_counter()
    result = Trainer(cfg, show_progress=False, overwrite=True).fit()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"epochs_done": result.epochs_done, "train_seconds": round(seconds, 1),
            **evaluate_checkpoint(result.last_checkpoint, cfg)}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std (0 for one seed) of each metric, epochs done and seconds per (model, budget)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["budget"]), []).append(run)
    rows = []
    for (model, budget), group in groups.items():
        row: dict[str, Any] = {"model": model, "budget": budget, "seeds": len(group)}
        for key in ("epochs_done", "train_seconds", *METRICS):
            values = [float(run.get(key, math.nan)) for run in group]
            row[f"{key}_mean"] = round(statistics.fmean(values), 4)
            row[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
