"""capsnet: capsule maths, routing, margin loss, class-balanced supervised training, CLI train / test / predict."""

import csv
import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import torch

from grdnet import losses
from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.errors import ConfigError
from grdnet.models import CapsNet, build_model
from grdnet.models.capsnet import DynamicRouting, squash
from grdnet.training import Trainer
from grdnet.training.recipes.capsnet import CapsNetRecipe

TINY_MODEL = {"base_width": 8, "max_width": 16, "capsule_types": 4}


@pytest.fixture(scope="module")
def known_dir(tmp_path_factory):
    """Six defect images of another built-in data set (so none is a test image), masks beside them."""
    other = make_builtin_dataset(tmp_path_factory.mktemp("other"), seed=1, n_train=1, n_test_good=1,
                                 n_test_defect_per_type=2)
    folder = tmp_path_factory.mktemp("known")
    defects = sorted(p for p in (other / "test").glob("*/*.png") if p.parent.name not in ("good", "contamination"))
    for image in defects[:6]:
        shutil.copy(image, folder / f"{image.parent.name}_{image.stem}.png")
    return folder


def capsnet_config(make_config, known_dir, **train) -> RunConfig:
    base = make_config("capsnet", **train).to_dict()
    base["data"].update(known_defects=str(known_dir) if known_dir else None, roi=None)
    return RunConfig.for_model("capsnet", {**base, "model": TINY_MODEL, "loss": {}, "synthesis": {}})


def small_index(cfg: RunConfig, n_train: int = 16):
    index = index_dataset(cfg.data)
    return dataclasses.replace(index, train=index.train[:n_train], validation=index.validation[:4])


def test_squash_keeps_direction_and_maps_length_below_one():
    s = torch.tensor([[3.0, 4.0], [0.0, 0.1], [0.0, 0.0]])
    v = squash(s)
    torch.testing.assert_close(v.norm(dim=-1), torch.tensor([25 / 26, 0.01 / 1.01, 0.0]))
    torch.testing.assert_close(v[0] / v[0].norm(), torch.tensor([0.6, 0.8]))


def test_routing_couples_inputs_to_the_output_they_agree_with():
    """Two inputs predict class 1 strongly and alike, class 0 weakly: routing raises class 1's length with iterations."""
    one = DynamicRouting(num_inputs=2, in_dim=1, out_dim=2, iterations=1)
    three = DynamicRouting(num_inputs=2, in_dim=1, out_dim=2, iterations=3)
    weight = torch.tensor([[[[0.3], [0.0]], [[2.0], [0.0]]], [[[0.0], [-0.3]], [[2.0], [0.0]]]])
    with torch.no_grad():
        one.weight.copy_(weight)
        three.weight.copy_(weight)
    u = torch.ones(1, 2, 1)
    first, routed = one(u).norm(dim=-1), three(u).norm(dim=-1)
    assert routed[0, 1] > first[0, 1] and routed[0, 0] < first[0, 0]


def test_forward_shapes_ranges_and_uniform_map():
    model = CapsNet(1, (64, 96), base_width=4, max_width=8, capsule_types=2).eval()
    x = torch.rand(3, 1, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out["class_lengths"].shape == (3, 2)
    assert torch.all((out["class_lengths"] >= 0) & (out["class_lengths"] < 1))
    torch.testing.assert_close(out["score"], out["class_lengths"][:, 1])
    assert out["anomaly_map"].shape == (3, 1, 64, 96)
    torch.testing.assert_close(out["anomaly_map"].amax(dim=(1, 2, 3)), out["score"])
    torch.testing.assert_close(out["anomaly_map"].amin(dim=(1, 2, 3)), out["score"])


def test_margin_loss_matches_the_formula():
    lengths = torch.tensor([[0.95, 0.05], [0.5, 0.3]])
    labels = torch.tensor([0, 1])
    # first: both within margins → 0; second: class 1 present 0.3 → (0.9 − 0.3)², class 0 absent 0.5 → 0.5·0.4²
    expected = (0.0 + (0.6**2 + 0.5 * 0.4**2)) / 2
    assert losses.margin_loss(lengths, labels).item() == pytest.approx(expected)


def test_config_defaults_options_and_no_tiling(make_config, known_dir):
    cfg = capsnet_config(make_config, known_dir)
    model = build_model(cfg)
    assert isinstance(model, CapsNet) and model.routing.iterations == 3 and model.capsule_types == 4
    assert RunConfig.for_model("capsnet").train.lr == 1e-3
    with pytest.raises(ConfigError, match="routing_iteration"):
        cfg.updated({"model.routing_iteration": 2})
    with pytest.raises(ConfigError, match="cannot be tiled"):
        cfg.updated({"data.tile_size": (64, 64), "data.image_size": (128, 128)})


def test_training_without_known_defects_is_a_one_line_error(make_config):
    cfg = capsnet_config(make_config, None, epochs=1)
    with pytest.raises(ConfigError, match="needs defect images; pass --known-defects"):
        Trainer(cfg, show_progress=False, index=small_index(cfg)).fit()


def test_batches_are_class_balanced_and_training_separates_the_classes(make_config, known_dir, monkeypatch):
    cfg = capsnet_config(make_config, known_dir, epochs=10, batch_size=8, val_every=10)
    seen = []
    step = CapsNetRecipe.training_step

    def spy(self, batch, generator):
        seen.append((len(batch["image"]), len(batch["known_image"])))
        return step(self, batch, generator)

    monkeypatch.setattr(CapsNetRecipe, "training_step", spy)
    result = Trainer(cfg, show_progress=False, index=small_index(cfg)).fit()
    assert seen and all(normal == known == 8 for normal, known in seen)  # 6 known images, 8 drawn per batch
    first, last = result.history[0], result.history[-1]
    assert last["loss_loss"] < first["loss_loss"]
    assert last["loss_defect_length"] - last["loss_normal_length"] > 0.3, result.history


@pytest.mark.slow
def test_cli_train_test_predict(make_config, known_dir, builtin_category, tmp_path):
    cfg = capsnet_config(make_config, known_dir, epochs=1)
    cfg.to_yaml(tmp_path / "capsnet.yaml")
    run = tmp_path / "cli-run"

    def grdnet(*args):
        return subprocess.run([sys.executable, "-m", "grdnet", *map(str, args)], capture_output=True, text=True,
                              timeout=600)

    done = grdnet("train", "--config", tmp_path / "capsnet.yaml", "--model", "capsnet", "--output", run, "--quiet")
    assert done.returncode == 0, done.stderr
    done = grdnet("test", run / "best.pt", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    done = grdnet("predict", run, builtin_category / "test" / "good", "--output", tmp_path / "pred", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert len(rows) == len(list((builtin_category / "test" / "good").glob("*.png")))
    assert all(0.0 <= float(row["score"]) < 1.0 for row in rows)
    done = grdnet("export", run / "best.pt", "--format", "onnx", "--output", tmp_path / "model.onnx")
    assert done.returncode == 0, done.stderr
    assert "parity vs PyTorch" in done.stdout and "(ok)" in done.stdout, done.stdout  # BatchNorm in eval mode
