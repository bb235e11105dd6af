"""benchmarks/speed.py and benchmarks/accuracy.py in `--quick` mode (in-process, toy scale): fields and sane values."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs a benchmark script end to end

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder for both scripts, so the built-in dataset is written once."""
    return tmp_path_factory.mktemp("work")


def run(name: str, args: list[str], work: Path, out: Path, monkeypatch, result: str | None = None) -> dict:
    """`benchmarks/NAME.py --quick ARGS`; the JSON it wrote as `RESULT_quick.json` (RESULT defaults to NAME)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--work", str(work), "--out", str(out), *args]) == 0
    assert (out / f"{result or name}_quick.md").exists()
    return json.loads((out / f"{result or name}_quick.json").read_text())


def test_speed_quick_reports_throughput_latency_and_flops(work, tmp_path, monkeypatch):
    report = run("speed", ["--models", "grdnet", "--no-compile", "--seconds", "0.3"], work, tmp_path, monkeypatch)
    assert report["anomalib"] == "anomalib not importable" or isinstance(report["anomalib"], dict)
    assert report["bf16_peak_tflops"] is None
    (row,) = report["rows"]
    assert (row["model"], row["mode"]) == ("grdnet", "fp32")
    for key in ("train_images_per_s", "infer_images_per_s_b1", "infer_images_per_s_b8", "infer_images_per_s_b64",
                "predict_folder_images_per_s", "gflops_forward_per_image"):
        assert row[key] > 0, key
    assert row["gflops_train_per_image"] == pytest.approx(3 * row["gflops_forward_per_image"], rel=1e-3)
    assert 0 < row["latency_ms_median"] <= row["latency_ms_p99"]
    assert row["train_peak_MiB"] is row["infer_peak_MiB"] is row["share_of_bf16_peak"] is None


def test_speed_runtimes_quick_compares_the_three_runtimes(work, tmp_path, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    report = run("speed", ["--runtimes", "--seconds", "0.2", "--threads", "1"], work, tmp_path, monkeypatch,
                 result="speed_runtimes")
    assert report["threads"] == 1 and {row["threads"] for row in report["rows"]} == {1}
    assert torch.get_num_threads() == threads  # in-process: the tests after it keep their thread count
    rows = report["rows"]
    assert [(r["layout"], r["runtime"]) for r in rows] == [
        (layout, runtime) for layout in ("128² whole", "128² tiles 64² stride 32") for runtime in ("pytorch", "onnxruntime", "openvino")]
    flops = {}
    for row in rows:
        if "note" in row:  # a runtime that is not installed
            assert row["runtime"] != "pytorch" and row["note"].endswith("is not installed")
            continue
        assert row["images_per_s_b8"] > 0 and row["gflop_per_s"] > 0
        assert row["max_abs_score_diff_vs_pytorch"] < 1e-4
        flops.setdefault(row["layout"], set()).add(row["gflops_forward_per_image"])
    assert all(len(values) == 1 and min(values) > 0 for values in flops.values())  # one model per layout
    # 9 overlapping 64² tiles cover 2.25 times the pixels of one pass over the whole 128² image
    assert min(flops["128² tiles 64² stride 32"]) > 2 * min(flops["128² whole"])


def test_accuracy_quick_aggregates_seeds_per_model_and_budget(work, tmp_path, monkeypatch):
    report = run("accuracy", [], work, tmp_path, monkeypatch)
    rows = report["rows"]
    assert [(r["model"], r["budget"]) for r in rows] == [
        (m, b) for m in ("grdnet", "draem", "ganomaly") for b in ("1 epochs", "0.001 minutes")]
    assert len(report["runs"]) == 2 * len(rows)
    for row in rows:
        assert row["seeds"] == 2 and row["epochs_done_mean"] >= 1
        for metric in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "accuracy"):
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            assert math.isnan(mean) or 0.0 <= mean <= 1.0, (metric, mean)
            assert math.isnan(std) or std >= 0.0, (metric, std)
