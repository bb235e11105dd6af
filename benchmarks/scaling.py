"""How GRD-Net's cost grows with the image size on the CPU: training and inference time per image, FLOPs and
peak memory at 64², 128², 256² and 512² (whole images, no tiling), with a log-log plot.

The network is the cpu profile's (`speed.RUNTIME_MODEL` plus `--set` overrides), untrained (speed does not depend
on the weights), RGB, batch `--batch-size`, `--threads` threads. Each size runs in its own process, so its peak
resident memory (`ru_maxrss`) is its own:
- training: the method's own `training_step` (synthetic anomalies, D, G and S updates) on a fixed random batch,
  steady state after two warm-up steps; an epoch of the MTD training split (`--epoch-images`) = that × images;
- inference: the model's forward pass (eval, no_grad), steady state;
- FLOPs per image of one forward pass and of one training step (PyTorch's flop counter), and the share of this
  CPU's fp32 matmul peak (a 2048² matmul on the same threads, measured here) that each reaches.

    python benchmarks/scaling.py                                    # 64..512, 2 threads (~3 minutes)
    python benchmarks/scaling.py --quick                            # 64², 128², toy widths, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS, fill_random_memory, int_list, parse_set, publish

NAME = "scaling"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int_list, default=[64, 128, 256, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="time per figure (default 8; 0.5 with --quick)")
    parser.add_argument("--epoch-images", type=int, default=762, help="images in an epoch (MTD's training split)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="model.key=value on top of the profile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: measure one size
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.5 if args.quick else 8.0)
    overrides = dict(parse_set(item) for item in args.sets)
    if args.one is not None:
        print(json.dumps(measure_size(args.one, args.batch_size, args.threads, seconds, overrides, args.quick)))
        return 0
    sizes = [64, 128] if args.quick else args.sizes
    rows = []
    for size in sizes:
        command = [sys.executable, __file__, "--one", str(size), "--threads", str(args.threads), "--batch-size",
                   str(args.batch_size), "--seconds", str(seconds), *[f"--set={item}" for item in args.sets]]
        if args.quick:
            command.append("--quick")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"size {size}: the measuring process failed:\n{done.stderr[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["epoch_s"] = round(row["train_ms_per_image"] * args.epoch_images / 1000, 1)
        rows.append(row)
        print(f"{size}²: {row}", flush=True)
    peak = matmul_peak_gflops(args.threads, 0.3 if args.quick else 3.0)
    for row in rows:
        row["train_share_of_peak"] = round(row["gflop_train_per_image"] * 1000 / row["train_ms_per_image"] / peak, 3)
        row["infer_share_of_peak"] = round(row["gflop_forward_per_image"] * 1000 / row["infer_ms_per_image"] / peak, 3)
    path = publish(NAME, rows, "scaling.py", argv, args.out, args.quick,
                   {"threads": args.threads, "batch_size": args.batch_size, "matmul_peak_gflops": round(peak, 1),
                    "epoch_images": args.epoch_images, "model": {**model_settings(), **overrides}})
    plot(rows, path.with_suffix(".png"))
    return 0


def model_settings() -> dict[str, Any]:
    from speed import RUNTIME_MODEL

    return dict(RUNTIME_MODEL)


def measure_size(size: int, batch_size: int, threads: int, seconds: float, overrides: dict[str, Any],
                 quick: bool) -> dict[str, Any]:
    """All figures of one image size (run in a process of its own: `ru_maxrss` is this size's peak)."""
    from grdnet.config import RunConfig
    from grdnet.models import build_model
    from grdnet.training.recipes import StepContext, build_recipe

    torch.set_num_threads(threads)
    baseline_mib = rss_mib()
    settings = {**model_settings(), **overrides, "synthesis.texture": "self", "synthesis.probability": 0.75}
    if quick:
        settings.update({"model.base_width": 4, "model.max_width": 8, "model.latent_channels": 4,
                         "model.segmenter_width": 4, "model.segmenter_levels": 2})
    cfg = RunConfig.for_model("grdnet", {"data": {"image_size": [size, size], "channels": 3},
                                         "train": {"device": "cpu", "batch_size": batch_size}}).updated(settings)
    torch.manual_seed(0)
    model = build_model(cfg)
    recipe = build_recipe(model, cfg, StepContext(device=torch.device("cpu")))
    images = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = {"image": images, "roi": torch.ones(batch_size, 1, size, size)}
    generator = torch.Generator().manual_seed(0)
    fill_random_memory(model, cfg)  # the profile's segmenter memory at its full size
    model.train()
    with FlopCounterMode(display=False) as counter:
        recipe.training_step(batch, generator)
    train_flops = counter.get_total_flops() / batch_size
    train_s = per_call(lambda: recipe.training_step(batch, generator), seconds, warmup=2)
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(images[:1])
        infer_s = per_call(lambda: model(images), seconds, warmup=2)
    return {"size": f"{size}²", "train_ms_per_image": round(1000 * train_s / batch_size, 2),
            "infer_ms_per_image": round(1000 * infer_s / batch_size, 2),
            "gflop_train_per_image": round(train_flops / 1e9, 3),
            "gflop_forward_per_image": round(counter.get_total_flops() / 1e9, 3),
            "peak_rss_MiB": round(rss_mib()), "peak_rss_over_imports_MiB": round(rss_mib() - baseline_mib)}


def per_call(call, seconds: float, warmup: int) -> float:
    """Mean seconds per call in steady state: `warmup` calls, then at least two and about `seconds` in all."""
    for _ in range(warmup):
        call()
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        call()
        count += 1
    return (time.perf_counter() - start) / count


def rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(threads: int, seconds: float) -> float:
    """fp32 GFLOP/s of a 2048² matmul on `threads` threads (this CPU's practical peak)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
        return 2 * 2048**3 / per_call(lambda: a @ b, seconds, warmup=2) / 1e9
    finally:
        torch.set_num_threads(previous)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log plot of training and inference ms per image against pixels per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [int(row["size"].rstrip("²")) for row in rows]
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for field, label in (("train_ms_per_image", "training step"), ("infer_ms_per_image", "inference")):
        axis.loglog(sides, [row[field] for row in rows], "o-", label=label, base=2)
    axis.loglog(sides, [rows[0]["infer_ms_per_image"] * (s / sides[0]) ** 2 for s in sides], ":", color="grey",
                label="∝ pixels", base=2)
    axis.set_xlabel("image side (px)")
    axis.set_ylabel("ms per image")
    axis.set_title("GRD-Net (cpu profile widths) on the CPU")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
