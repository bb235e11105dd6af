import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


@pytest.mark.slow
def test_quick_load_test_runs_clean(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--requests", "120", "--max-seconds", "120",
                             "--output", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "load_test.json").read_text())
    assert report["ok"] == report["sent"] == 120 and report["errors"] == 0 and report["throughput_rps"] > 0
    assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"] > 0
    metrics = report["server_metrics"]
    assert metrics["inspections"] == 120 and metrics["max_batch_size"] > 1  # 16 clients in flight share batches
    assert "| throughput (req/s) |" in (tmp_path / "load_test.md").read_text()


def test_load_test_fails_when_the_server_cannot_start(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing.pt"), "--images", str(tmp_path),
                             "--output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "checkpoint not found" in result.stderr
    assert not (tmp_path / "load_test.json").exists()
