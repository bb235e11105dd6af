"""grdnet against anomalib 2.7.0 on the same CPU, data, image size, batch and thread count, in one run.

For each image size and model the runs interleave (ours, anomalib, ours) so that a change in the machine's
load shows up as a gap between our two runs instead of as a false ratio. Each run:
- trains `--epochs` epochs (the first is a warm-up; the figure is training images/s over the later epochs,
  training steps only: our `log.jsonl` epoch seconds, anomalib's epoch start to last batch);
- tests end to end: ours is the wall time of the `grdnet test` command (process start, imports, indexing,
  decoding, model, metrics, files written); anomalib's is `Engine.test` inside its already-started process
  (its imports and set-up are not counted, which favours anomalib);
- predicts a flat folder of the test images: `grdnet predict` (wall time of the command, overlays written)
  against `Engine.predict` (in process).

Data: a seeded subset of an MVTec-layout category (default the MTD magnetic tiles), copied into a fresh
folder with numbered PNG files (anomalib pairs masks with images by sort order), 3 channels.
anomalib runs in its own virtual environment made by benchmarks/setup_anomalib.sh; where it is missing
(or `--no-anomalib`) only our side runs and the table says why.

    bash benchmarks/setup_anomalib.sh                     # once: anomalib's virtual environment
    python benchmarks/side_by_side.py                     # MTD 96 train / 112 test, 128² and 256², 2 threads
    python benchmarks/side_by_side.py --quick             # our side only, built-in data, 64², toy widths (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from common import QUICK_MODELS, REPO, RESULTS, int_list, publish, quick_dataset, shared_data_dir

NAME = "side_by_side"
MODELS = ("draem", "ganomaly")
DEFAULT_VENV = Path.home() / ".cache" / "grdnet" / "anomalib-venv"
FIGURES = ("train_images_per_s", "test_images_per_s", "predict_images_per_s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=shared_data_dir() / "mtd")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--dtd", type=Path, default=shared_data_dir() / "dtd" / "images",
                        help="DRAEM's anomaly-source textures (both sides)")
    parser.add_argument("--sizes", type=int_list, default=[128, 256])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--n-train", type=int, default=96)
    parser.add_argument("--n-test", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per run (the first is a warm-up)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="our side's --precision for train, test and predict (auto: what grdnet picks on this "
                        "machine, bf16 on AMX CPUs for these wide networks; fp32: like for like with anomalib's default)")
    parser.add_argument("--anomalib-python", type=Path,
                        default=Path(os.environ.get("ANOMALIB_VENV", DEFAULT_VENV)) / "bin" / "python")
    parser.add_argument("--no-anomalib", action="store_true", help="our side only")
    parser.add_argument("--work", type=Path, default=Path("runs") / "bench-side-by-side")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="our side only, built-in data at 64², toy widths (CI)")
    parser.add_argument("--benchmarks-md", type=Path, default=None,
                        help="also write the table, machine and versions into this file's side-by-side section "
                             "(e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.no_anomalib, args.sizes, args.epochs = True, [64], 2
    models = args.models.split(",")
    note = None if args.no_anomalib else anomalib_problem(args.anomalib_python)
    if args.no_anomalib:
        note = "anomalib not run (--no-anomalib / --quick)"
    if note:
        print(f"note: {note}")

    data = prepare_data(args)
    torch.set_num_threads(args.threads)
    peaks = [matmul_peak_gflops()]
    bf16_peak = matmul_peak_gflops(dtype=torch.bfloat16)
    rows, runs = [], []
    for size in args.sizes:
        for model in models:
            gflops = our_forward_gflops(model, size, args.quick)
            sides = ("ours", "anomalib", "ours") if note is None else ("ours",)
            results = []
            for number, side in enumerate(sides):
                work = args.work / f"{model}-{size}-{number}-{side}"
                print(f"--- {model} {size}² run {number + 1}/{len(sides)}: {side}", flush=True)
                run = (run_ours if side == "ours" else run_anomalib)(args, model, size, data, work)
                if side == "ours":
                    run["gflops_forward_per_image"] = gflops
                print(json.dumps(run), flush=True)
                results.append(run)
            runs.extend(results)
            rows.extend(table_rows(model, size, results, note, statistics.median(peaks), bf16_peak))
    peaks.append(matmul_peak_gflops())
    extra = {"runs": runs, "note": note, "matmul_peak_gflops": peaks, "bf16_matmul_peak_gflops": bf16_peak, "settings": {
        "n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs, "batch_size": args.batch_size,
        "threads": args.threads, "precision": args.precision, "channels": 3, "data": "built-in" if args.quick else f"{args.data_root}/{args.category}"},
        "load": load_snapshot()}
    json_path = publish(NAME, rows, "side_by_side.py", argv, args.out, args.quick, extra)
    if args.benchmarks_md is not None:
        write_section(args.benchmarks_md, json.loads(json_path.read_text()), runs)
    return 0


# ---------------------------------------------------------------------------------------------- data


def prepare_data(args: argparse.Namespace) -> dict[str, Path]:
    """`root` + `category` of the MVTec-layout copy both sides read, and the flat `predict` folder."""
    if args.quick:
        category = quick_dataset(args.work, n_train=32, n_test_good=8, n_test_defect_per_type=3)
        root, name = category.parent, category.name
    else:
        root, name = args.work / "data", args.category
        category = numbered_subset(args.data_root / args.category, root / name, args.n_train, args.n_test)
    predict = args.work / "predict"
    if predict.exists():
        shutil.rmtree(predict)
    predict.mkdir(parents=True)
    for i, path in enumerate(sorted((category / "test").rglob("*.png"))):
        shutil.copyfile(path, predict / f"{i:04d}.png")
    return {"root": root, "category": Path(name), "predict": predict}


def numbered_subset(source: Path, target: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A seeded copy of `source` (MVTec layout) with `n_train` training and `n_test` test images as numbered PNG.

    Test images are drawn round-robin over the defect types (good included) so each type is represented;
    masks follow their images as `ground_truth/<type>/<NNN>_mask.png`. An existing copy is reused.
    """
    stamp = target / "subset.json"
    wanted = {"source": str(source), "n_train": n_train, "n_test": n_test, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return target
    if target.exists():
        shutil.rmtree(target)
    rng = np.random.default_rng(seed)

    def pick(folder: Path, count: int) -> list[Path]:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        return [files[i] for i in sorted(rng.permutation(len(files))[:count].tolist())]

    for i, path in enumerate(pick(source / "train" / "good", n_train)):
        _copy_png(path, target / "train" / "good" / f"{i:03d}.png")
    types = sorted(p.name for p in (source / "test").iterdir() if p.is_dir())
    shares = {t: n_test // len(types) + (k < n_test % len(types)) for k, t in enumerate(types)}
    for kind, count in shares.items():
        for i, path in enumerate(pick(source / "test" / kind, count)):
            _copy_png(path, target / "test" / kind / f"{i:03d}.png")
            if kind != "good":
                _copy_png(source / "ground_truth" / kind / f"{path.stem}_mask.png",
                          target / "ground_truth" / kind / f"{i:03d}_mask.png")
    stamp.write_text(json.dumps(wanted))
    return target


def _copy_png(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.save(target)


# ---------------------------------------------------------------------------------------------- our side


def run_ours(args: argparse.Namespace, model: str, size: int, data: dict[str, Path], work: Path) -> dict[str, Any]:
    """`grdnet train`, `grdnet test` and `grdnet predict` as separate commands; figures from their wall times."""
    if work.exists():
        shutil.rmtree(work)
    run_dir = work / "run"
    train = ["train", "--model", model, "--data-root", str(data["root"]), "--category", str(data["category"]),
             "--image-size", str(size), "--channels", "3", "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--device", "cpu", "--precision", args.precision,
             "--output", str(run_dir), "--quiet", "--profile", "paper"]  # paper: the method's own network, as anomalib's
    if model == "draem" and not args.quick:
        train += ["--texture", "folder", "--texture-dir", str(args.dtd)]
    if args.quick:
        train += [f"--set=model.{key}={value}" for key, value in QUICK_MODELS[model].items()]
    start = time.perf_counter()
    grdnet(train, args.threads)
    fit_seconds = time.perf_counter() - start
    bf16 = bool(json.loads((run_dir / "run.json").read_text()).get("bf16"))
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steady = log[1:] or log
    images = sum(r["images_per_s"] * r["seconds"] for r in steady)
    checkpoint = run_dir / "last.pt"

    start = time.perf_counter()
    grdnet(["test", str(checkpoint), "--device", "cpu", "--batch-size", str(args.batch_size),
            "--output", str(work / "test")], args.threads)
    test_seconds = time.perf_counter() - start
    n_test = len((work / "test" / "scores.csv").read_text().splitlines()) - 1
    metrics = json.loads((work / "test" / "metrics.json").read_text())

    start = time.perf_counter()
    grdnet(["predict", str(checkpoint), str(data["predict"]), "--device", "cpu", "--batch-size",
            str(args.batch_size), "--output", str(work / "predict")], args.threads)
    predict_seconds = time.perf_counter() - start
    n_predicted = len(list(data["predict"].iterdir()))
    return {
        "framework": "grdnet", "model": model, "size": size, "bf16": bf16, "epoch_seconds": [r["seconds"] for r in log],
        "train_images_per_s": round(images / sum(r["seconds"] for r in steady), 3), "fit_seconds": round(fit_seconds, 1),
        "n_test": n_test, "test_seconds": round(test_seconds, 2), "test_images_per_s": round(n_test / test_seconds, 3),
        "n_predicted": n_predicted, "predict_seconds": round(predict_seconds, 2),
        "predict_images_per_s": round(n_predicted / predict_seconds, 3),
        "metrics": {k: round(v, 4) for k, v in metrics.items() if k in ("image_AUROC", "pixel_AUROC")},
    }


def grdnet(arguments: list[str], threads: int) -> None:
    """Run one `grdnet` command of this checkout with `threads` intra-op threads; raise with its output on failure."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # cached bytecode, as installed
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])})
    done = subprocess.run([sys.executable, "-m", "grdnet", *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"grdnet {arguments[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


# ---------------------------------------------------------------------------------------------- anomalib's side


def anomalib_problem(python: Path) -> str | None:
    """Why anomalib cannot run from `python` (None when it imports)."""
    if not python.exists():
        return f"anomalib not run: {python} missing (make it with bash benchmarks/setup_anomalib.sh)"
    check = subprocess.run([str(python), "-c", "import anomalib, torchvision, lightning"], capture_output=True, text=True)
    if check.returncode != 0:
        return f"anomalib not run: it does not import in {python} ({check.stderr.strip().splitlines()[-1][:200]})"
    return None


def run_anomalib(args: argparse.Namespace, model: str, size: int, data: dict[str, Path], work: Path) -> dict[str, Any]:
    """benchmarks/anomalib_side.py in anomalib's environment on the same data, size, batch and threads."""
    if work.exists():
        shutil.rmtree(work)
    spec = {"root": str(data["root"].resolve()), "category": str(data["category"]), "model": model, "size": size,
            "epochs": args.epochs, "batch_size": args.batch_size, "threads": args.threads,
            "dtd": str(args.dtd.resolve()), "predict_dir": str(data["predict"].resolve()), "work": str(work.resolve())}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)})
    done = subprocess.run([str(args.anomalib_python), str(REPO / "benchmarks" / "anomalib_side.py"), json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"framework": "anomalib", "model": model, "size": size,
                "error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------------------------------------- table


def table_rows(model: str, size: int, results: list[dict[str, Any]], note: str | None,
               peak_gflops: float, bf16_peak_gflops: float | None = None) -> list[dict[str, Any]]:
    """One row per figure: our runs, their mean, anomalib's, ours / anomalib (higher is better), the FLOPs per
    image (training ≈ 3 × the inference forward: forward, and backward at twice its cost) and the share of
    the measured matmul peak that each side's rate reaches: fp32 `peak_gflops`, or `bf16_peak_gflops` for our
    runs in bf16 (what `--precision auto` picks on AMX CPUs; anomalib runs fp32)."""
    ours = [r for r in results if r["framework"] == "grdnet"]
    theirs = next((r for r in results if r["framework"] == "anomalib"), None)
    rows = []
    for figure in FIGURES:
        mean = statistics.fmean(r[figure] for r in ours)
        factor = 3 if figure.startswith("train") else 1
        our_gflops = factor * ours[0].get("gflops_forward_per_image", float("nan"))
        row: dict[str, Any] = {"model": model, "size": size, "figure": figure.replace("_", " "),
                               "grdnet runs": " / ".join(str(round(r[figure], 2)) for r in ours),
                               "grdnet": round(mean, 2)}
        if theirs is None:
            row.update({"anomalib": "—", "ratio": "—"})
        elif "error" in theirs:
            row.update({"anomalib": f"failed: {theirs['error']}", "ratio": "—"})
        else:
            row.update({"anomalib": round(theirs[figure], 2), "ratio": f"{mean / theirs[figure]:.2f}×"})
        row["GFLOP/image grdnet"] = float(f"{our_gflops:.3g}")
        in_bf16 = bool(ours[0].get("bf16") and bf16_peak_gflops)
        our_peak = bf16_peak_gflops if in_bf16 else peak_gflops
        row["share of peak grdnet"] = f"{our_gflops * mean / our_peak:.1%}" + (" (bf16)" if in_bf16 else "")
        if theirs is not None and "error" not in theirs:
            their_gflops = factor * theirs["gflops_forward_per_image"]
            row["GFLOP/image anomalib"] = float(f"{their_gflops:.3g}")
            row["share of peak anomalib"] = f"{their_gflops * theirs[figure] / peak_gflops:.1%}"
        rows.append(row)
    return rows


def our_forward_gflops(model: str, size: int, quick: bool) -> float:
    """FLOPs (in G) of our inference forward (`Predictor`'s network) on one 3-channel `size`² image."""
    from grdnet.config import RunConfig
    from grdnet.models import build_model
    from grdnet.tiling import wrap_for_inference

    sections: dict[str, Any] = {"data": {"image_size": [size, size], "channels": 3}}
    if quick:
        sections["model"] = QUICK_MODELS[model]
    cfg = RunConfig.for_model(model, sections)
    network = wrap_for_inference(build_model(cfg), cfg).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Measured GFLOP/s of an n×n matmul in `dtype` with this process's thread count (best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return round(2 * n**3 / best / 1e9, 1)


SECTION_START, SECTION_END = "<!-- side_by_side:start -->", "<!-- side_by_side:end -->"


def write_section(path: Path, payload: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Replace (or append) the marked side-by-side section of `path` with the run's table, machine and versions."""
    from common import markdown_table

    anomalib = next((r["versions"] for r in runs if r.get("framework") == "anomalib" and "versions" in r), None)
    machine = payload["machine"]
    lines = [
        SECTION_START,
        f"Command: `{payload['command']}`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine['cpu_cores']} cores, {machine['platform']}; grdnet side: "
        + ", ".join(f"{k} {v}" for k, v in machine.items() if k not in ("cpu_cores", "platform", "gpu"))
        + (f"; anomalib side: anomalib {anomalib['anomalib']}, torch {anomalib['torch']}" if anomalib else "")
        + f". Settings: {json.dumps(payload['settings'])}. Measured fp32 matmul peak (2048², same threads): "
        + " / ".join(str(p) for p in payload["matmul_peak_gflops"]) + " GFLOP/s (start / end)"
        + (f"; bf16 {payload['bf16_matmul_peak_gflops']} GFLOP/s" if payload.get("bf16_matmul_peak_gflops") else "")
        + ".",
        f"Load during the run: load average {', '.join(f'{x:.1f}' for x in payload['load']['loadavg'])} at the end; "
        "busiest other processes: " + "; ".join(f"`{line}`" for line in payload["load"]["busiest"][:5]) + ".",
        "",
        markdown_table(payload["rows"]),
        "",
        payload["note"] or "",
        SECTION_END,
    ]
    text = path.read_text() if path.exists() else ""
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + "\n".join(lines) + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)


def load_snapshot() -> dict[str, Any]:
    """The machine's load averages and the other busiest processes at the end of the run (what else was running)."""
    top = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return {"loadavg": os.getloadavg(), "busiest": [line.strip()[:160] for line in top.splitlines()[1:9]]}


if __name__ == "__main__":
    sys.exit(main())
