"""benchmarks/scaling.py --quick: one process per size, FLOPs that grow with the pixels, the table and the plot."""

import json

import pytest

from support import load_benchmark

pytestmark = pytest.mark.slow  # runs the benchmark script end to end (two child processes)


def test_quick_scaling_measures_each_size_in_its_own_process(monkeypatch, tmp_path):
    scaling = load_benchmark("scaling", monkeypatch)
    assert scaling.main(["--quick", "--seconds", "0.05", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scaling_quick.json").read_text())
    small, large = result["rows"]
    assert (small["size"], large["size"]) == ("64²", "128²")
    # a fully convolutional network: 4× the pixels, 4× the FLOPs (forward and training step)
    assert large["gflop_forward_per_image"] / small["gflop_forward_per_image"] == pytest.approx(4.0, rel=0.05)
    assert large["gflop_train_per_image"] / small["gflop_train_per_image"] == pytest.approx(4.0, rel=0.05)
    assert large["gflop_train_per_image"] > large["gflop_forward_per_image"]  # D, G and S updates on top
    for row in result["rows"]:
        assert row["train_ms_per_image"] > 0 and row["infer_ms_per_image"] > 0 and row["peak_rss_MiB"] > 100
        assert 0 < row["infer_share_of_peak"] < 2 and row["epoch_s"] == pytest.approx(row["train_ms_per_image"] * 0.762, rel=0.02)
    assert (tmp_path / "scaling_quick.md").exists() and (tmp_path / "scaling_quick.png").stat().st_size > 1000
