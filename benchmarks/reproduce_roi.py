"""GRD-Net's ROI experiment (papers/grd-net.txt §8.2): train without ROI, and with ROI applied to the focal loss's
target (`loss.roi_on=target`) or prediction (`roi_on=prediction`); test inside the test ROI (an image is a
defect only when its defect touches the ROI; pixel metrics inside the ROI).

`mean_score_<type>` columns give the mean image score of the defect types outside the ROI (and of good
images): a lower score there than without ROI means the model learnt to ignore defects outside the ROI.
Default: the built-in dataset, generated at --image-size (RGB, ROIs under `tiles/roi`, background_spot /
background_scratch outside the ROI). Any ROI dataset: --data-root/--category/--roi/--test-roi/--outside-types.

    python benchmarks/reproduce_roi.py                 # full: built-in dataset at 256², 100 epochs, on the GPU
    python benchmarks/reproduce_roi.py --quick         # toy: small built-in dataset, 1 epoch, CPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grdnet.builtin_dataset import BACKGROUND_DEFECT_TYPES

from common import (
    add_run_arguments,
    publish,
    quick_dataset,
    resolve_data,
    run_config,
    staged_training,
)

NAME = "reproduce_roi"
VARIANTS = {"no_roi": None, "roi_target": "target", "roi_prediction": "prediction"}
"""Training variant → loss.roi_on (None = trained without ROI)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-roi")
    parser.set_defaults(data_root=None, category=None, channels=3)
    parser.add_argument("--roi", type=Path, help="training ROI folder or file (default <category>/roi)")
    parser.add_argument("--test-roi", type=Path, help="test ROI folder or file (default: --roi)")
    parser.add_argument("--outside-types", default=",".join(BACKGROUND_DEFECT_TYPES),
                        help="comma-separated defect types lying outside the ROI")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    if args.data_root is None and not args.quick:
        args.data_root = quick_dataset(args.work, size=args.image_size)
    category = resolve_data(args)
    roi = args.roi or category / "roi"
    test_roi = args.test_roi or roi
    score_types = ["good", *args.outside_types.split(",")]
    epochs = 1 if args.quick else args.epochs

    rows = []
    for seed in args.seeds:
        for variant, roi_on in VARIANTS.items():
            cfg = run_config(args, "grdnet", args.work / f"{variant}-s{seed}",
                             roi=roi if roi_on else None, test_roi=test_roi)
            cfg = cfg.updated({"train.seed": seed, "loss.roi_on": roi_on})
            for row in staged_training(cfg, [epochs], use_test_rois=True, score_types=score_types):
                rows.append({"variant": variant, "seed": seed, **row})
    publish(NAME, rows, "reproduce_roi.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
