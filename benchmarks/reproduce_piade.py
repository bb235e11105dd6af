"""The deep pyramidal autoencoder (survey paper: Mishra et al. 2020, PIADE) and what its two ideas add:
the pyramid of latents and the perceptual loss, each removed in turn, on one MVTec-layout category.

Variants: `pyramid_perceptual` (the method: 3 latent levels, MSE + perceptual loss), `pyramid_mse` (no
perceptual loss), `single_level_perceptual` (one latent, at the deepest level only). Same split, seed and
budget for all; no ROI. Default: MTD (grayscale, 256²).

    python benchmarks/reproduce_piade.py            # full: MTD 256², 100 epochs
    python benchmarks/reproduce_piade.py --quick    # toy: small built-in dataset, 1 epoch, CPU
"""

from __future__ import annotations

import argparse
import sys

from common import add_run_arguments, publish, resolve_data, run_config, staged_training

NAME = "reproduce_piade"
VARIANTS = {
    "pyramid_perceptual": {},
    "pyramid_mse": {"loss.w_perceptual": 0.0},
    "single_level_perceptual": {"model.pyramid_levels": 1},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-piade")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--base-width", type=int, help="model.base_width (max_width 8× it); default: piade's 64 / 512")
    args = parser.parse_args(argv)
    category = resolve_data(args)
    epochs = 1 if args.quick else args.epochs
    widths = {"model.base_width": args.base_width, "model.max_width": args.base_width * 8} if args.base_width else {}

    rows = []
    for variant, settings in VARIANTS.items():
        for seed in args.seeds:
            cfg = run_config(args, "piade", args.work / f"{variant}-s{seed}", root=category, category=None)
            for row in staged_training(cfg.updated({"train.seed": seed, **widths, **settings}), [epochs]):
                rows.append({"variant": variant, "seed": seed, **row})
    publish(NAME, rows, "reproduce_piade.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
