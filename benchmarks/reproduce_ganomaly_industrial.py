"""GANomaly in industrial inspection (papers/ganomaly-industrial.txt, Tables I–III): image AUROC of GANomaly's
four scores — latent (image_AUROC), D1 = L1 and D2 = L2 distance of the discriminator features of x and x̂,
D3 = L1 distance of x and x̂ — after training with 0 / 3 / 6 / 9 % defect images mixed into the normal set.

The paper uses MVTec AD and does not state its image size; the default here is the Magnetic Tile Defect
set (grayscale) at 256², GANomaly's method defaults (15 epochs). Contamination images are moved out of the
test set, so each level is tested on the remaining images.

    python benchmarks/reproduce_ganomaly_industrial.py             # full: MTD 256², on the GPU
    python benchmarks/reproduce_ganomaly_industrial.py --quick     # toy: small built-in dataset, CPU
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

NAME = "reproduce_ganomaly_industrial"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-ganomaly-industrial")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--contamination", type=int_list, default=[0, 3, 6, 9], help="percentages, comma-separated")
    args = parser.parse_args(argv)
    resolve_data(args)
    epochs = 1 if args.quick else args.epochs

    rows = []
    for seed in args.seeds:
        for percent in args.contamination:
            cfg = run_config(args, "ganomaly", args.work / f"ganomaly-c{percent}-s{seed}", contamination=percent / 100)
            for row in staged_training(cfg.updated({"train.seed": seed}), [epochs]):
                rows.append({"contamination_pct": percent, "seed": seed, **row})
    publish(NAME, rows, "reproduce_ganomaly_industrial.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
