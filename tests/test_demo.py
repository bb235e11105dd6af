"""The main job, cut to one epoch: dataset → GRD-Net training → test inside the ROI, through the CLI."""

import json
import math
import subprocess
import sys

from grdnet.config import RunConfig


def test_demo_runs_end_to_end_and_stores_its_recipe(tmp_path):
    output = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "grdnet.cli", "demo", "--output", str(output), "--epochs", "1", "--device", "cpu", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((output / "run" / "test" / "metrics.json").read_text())
    assert metrics["num_defect"] == 50 and metrics["num_defect_outside_roi"] == 20
    for name in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= metrics[name] <= 1.0 and math.isfinite(metrics[name])
    assert "image_AUROC" in done.stdout
    stored = RunConfig.from_yaml(output / "run" / "config.yaml")
    assert stored.synthesis.texture == "self" and stored.loss.roi_on == "target"
    assert stored.train.epochs == 1 and stored.train.seed == 0


def test_demo_budget_is_epochs_not_wall_time(tmp_path):
    """A slow or busy machine must reach the same result: no time budget that could cut training short."""
    from grdnet.demo import demo_config

    cfg = demo_config(tmp_path / "data", tmp_path)
    assert cfg.train.max_minutes is None and cfg.train.epochs == 29
