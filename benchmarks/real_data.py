"""Real defects on real photographs with the compute a user has: GRD-Net and DRAEM with `grdnet train`'s own
defaults for this machine (the `cpu` profile without a GPU), on a fixed evaluation part of the test split.

The test split is cut once by a seeded rule (`development_split`): within each defect type and `good`, the
images are ordered by SHA-256 of "<split seed>:<type>/<file name>" and the first third (rounded) is the
development part, used for tuning; the other two thirds are the evaluation part, the only one reported.
Each method and seed trains in stages (exact resume) to the cumulative budgets in `--minutes`, and the
best-on-validation checkpoint is evaluated after each stage, which gives the curve of image AUROC against
training minutes. Thresholds and checkpoints come from validation only (no test labels).

    python benchmarks/real_data.py                                  # MTD, GRD-Net + DRAEM, seeds 0-2, 5/10/20/30 min
    python benchmarks/real_data.py --methods grdnet --seeds 0 --part development --set train.lr=5e-4   # tuning
    python benchmarks/real_data.py --quick                          # toy: built-in dataset, seconds (CI)

Without `--quick` the results also replace the section between the `real_data` markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grdnet.config import RunConfig
from grdnet.data import Sample, index_dataset
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.metrics import f1_max
from grdnet.profiles import resolve_profile
from grdnet.training import Trainer

from common import (
    QUICK_DATA,
    QUICK_MODELS,
    REPO,
    RESULTS,
    int_list,
    markdown_table,
    parse_set,
    publish,
    quick_dataset,
    rounded,
    shared_data_dir,
)

REPORTED = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "accuracy", "F1", "F1_max")
MARKERS = ("<!-- real_data:start -->", "<!-- real_data:end -->")


def development_split(samples: list[Sample], seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(development, evaluation): a third of each defect type (and of `good`) for development, chosen by the
    SHA-256 order of "<seed>:<type>/<file name>"; the rest for evaluation. Independent of listing order."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.defect_type, []).append(sample)
    development, evaluation = [], []
    for kind, group in sorted(groups.items()):
        ordered = sorted(group, key=lambda s: hashlib.sha256(f"{seed}:{kind}/{s.image.name}".encode()).hexdigest())
        cut = round(len(ordered) / 3)
        development += ordered[:cut]
        evaluation += ordered[cut:]
    return development, evaluation


def method_config(method: str, args: argparse.Namespace, output: Path, seed: int) -> RunConfig:
    """What `grdnet train --model METHOD --data-root … --category …` resolves to on this machine, plus --set."""
    overrides = dict(args.sets)
    if args.quick:
        overrides.update({f"model.{k}": v for k, v in QUICK_MODELS[method].items()})
        overrides.update({"data.image_size": (64, 64), "data.tile_size": None, "scoring.smoothing_kernel": 7})
    base = RunConfig.for_model(method).updated({
        "data.root": str(args.data_root), "data.category": args.category, "train.seed": seed,
        "train.device": args.device, "train.output_dir": str(output),
    })
    user_keys = set(overrides) | {"data.root", "data.category", "train.seed", "train.device", "train.output_dir"}
    cfg, summary = resolve_profile(base.updated(overrides), args.profile, user_keys)
    print(f"{method} seed {seed}: {summary}", flush=True)
    return cfg


def evaluate(checkpoint: Path, samples: list[Sample]) -> dict[str, Any]:
    """Metrics of `checkpoint` on `samples` at its validation threshold, plus the oracle F1-max."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    result = evaluate_samples(predictor, samples, use_rois=False)
    scores = np.array([r["score"] for r in result.records])
    labels = np.array([r["counted_label"] for r in result.records])
    metrics = {**result.metrics, "F1_max": f1_max(scores, labels)["F1_max_oracle"]}
    per_type = {kind: entry["image_AUROC"] for kind, entry in metrics.get("per_defect_type", {}).items()}
    return {**{k: rounded(metrics.get(k)) for k in REPORTED}, "threshold": rounded(predictor.threshold),
            "per_type": {k: rounded(v) for k, v in per_type.items()},
            "scores": {Path(r["path"]).parent.name + "/" + Path(r["path"]).name: rounded(r["score"]) for r in result.records}}


def staged_run(cfg: RunConfig, minutes: list[float], samples: list[Sample]) -> list[dict[str, Any]]:
    """Train `cfg` to each cumulative wall-clock budget in turn (resuming), evaluating best.pt after each."""
    rows, spent, done = [], 0.0, 0.0
    for stage, budget in enumerate(sorted(minutes)):
        start = time.perf_counter()
        stage_cfg = cfg.updated({"train.max_minutes": max(budget - done, 1e-3)})
        result = Trainer(stage_cfg, resume=stage > 0, overwrite=stage == 0, show_progress=False).fit()
        spent += time.perf_counter() - start
        done = budget
        best = max((h for h in result.history if "val_score" in h), key=lambda h: h["val_score"], default={})
        rows.append({
            "model": cfg.model.name, "seed": cfg.train.seed, "minutes": budget,
            "train_minutes": round(spent / 60, 2), "epochs": result.epochs_done, "best_epoch": best.get("epoch"),
            **evaluate(result.best_checkpoint, samples),
        })
        print(markdown_table([{k: v for k, v in rows[-1].items() if k not in ("per_type", "scores")}]), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (model, minutes)."""
    table = []
    for key in sorted({(r["model"], r["minutes"]) for r in rows}):
        group = [r for r in rows if (r["model"], r["minutes"]) == key]
        entry: dict[str, Any] = {"model": key[0], "minutes": key[1], "seeds": len(group),
                                 "epochs": round(float(np.mean([r["epochs"] for r in group])), 1)}
        for metric in REPORTED:
            values = [r[metric] for r in group if isinstance(r[metric], float) and math.isfinite(r[metric])]
            entry[metric] = f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "n/a"
        table.append(entry)
    return table


def plot(rows: list[dict[str, Any]], mark: float, path: Path) -> None:
    """Image AUROC against training minutes, one line per method (mean over seeds, band = ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model in sorted({r["model"] for r in rows}):
        points = sorted({r["minutes"] for r in rows if r["model"] == model})
        values = [[r["image_AUROC"] for r in rows if r["model"] == model and r["minutes"] == m] for m in points]
        mean, std = np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])
        ax.plot(points, mean, marker="o", label=model)
        ax.fill_between(points, mean - std, mean + std, alpha=0.2)
    ax.axvline(mark, color="grey", linestyle="--", label=f"{mark:g} min")
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_xlabel("training minutes (wall clock)")
    ax.set_ylabel("image AUROC (evaluation part)")
    ax.set_ylim(0.4, 1.0)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def update_benchmarks_md(table: list[dict[str, Any]], command: str, plot_path: Path, threads: int) -> None:
    """Replace the section between MARKERS in BENCHMARKS.md with the summary table."""
    doc = REPO / "BENCHMARKS.md"
    text = doc.read_text()
    if MARKERS[0] not in text:
        return
    body = "\n".join([
        MARKERS[0],
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} threads, "
        f"{threads} requested). Mean ± std over seeds, evaluation part of the test split.",
        "", markdown_table(table), "", f"![image AUROC against training minutes]({os.path.relpath(plot_path, REPO)})",
        MARKERS[1],
    ])
    start, end = text.index(MARKERS[0]), text.index(MARKERS[1]) + len(MARKERS[1])
    doc.write_text(text[:start] + body + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=shared_data_dir() / "mtd")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--methods", default="grdnet,draem")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--minutes", default="5,10,20,30", help="cumulative training budgets (wall clock)")
    parser.add_argument("--part", choices=("evaluation", "development"), default="evaluation")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="sets", type=parse_set, action="append", default=[],
                        help="extra setting section.key=value on top of the profile (tuning)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-real-data"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="toy scale on the built-in dataset (CI)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="instead of training, combine the runs of earlier real_data JSON files (runs made in "
                        "parallel, one per method and seed) into one table, plot and BENCHMARKS.md section")
    args = parser.parse_args(argv)
    if args.merge:
        rows = [run for path in args.merge for run in json.loads(path.read_text())["runs"]]
        parts = {json.loads(path.read_text())["part"] for path in args.merge}
        if len(parts) != 1:
            parser.error(f"the files mix parts {sorted(parts)}; merge runs of one part")
        args.part = parts.pop()
        return report(rows, args, argv, mark=30.0)
    torch.set_num_threads(args.threads)
    minutes = [float(m) for m in args.minutes.split(",")]
    if args.quick:  # the category folder itself is the root
        args.data_root, args.category = quick_dataset(args.work, **QUICK_DATA), None
        args.seeds, minutes = args.seeds[:1], [0.02, 0.04]
    samples = index_dataset(RunConfig().updated({"data.root": str(args.data_root), "data.category": args.category}).data,
                            check_images=False).test
    development, evaluation = development_split(samples, args.split_seed)
    chosen = evaluation if args.part == "evaluation" else development
    print(f"{args.part} part: {len(chosen)} of {len(samples)} test images", flush=True)

    rows = []
    for method in args.methods.split(","):
        for seed in args.seeds:
            cfg = method_config(method, args, args.work / f"{method}-seed{seed}", seed)
            rows += staged_run(cfg, minutes, chosen)
    return report(rows, args, argv, mark=max(minutes) if args.quick else 30.0)


def report(rows: list[dict[str, Any]], args: argparse.Namespace, argv: list[str] | None, mark: float) -> int:
    """Summary table, plot, JSON + Markdown; the evaluation part of a full run also goes into BENCHMARKS.md."""
    table = summarise(rows)
    name = "real_data" + ("" if args.part == "evaluation" else "_development")
    plot_path = args.out / f"{name}{'_quick' if args.quick else ''}.png"
    plot(rows, mark, plot_path)
    publish(name, table, "real_data.py", argv, args.out, args.quick, extra={"runs": rows, "part": args.part})
    if not args.quick and args.part == "evaluation":
        update_benchmarks_md(table, f"python benchmarks/real_data.py {' '.join(argv or sys.argv[1:])}".strip(),
                             plot_path, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
