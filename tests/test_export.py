import csv
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from grdnet.checkpoint import checkpoint_file, sha256_file
from grdnet.errors import ConfigError
from grdnet.export import export_onnx
from grdnet.inference import Predictor
from grdnet.onnx_predictor import OnnxPredictor
from grdnet.training import Trainer

from support import assert_maps_close


@pytest.fixture(scope="module")
def trained(builtin_category, tmp_path_factory):
    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path_factory.mktemp("run"), epochs=1)
    return Trainer(cfg, show_progress=False).fit()


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return export_onnx(trained.run_dir, tmp_path_factory.mktemp("onnx") / "model.onnx", dynamic_size=True)


def test_export_reports_parity_on_real_images(exported):
    assert exported.path.is_file() and exported.dynamic_size
    assert "images from" in exported.parity_inputs
    assert set(exported.parity) == {"anomaly_map", "smoothed_map", "score"}
    assert max(exported.parity.values()) < 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch(trained, exported, batch):
    torch_predictor = Predictor.from_checkpoint(trained.run_dir, device="cpu")
    onnx_predictor = OnnxPredictor(exported.path)
    images = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    expected = torch_predictor.predict(images)
    got = onnx_predictor.predict(images.numpy())
    for name in ("anomaly_map", "smoothed_map", "score"):
        assert getattr(got, name).shape == getattr(expected, name).shape
        assert_maps_close(getattr(got, name), getattr(expected, name))
    np.testing.assert_array_equal(got.decision, got.score >= onnx_predictor.threshold)


def test_dynamic_size_runs_at_another_size(trained, exported):
    model = Predictor.from_checkpoint(trained.run_dir, device="cpu").model
    images = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images)
    region = np.ones((2, 1, 96, 128), np.float32)
    got = OnnxPredictor(exported.path).session.run(["smoothed_map", "score"], {"image": images.numpy(), "region": region})
    assert_maps_close(got[0], expected["smoothed_map"].numpy())
    assert_maps_close(got[1], expected["score"].numpy())


def test_metadata_round_trip(trained, exported):
    state = torch.load(checkpoint_file(trained.run_dir), weights_only=True)
    meta = {p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}
    assert meta["grdnet.checkpoint_sha256"] == sha256_file(checkpoint_file(trained.run_dir))
    assert json.loads(meta["grdnet.config"]) == state["config"]
    predictor = OnnxPredictor(exported.path)
    assert predictor.threshold == pytest.approx(state["threshold"])
    assert predictor.image_size == (64, 64) and predictor.channels == 3
    assert predictor.config["scoring"]["smoothing_kernel"] == 7


def test_fixed_size_export_and_drae_refuses_dynamic_size(trained, tmp_path):
    fixed = export_onnx(trained.best_checkpoint, tmp_path / "fixed.onnx", parity=False)
    dims = onnx.load(str(fixed.path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    state = torch.load(trained.best_checkpoint, weights_only=True)
    state["config"]["model"]["bottleneck"] = "drae"
    state["config"]["model"]["latent_dim"] = 16
    from grdnet.checkpoint import save_checkpoint
    from grdnet.config import RunConfig
    from grdnet.models import build_model

    state["model"] = build_model(RunConfig.from_dict(state["config"])).state_dict()
    state.pop("format")
    save_checkpoint(state, tmp_path / "drae.pt")
    with pytest.raises(ConfigError, match="only runs at 64x64"):
        export_onnx(tmp_path / "drae.pt", tmp_path / "drae.onnx", dynamic_size=True)


def test_cli_export_and_onnxruntime_predict(trained, builtin_category, tmp_path):
    out = tmp_path / "cli.onnx"
    run = subprocess.run([sys.executable, "-m", "grdnet", "export", str(trained.best_checkpoint), "--format", "onnx",
                          "--output", str(out), "--opset", "17"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "parity vs PyTorch" in run.stdout and "(ok)" in run.stdout
    folder = builtin_category / "test" / "good"
    run = subprocess.run([sys.executable, "-m", "grdnet", "predict", str(out), str(folder), "--backend", "onnxruntime",
                          "--output", str(tmp_path / "pred"), "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(rows) == len(records) == len(list(folder.glob("*.png")))
    assert [r["path"] for r in rows] == [r["path"] for r in records]
    assert all(json.loads(row["regions"]) == record["regions"] for row, record in zip(rows, records))
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == len(rows)


def test_parity_runs_the_model_in_eval_mode_after_export(tmp_path):
    """The exporter restores the traced wrapper's mode recursively; BatchNorm must stay on running statistics."""
    import torch

    from grdnet.export import _inference_graph

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)).eval()

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, region):
            return {"anomaly_map": self.net(x).mean(1, keepdim=True)}

    graph = _inference_graph(Outputs(), ["anomaly_map"])
    torch.onnx.export(graph, (torch.rand(2, 1, 8, 8), torch.ones(2, 1, 8, 8)), str(tmp_path / "m.onnx"), dynamo=False)
    assert not model.training and not model[1].training


def test_parity_images_come_from_the_test_split_without_opening_training_files(make_config, builtin_category, monkeypatch):
    from pathlib import Path

    from PIL import Image

    from grdnet.export import parity_inputs

    opened, original = [], Image.open

    def recording(file, *args, **kwargs):
        opened.append(Path(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording)
    images, description = parity_inputs(make_config(), count=3)
    assert images.shape == (3, 3, 64, 64) and description == f"3 images from {builtin_category}"
    assert opened and not [p for p in opened if "train" in p.relative_to(builtin_category).parts]
