"""GRD-Net vs DRAEM vs GANomaly at 10 / 35 / 100 epochs (papers/grd-net.txt, Tables 2–5): image and pixel
AUROC, AUPRO and training time per model and epoch budget.

GRD-Net and GANomaly are trained once and evaluated at each budget (exact resume). DRAEM's lr milestones are
fractions of `train.epochs`, so a resumed run would keep the first budget's milestones: it gets one run per
budget instead (its train_seconds are then per run, not cumulative). The paper uses MVTec AD (hazelnut,
metal nut, pill); the default here is MTD (grayscale, 256²): pass --data-root/--category/--channels 3 for MVTec.

    python benchmarks/reproduce_grdnet_tables.py              # full: MTD 256², epochs 10/35/100, on the GPU
    python benchmarks/reproduce_grdnet_tables.py --quick      # toy: small built-in dataset, epochs 1/2, CPU
"""

from __future__ import annotations

import argparse
import sys

from common import (
    add_run_arguments,
    int_list,
    publish,
    resolve_data,
    run_config,
    staged_training,
)

NAME = "reproduce_grdnet_tables"
MODELS = ("grdnet", "draem", "ganomaly")
PER_BUDGET_RUNS = {"draem"}
"""Models whose schedule depends on train.epochs: one fresh run per budget instead of staged resume."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-grdnet-tables")
    parser.add_argument("--epochs", type=int_list, default=[10, 35, 100], help="comma-separated epoch budgets")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    resolve_data(args)
    budgets = [1, 2] if args.quick else args.epochs

    rows = []
    for seed in args.seeds:
        for model in args.models.split(","):
            output = args.work / f"{model}-s{seed}"
            cfg = run_config(args, model, output).updated({"train.seed": seed})
            if model in PER_BUDGET_RUNS:
                stages = [row for b in budgets
                          for row in staged_training(cfg.updated({"train.output_dir": str(output / f"e{b}")}), [b])]
            else:
                stages = staged_training(cfg, budgets)
            rows += [{"seed": seed, **row} for row in stages]
    publish(NAME, rows, "reproduce_grdnet_tables.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
