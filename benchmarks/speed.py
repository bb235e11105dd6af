"""Speed per model and precision mode: training and inference images/s, batch-1 latency, peak GPU memory,
FLOPs per image, share of the measured bf16 peak and end-to-end `grdnet predict` throughput.

Training images/s = the last Trainer epoch (synthesis included) of a short run; inference = model forward only
(eval, no_grad) on tensors already on the device. Modes: fp32, bf16 (autocast; on CPU only with --cpu-bf16),
compiled (torch.compile, default precision; skipped with a note when it fails or with --no-compile).

    python benchmarks/speed.py                  # MTD 256², on the GPU
    python benchmarks/speed.py --quick          # built-in data, 64 px, tiny widths, CPU (~1 s per figure)

`--runtimes` measures instead GRD-Net inference on the CPU through PyTorch, ONNX Runtime and OpenVINO (files
from `grdnet export`, each runtime's own call on prepared batches: `ExportedPredictor.run`), at the cpu
profile's widths and stages, batch 8, `--threads` threads, on whole images and on the cpu profile's 64² tiles
at stride 32, with the FLOPs per image and each runtime's largest score difference from PyTorch. Untrained weights: speed does not depend on them. Written as
`speed_runtimes.json` / `.md`.

    python benchmarks/speed.py --runtimes --threads 2 --image-size 256   # 5 s per figure
    python benchmarks/speed.py --runtimes --quick --seconds 0.3          # 128² (seconds)
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from grdnet.checkpoint import save_checkpoint
from grdnet.config import RunConfig
from grdnet.inference import Predictor
from grdnet.methods import get_method
from grdnet.models import build_model
from grdnet.predictions_io import list_images
from grdnet.profiles import TILE
from grdnet.runtime import autocast, resolve_device
from grdnet.training import Trainer

from common import add_run_arguments, fill_random_memory, publish, resolve_data, run_config

NAME = "speed"
MODELS = ("grdnet", "draem", "ganomaly")
BATCHES = (1, 8, 64)
RUNTIMES = ("pytorch", "onnxruntime", "openvino")
RUNTIME_BATCH = 8
RUNTIME_MODEL = {k: v for k, v in get_method("grdnet").profiles["cpu"].items() if k.startswith("model.")}
"""GRD-Net as the cpu profile builds it (widths 8 → 32, latent 16, segmenter 16, 3 encoder stages)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "bench-speed")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--cpu-bf16", action="store_true", help="also run the bf16 mode on a CPU")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    parser.add_argument("--seconds", type=float, default=None, help="time per throughput figure (default 1 quick, 5)")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--runtimes", action="store_true",
                        help="only GRD-Net CPU inference through PyTorch, ONNX Runtime and OpenVINO (see above)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every runtime (--runtimes)")
    args = parser.parse_args(argv)
    category = resolve_data(args)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    if args.runtimes:
        rows = runtime_rows(category, args.work / "runtimes", 128 if args.quick else args.image_size, args.threads, seconds)
        publish(f"{NAME}_runtimes", rows, "speed.py", argv, args.out, args.quick, {"threads": args.threads})
        return 0
    device = torch.device("cpu") if args.quick else resolve_device(args.device)
    peak = bf16_peak_flops(device)
    modes = ["fp32"] + (["bf16"] if device.type == "cuda" or args.cpu_bf16 else []) + ([] if args.no_compile else ["compiled"])

    rows = []
    for model in args.models.split(","):
        for mode in modes:
            cfg = run_config(args, model, args.work / f"{model}-{mode}").updated({
                "train.epochs": 2, "train.device": str(device), "train.seed": args.seeds[0],
                "train.precision": "bf16" if mode == "bf16" else "fp32" if mode == "fp32" else "auto",
                "train.compile": mode == "compiled"})
            rows.append({"model": model, "mode": mode,
                         **measure(cfg, mode, device, category, seconds, args.latency_calls, peak)})
    anomalib = compare_anomalib(rows, device, seconds)
    extra = {"bf16_peak_tflops": None if peak is None else round(peak / 1e12, 1), "anomalib": anomalib}
    print(f"anomalib: {anomalib}")
    publish(NAME, rows, "speed.py", argv, args.out, args.quick, extra)
    return 0


def measure(cfg, mode: str, device: torch.device, category: Path, seconds: float, calls: int,
            peak: float | None) -> dict[str, Any]:
    """Every figure of one model in one mode (a `note` instead when torch.compile fails)."""
    reset_peak(device)
    try:
        result = Trainer(cfg, show_progress=False, overwrite=True).fit()
    except Exception as error:  # torch.compile failures surface at the first step
        if mode != "compiled":
            raise
        return {"note": f"torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    row: dict[str, Any] = {"train_images_per_s": result.history[-1]["images_per_s"], "train_peak_MiB": peak_mib(device)}
    predictor = Predictor.from_checkpoint(result.last_checkpoint, device=str(device),
                                          precision="fp32" if mode == "fp32" else "bf16" if mode == "bf16" else "auto")
    model = predictor.model
    shape = (predictor.cfg.data.channels, *predictor.image_size)
    flops = forward_flops(model, shape, device)
    if mode == "compiled":
        predictor.model = model = torch.compile(model)

    def forward(batch: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad(), autocast(device, predictor.bf16):
                return model(batch)
        return call

    reset_peak(device)
    for size in BATCHES:
        row[f"infer_images_per_s_b{size}"] = round(size * rate(forward(torch.rand(size, *shape, device=device)), seconds, device), 1)
    latencies = latencies_ms(forward(torch.rand(1, *shape, device=device)), calls, device)
    row.update({
        "latency_ms_median": round(statistics.median(latencies), 3),
        "latency_ms_p99": round(sorted(latencies)[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "infer_peak_MiB": peak_mib(device),
        "gflops_forward_per_image": round(flops / 1e9, 4),
        "gflops_train_per_image": round(3 * flops / 1e9, 4),
        "share_of_bf16_peak": None if peak is None else round(flops * row["infer_images_per_s_b64"] / peak, 4),
    })
    test_images = len(list_images(category / "test"))
    start = time.perf_counter()
    predictor.predict_folder(category / "test", cfg.train.output_dir / "predict", overlays=False)
    row["predict_folder_images_per_s"] = round(test_images / (time.perf_counter() - start), 1)
    return row


def runtime_rows(category: Path, work: Path, size: int, threads: int, seconds: float) -> list[dict[str, Any]]:
    """Images/s at batch `RUNTIME_BATCH` per layout (whole image; the cpu profile's tiles at half-tile stride) and
    runtime (a runtime that is not installed gets a note), on `size`² RGB images. PyTorch runs on `threads`
    threads too; the process's thread count is restored after."""
    tile = TILE["cpu"]
    layouts = {"whole": (f"{size}² whole", {}),
               "tiles": (f"{size}² tiles {tile}² stride {tile // 2}",
                         {"data.tile_size": [tile, tile], "data.tile_stride": [tile // 2, tile // 2]})}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [row for name, (layout, tiling) in layouts.items()
                for row in layout_rows(category, work / name, size, layout, tiling, threads, seconds)]
    finally:
        torch.set_num_threads(previous)


def layout_rows(category: Path, folder: Path, size: int, layout: str, tiling: dict[str, Any], threads: int,
                seconds: float) -> list[dict[str, Any]]:
    """One row per runtime for an untrained GRD-Net (`RUNTIME_MODEL` with `tiling`) saved in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig.for_model("grdnet", {"data": {"root": str(category), "image_size": [size, size], "channels": 3},
                                         "train": {"device": "cpu", "output_dir": str(folder)}}).updated(
        {**RUNTIME_MODEL, **tiling})
    torch.manual_seed(0)
    model = build_model(cfg)
    fill_random_memory(model, cfg)  # the cpu profile's segmenter memory at its full size
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "threshold": 0.5}, folder / "best.pt")
    model = Predictor.from_checkpoint(folder / "best.pt", device="cpu").model
    batch = torch.rand(RUNTIME_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    region = torch.ones(RUNTIME_BATCH, 1, size, size)
    flops = forward_flops(model, (3, size, size), torch.device("cpu"))
    rows, expected = [], None
    for runtime in RUNTIMES:
        row: dict[str, Any] = {"model": "grdnet", "layout": layout, "runtime": runtime, "threads": threads}
        if runtime == "pytorch":
            call = partial(model, batch, region)
        elif (predictor := exported_predictor(runtime, folder / "best.pt", threads)) is not None:
            call = partial(predictor.run, batch.numpy(), region.numpy())
        else:
            rows.append({**row, "note": f"{runtime} is not installed"})
            continue
        with torch.no_grad():
            score = np.asarray(call()["score"])
            per_s = RUNTIME_BATCH * rate(call, seconds, torch.device("cpu"))
        expected = score if expected is None else expected
        rows.append({**row, f"images_per_s_b{RUNTIME_BATCH}": round(per_s, 1),
                     "gflops_forward_per_image": round(flops / 1e9, 4), "gflop_per_s": round(flops * per_s / 1e9, 1),
                     "max_abs_score_diff_vs_pytorch": float(np.abs(score - expected).max())})
    return rows


def exported_predictor(runtime: str, checkpoint: Path, threads: int) -> Any:
    """An `OnnxPredictor` / `OpenVinoPredictor` on a fresh export of `checkpoint`; None when `runtime` is not installed."""
    from grdnet.export import export_onnx, export_openvino

    if importlib.util.find_spec(runtime) is None:
        return None
    if runtime == "onnxruntime":
        from grdnet.onnx_predictor import OnnxPredictor

        return OnnxPredictor(export_onnx(checkpoint, parity=False).path, threads=threads)
    from grdnet.openvino_predictor import OpenVinoPredictor

    return OpenVinoPredictor(export_openvino(checkpoint, parity=False).path, threads=threads)


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    """FLOPs of one forward pass on one image (FlopCounterMode, fp32)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, *shape, device=device))
    return counter.get_total_flops()


def rate(call: Callable[[], Any], seconds: float, device: torch.device) -> float:
    """Calls per second in steady state: three warm-up calls, then repeat for about `seconds`."""
    for _ in range(3):
        call()
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
        if count % 8 == 0:
            sync(device)
    sync(device)
    return count / (time.perf_counter() - start)


def latencies_ms(call: Callable[[], Any], calls: int, device: torch.device) -> list[float]:
    """Per-call latency in ms (CUDA events on a GPU, perf_counter on a CPU), after warm-up."""
    for _ in range(5):
        call()
    sync(device)
    times = []
    for _ in range(calls):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            call()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
    return times


def bf16_peak_flops(device: torch.device, n: int = 8192, repeats: int = 50) -> float | None:
    """Measured bf16 matmul FLOP/s on a CUDA device (None on a CPU)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def compare_anomalib(rows: list[dict[str, Any]], device: torch.device, seconds: float) -> Any:
    """anomalib's Draem / Ganomaly forward images/s at batch 8 (256², 3 channels, fp32) and ours / theirs."""
    try:
        from anomalib.models.image.draem.torch_model import DraemModel
        from anomalib.models.image.ganomaly.torch_model import GanomalyModel
    except ImportError:
        return "anomalib not importable"
    models = {"draem": lambda: DraemModel(),
              "ganomaly": lambda: GanomalyModel(input_size=(256, 256), num_input_channels=3, n_features=64,
                                                latent_vec_size=100)}
    ours = {row["model"]: row.get("infer_images_per_s_b8") for row in rows if row["mode"] == "fp32"}
    report = {}
    for name, make in models.items():
        try:
            module = make().eval().to(device)
            batch = torch.rand(8, 3, 256, 256, device=device)

            def call() -> Any:
                with torch.no_grad():
                    return module(batch)
            theirs = 8 * rate(call, seconds, device)
        except Exception as error:  # anomalib's constructors and outputs change between releases
            report[name] = f"failed: {type(error).__name__}: {error}"[:200]
            continue
        report[name] = {"anomalib_images_per_s_b8": round(theirs, 1),
                        "ratio_ours_to_anomalib": None if ours.get(name) is None else round(ours[name] / theirs, 3)}
    return report


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


if __name__ == "__main__":
    sys.exit(main())
