"""GRD-Net on the Magnetic Tile Defect set at 256²: image/pixel AUROC and AUPRO after 10, 35 and 100 epochs,
training time and images/s (issue: first real numbers). Needs a CUDA GPU for the full run.

    python benchmarks/grdnet_mtd.py                      # full: MTD, 256², epochs 10/35/100, on the GPU
    python benchmarks/grdnet_mtd.py --quick              # toy: built-in dataset, 64², epochs 1/2, CPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grdnet.config import RunConfig

from common import RESULTS, publish, quick_dataset, shared_data_dir, staged_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=shared_data_dir() / "mtd")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--epochs", default="10,35,100", help="comma-separated epoch budgets")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-grdnet-mtd"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="toy scale on the built-in dataset (CI)")
    args = parser.parse_args(argv)

    if args.quick:
        category, budgets = quick_dataset(args.work), [1, 2]
        data = {"root": str(category), "image_size": [64, 64], "channels": 3}
        model = {"base_width": 8, "max_width": 16, "latent_channels": 8, "segmenter_width": 8, "segmenter_levels": 3}
        train = {"batch_size": 16, "lr": 1e-3, "device": "cpu"}
        scoring = {"smoothing_kernel": 7}
    else:
        budgets = [int(e) for e in args.epochs.split(",")]
        data = {"root": str(args.data_root), "category": args.category, "image_size": [args.image_size] * 2, "channels": 1}
        model, scoring = {}, {}
        train = {"batch_size": args.batch_size, "device": args.device}
    cfg = RunConfig.for_model("grdnet", {
        "data": data, "model": model, "scoring": scoring,
        "train": {**train, "output_dir": str(args.work / "grdnet")},
    })
    rows = staged_training(cfg, budgets)
    publish("grdnet_mtd", rows, "grdnet_mtd.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
