"""Load test for `grdnet serve`: start it on 127.0.0.1, send N requests with C in flight, report throughput.

    python benchmarks/load_test.py CHECKPOINT [--requests 2000] [--concurrency 16] [--images DIR]
    python benchmarks/load_test.py --quick          # trains a tiny model on the built-in data set, ~200 requests

Writes `load_test.json` and `load_test.md` to --output (default benchmarks/results/); exits 1 when any
request failed or the run hit --max-seconds before sending them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"
RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def train_tiny(workdir: Path) -> tuple[Path, Path]:
    """A 1-epoch, very narrow GRD-Net on a small built-in data set → (checkpoint, folder of test images)."""
    from grdnet.builtin_dataset import make_builtin_dataset
    from grdnet.config import RunConfig
    from grdnet.training import Trainer

    category = make_builtin_dataset(workdir / "data", seed=0, n_train=12, n_test_good=4, n_test_defect_per_type=1)
    cfg = RunConfig.from_dict({
        "data": {"root": str(category), "image_size": [64, 64], "val_fraction": 0.25},
        "model": {"base_width": 8, "max_width": 16, "latent_channels": 8, "segmenter_width": 8, "segmenter_levels": 3},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu", "output_dir": str(workdir / "run")},
        "scoring": {"smoothing_kernel": 7},
    })
    return Trainer(cfg, show_progress=False, overwrite=True).fit().best_checkpoint, category / "test"


def load_images(folder: Path, limit: int = 64) -> list[bytes]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))[:limit]
    if not paths:
        sys.exit(f"error: {folder}: no images; pass --images DIR with PNG/JPEG/BMP/TIFF files")
    return [p.read_bytes() for p in paths]


def start_server(checkpoint: Path, port: int, max_batch: int, max_wait_ms: float, timeout: float) -> subprocess.Popen:
    """Run `grdnet serve` in a subprocess and wait until /health answers."""
    command = [sys.executable, "-m", "grdnet", "serve", str(checkpoint), "--host", HOST, "--port", str(port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: the server exited with code {server.returncode}: {server.stderr.read().strip()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_server(server)
    sys.exit(f"error: the server did not answer /health within {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def send_all(url: str, images: list[bytes], requests: int, concurrency: int, max_seconds: float) -> dict:
    """Send `requests` POSTs with `concurrency` in flight, stopping early after `max_seconds`."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await client.post(url, content=images[i % len(images)], headers={"content-type": "image/png"})
                key = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                key = type(error).__name__
            if key is None:
                latencies.append((time.perf_counter() - start) * 1000.0)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    sent = len(latencies) + sum(errors.values())
    values = np.asarray(latencies) if latencies else np.asarray([np.nan])
    return {
        "requested": requests, "sent": sent, "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
        "seconds": round(elapsed, 3), "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms": {"p50": round(float(np.percentile(values, 50)), 2), "p99": round(float(np.percentile(values, 99)), 2),
                       "mean": round(float(values.mean()), 2)},
        "timed_out": sent < requests,
    }


def markdown(report: dict) -> str:
    server = report["server_metrics"]
    rows = [("requests sent / ok / errors", f"{report['sent']} / {report['ok']} / {report['errors']}"),
            ("concurrency", report["concurrency"]), ("wall time (s)", report["seconds"]),
            ("throughput (req/s)", report["throughput_rps"]), ("client latency p50 (ms)", report["latency_ms"]["p50"]),
            ("client latency p99 (ms)", report["latency_ms"]["p99"]), ("server batches", server.get("batches")),
            ("server mean / max batch size", f"{server.get('mean_batch_size')} / {server.get('max_batch_size')}")]
    lines = [f"# grdnet serve load test ({report['checkpoint']})", "", "| measure | value |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="Checkpoint or run folder (not needed with --quick).")
    parser.add_argument("--images", type=Path, help="Folder of images to send (default: the built-in data set's test images).")
    parser.add_argument("--requests", type=int, help="Requests to send (default 2000, 200 with --quick).")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="Stop sending after this long.")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="Train a tiny model and send ~200 requests.")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Folder for load_test.json and load_test.md.")
    args = parser.parse_args(argv)
    if args.checkpoint is None and not args.quick:
        parser.error("pass a CHECKPOINT, or --quick to train a tiny one")
    requests = args.requests or (200 if args.quick else 2000)

    with tempfile.TemporaryDirectory(prefix="grdnet-load-") as tmp:
        checkpoint, test_images = args.checkpoint, args.images
        if checkpoint is None:
            checkpoint, builtin_test = train_tiny(Path(tmp))
            test_images = test_images or builtin_test
        elif test_images is None:
            from grdnet.builtin_dataset import make_builtin_dataset

            test_images = make_builtin_dataset(Path(tmp) / "data", seed=0, n_train=1, n_test_good=8, n_test_defect_per_type=2) / "test"
        images = load_images(test_images)
        port = free_port()
        server = start_server(checkpoint, port, args.max_batch, args.max_wait_ms, args.startup_timeout)
        try:
            report = asyncio.run(send_all(f"http://{HOST}:{port}/inspect", images, requests, args.concurrency, args.max_seconds))
            report["server_metrics"] = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10.0).json()
        finally:
            stop_server(server)
    report.update({"checkpoint": "tiny (--quick)" if args.checkpoint is None else str(args.checkpoint),
                   "concurrency": args.concurrency, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                   "cpu_count": os.cpu_count()})
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "load_test.json").write_text(json.dumps(report, indent=2))
    (args.output / "load_test.md").write_text(markdown(report))
    print(markdown(report))
    failed = report["errors"] > 0 or report["timed_out"]
    if failed:
        print(f"FAILED: {report['errors']} errors {report['error_kinds']}, sent {report['sent']} of {requests}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
