"""The supervised capsule network (survey paper: Piciarelli et al. 2019/2021) as the number of known defect
images grows: image AUROC on the rest of the test split with 5 / 20 / 50 known defect images.

For each N, N test defect images are moved out of a copy of the category into a known-defects folder
(round-robin over the defect types, fixed seed; `reproduce_known_defects.split_known`) and capsnet trains on
train/good plus them. The capsule network decides per image, so only image-level metrics are reported.
Default: MTD (grayscale, 256²).

    python benchmarks/reproduce_capsnet.py            # full: MTD 256², N = 5/20/50
    python benchmarks/reproduce_capsnet.py --quick    # toy: small built-in dataset, N = 2/5/10, CPU
"""

from __future__ import annotations

import argparse
import sys

from reproduce_known_defects import split_known

from common import add_run_arguments, int_list, publish, resolve_data, run_config, staged_training

NAME = "reproduce_capsnet"
IMAGE_LEVEL = ("image_AUROC", "F1", "accuracy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-capsnet")
    parser.add_argument("--known", type=int_list, default=[5, 20, 50], help="numbers of known defect images")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    category = resolve_data(args)
    counts, epochs = ([2, 5, 10], 2) if args.quick else (args.known, args.epochs)

    rows = []
    for count in counts:
        copy, known = split_known(category, args.work / "data" / f"known-{count}", count)
        for seed in args.seeds:
            cfg = run_config(args, "capsnet", args.work / f"capsnet-k{count}-s{seed}", root=copy, category=None,
                             known_defects=known)
            for row in staged_training(cfg.updated({"train.seed": seed}), [epochs]):
                kept = {k: v for k, v in row.items() if not k.startswith("pixel_")}
                rows.append({"known_defects": count, "seed": seed, **kept})
    publish(NAME, rows, "reproduce_capsnet.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
