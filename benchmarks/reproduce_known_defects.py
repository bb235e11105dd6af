"""Training with 0 / 5 / 20 known defect images (docs/known_defects.md, papers/gan-noisy-training-data.txt):
test metrics of GRD-Net (and kdgan with --models grdnet,kdgan) per number of known defect images.

For each N, the category is copied under --work and N test defect images (with their `<stem>_mask.png`)
are moved from the copy's test set into a known-defects folder, spread over the defect types in turn and
drawn with a fixed seed; the model is tested on the rest. No ROI. Default: MTD (grayscale, 256²).

    python benchmarks/reproduce_known_defects.py             # full: MTD 256², on the GPU
    python benchmarks/reproduce_known_defects.py --quick     # toy: small built-in dataset, N = 0/2/4, CPU
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
from pathlib import Path

import numpy as np

from common import (
    add_run_arguments,
    int_list,
    publish,
    resolve_data,
    run_config,
    staged_training,
)

NAME = "reproduce_known_defects"


def split_known(category: Path, target: Path, count: int, seed: int = 0) -> tuple[Path, Path | None]:
    """Copy `category` (without its roi/) to `target/<name>` and move `count` test defects into `target/known`.

    Returns (the copy, the known-defects folder or None when `count` is 0). Images are taken round-robin over
    the defect types, each type's order shuffled with `seed`; every moved image's mask goes with it.
    """
    shutil.rmtree(target, ignore_errors=True)
    copy = target / category.name
    shutil.copytree(category, copy, ignore=lambda folder, names: ["roi"] if Path(folder) == category else [])
    if count == 0:
        return copy, None
    rng = np.random.default_rng(seed)
    pools = []
    for kind in sorted(p for p in (copy / "test").iterdir() if p.is_dir() and p.name != "good"):
        images = sorted(p for p in kind.iterdir() if p.is_file())
        pools.append([images[i] for i in rng.permutation(len(images))])
    picked = [p for p in itertools.chain(*itertools.zip_longest(*pools)) if p is not None][:count]
    if len(picked) < count:
        raise SystemExit(f"{category}: only {len(picked)} test defect images, cannot move {count}")
    known = target / "known"
    known.mkdir()
    for image in picked:
        name = f"{image.parent.name}_{image.stem}"
        shutil.move(image, known / f"{name}{image.suffix}")
        shutil.move(copy / "ground_truth" / image.parent.name / f"{image.stem}_mask.png", known / f"{name}_mask.png")
    return copy, known


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-known-defects")
    parser.add_argument("--known", type=int_list, default=[0, 5, 20], help="numbers of known defect images")
    parser.add_argument("--models", default="grdnet", help="comma-separated: grdnet, kdgan, draem")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    category = resolve_data(args)
    counts, epochs = ([0, 2, 4], 1) if args.quick else (args.known, args.epochs)

    rows = []
    for count in counts:
        copy, known = split_known(category, args.work / "data" / f"known-{count}", count)
        for seed in args.seeds:
            for model in args.models.split(","):
                cfg = run_config(args, model, args.work / f"{model}-k{count}-s{seed}",
                                 root=copy, category=None, known_defects=known)
                for row in staged_training(cfg.updated({"train.seed": seed}), [epochs]):
                    rows.append({"known_defects": count, "seed": seed, **row})
    publish(NAME, rows, "reproduce_known_defects.py", argv, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
