"""Shared pieces of the benchmark scripts: data locations, staged training, evaluation, JSON + Markdown output.

Staged training trains to the first epoch budget, evaluates, then resumes to the next budget: resume is
exact, so the figures at 10 / 35 / 100 epochs equal three separate runs, at the cost of one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.methods import methods
from grdnet.runtime import versions
from grdnet.training import Trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REPORTED = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "accuracy", "F1")
QUICK_DATA = {"n_train": 32, "n_test_good": 8, "n_test_defect_per_type": 3}
"""Built-in dataset sizes of the reproduction scripts' `--quick` modes (seconds per run on a CPU)."""
QUICK_MODELS: dict[str, dict[str, Any]] = {name: dict(record.quick) for name, record in methods().items()}
"""Toy model widths for `--quick` (64 px): each method record's `quick` options."""


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, or GRDNET_DATA_DIR."""
    return Path(os.environ.get("GRDNET_DATA_DIR", REPO.parent / "shared" / "data"))


def machine() -> dict[str, Any]:
    info = {"cpu_cores": os.cpu_count(), "platform": platform.platform(), **versions()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def quick_dataset(workdir: Path, **sizes: int) -> Path:
    """The built-in dataset (64 px), the toy stand-in used by every `--quick` mode; `sizes` as make_builtin_dataset."""
    return make_builtin_dataset(workdir / "builtin", seed=0, **sizes)


def parse_set(text: str) -> tuple[str, Any]:
    """A `--set section.key=value` argument → (key, value parsed as YAML)."""
    import yaml

    key, _, value = text.partition("=")
    return key.strip(), yaml.safe_load(value)


def fill_random_memory(model: torch.nn.Module, cfg: RunConfig) -> None:
    """Give an untrained GRD-Net the full `model.memory_bank_size` memory its segmenter expects, as random entries
    (for speed measurements: the cost does not depend on the values); nothing without a memory."""
    if cfg.model.name == "grdnet" and cfg.model.memory_bank_size:
        segmenter = model.segmenter
        segmenter.set_memory(torch.randn(cfg.model.memory_bank_size, segmenter.memory_bank.shape[1]), 1.0)


def int_list(text: str) -> list[int]:
    """'10,35,100' → [10, 35, 100]."""
    return [int(item) for item in text.split(",") if item.strip()]


def add_run_arguments(parser: argparse.ArgumentParser, work: str, image_size: int = 256) -> None:
    """Options every reproduction script shares: data, device, batch size, seeds, work/out folders, --quick."""
    parser.add_argument("--data-root", type=Path, default=shared_data_dir() / "mtd")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    parser.add_argument("--image-size", type=int, default=image_size)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int_list, default=[0], help="comma-separated training seeds")
    parser.add_argument("--work", type=Path, default=Path("runs") / work)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="toy scale on a small built-in dataset, CPU (CI)")


def resolve_data(args: argparse.Namespace) -> Path:
    """The category folder the run uses (`--data-root` itself when no category); `--quick`: the small built-in set."""
    if args.quick:
        args.data_root, args.category = quick_dataset(args.work, **QUICK_DATA), None
    return args.data_root if args.category is None else args.data_root / args.category


def run_config(args: argparse.Namespace, model: str, output_dir: Path, **data: Any) -> RunConfig:
    """`model` with its method defaults (`grdnet.methods`) on the chosen data (see `resolve_data`); `--quick`: toy widths, 64 px, CPU.

    `data` overrides data settings (e.g. root, roi, contamination).
    """
    if args.quick:
        sections = {
            "data": {"root": str(args.data_root), "image_size": [64, 64], "channels": 3},
            "model": QUICK_MODELS[model], "scoring": {"smoothing_kernel": 7},
            "train": {"batch_size": 16, "device": "cpu"},
        }
    else:
        sections = {
            "data": {"root": str(args.data_root), "category": args.category, "channels": args.channels,
                     "image_size": [args.image_size] * 2},
            "train": {"batch_size": args.batch_size, "device": args.device},
        }
    sections["data"].update({k: None if v is None else str(v) if isinstance(v, Path) else v for k, v in data.items()})
    sections["train"]["output_dir"] = str(output_dir)
    return RunConfig.for_model(model, sections)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The exact command that ran `script` with `argv` (None = sys.argv)."""
    return f"python benchmarks/{script} {shlex.join(argv if argv is not None else sys.argv[1:])}".strip()


def staged_training(cfg: RunConfig, budgets: Iterable[int], use_test_rois: bool = False,
                    score_types: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Train `cfg` up to each epoch budget in turn (resuming), evaluating the last weights at each.

    Returns one row per budget: epochs, cumulative training seconds, training images/s, and metrics
    (plus `mean_score_<type>` for each of `score_types`, see `evaluate_checkpoint`).
    """
    rows = []
    seconds = 0.0
    resume = False
    for epochs in sorted(budgets):
        stage = cfg.updated({"train.epochs": epochs})
        start = time.perf_counter()
        result = Trainer(stage, resume=resume, overwrite=not resume, show_progress=False).fit()
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
            **evaluate_checkpoint(result.last_checkpoint, stage, use_test_rois, score_types),
        })
    return rows


def evaluate_checkpoint(checkpoint: Path, cfg: RunConfig, use_test_rois: bool = False,
                        score_types: Sequence[str] = ()) -> dict[str, Any]:
    """Test-split metrics of a checkpoint (threshold from its validation calibration).

    For each defect type in `score_types` adds `mean_score_<type>`, the mean image score of its test images
    (NaN when the type has none).
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=cfg.train.device)
    index = index_dataset(cfg.data)
    evaluation = evaluate_samples(predictor, index.test, use_rois=use_test_rois)
    metrics = evaluation.metrics
    row = {k: rounded(v) for k, v in metrics.items() if k in REPORTED or k.startswith("image_AUROC_")}
    means = mean_scores_by_type(evaluation.records)
    row.update({f"mean_score_{t}": rounded(means.get(t, float("nan"))) for t in score_types})
    return row


def mean_scores_by_type(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean image score per defect type ("good" included) of evaluation records."""
    scores: dict[str, list[float]] = defaultdict(list)
    for record in records:
        scores[record["defect_type"]].append(record["score"])
    return {kind: sum(values) / len(values) for kind, values in scores.items()}


def rounded(value: Any) -> Any:
    """`value` rounded to 4 decimals when it is a float (for result tables); anything else unchanged."""
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


def publish(name: str, rows: list[dict[str, Any]], script: str, argv: Sequence[str] | None, out_dir: Path,
            quick: bool, extra: dict[str, Any] | None = None) -> Path:
    """Write the results of `script` (`name`, or `name_quick` for toy runs), print the table; JSON path."""
    json_path, _ = write_results(name + ("_quick" if quick else ""), rows, command_line(script, argv), out_dir, extra)
    print(markdown_table(rows))
    print(f"written: {json_path}")
    return json_path


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
