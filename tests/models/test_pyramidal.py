"""piade: pyramid of latents decoded together, fixed perceptual network, training, tiling, CLI train / test /
predict / export."""

import csv
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.models import PyramidalAutoencoder, build_model
from grdnet.models.perceptual import RandomFeatures, feature_extractor, perceptual_distance
from grdnet.training import Trainer
from grdnet.training.recipes import StepContext, build_recipe

TINY_MODEL = {"base_width": 8, "max_width": 16, "latent_channels": 8}


def piade_config(make_config, **train) -> RunConfig:
    base = make_config("piade", **train).to_dict()
    return RunConfig.for_model("piade", {**base, "model": TINY_MODEL, "loss": {}, "synthesis": {}})


def test_latents_at_three_resolutions_and_output_ranges():
    model = PyramidalAutoencoder(1, (64, 96), base_width=4, max_width=16, latent_channels=16).eval()
    x = torch.rand(2, 1, 64, 96)
    latents = model.encode(x)
    assert [tuple(z.shape[1:]) for z in latents] == [(1, 16, 24), (4, 8, 12), (16, 4, 6)]
    with torch.no_grad():
        out = model(x)
    assert out["reconstruction"].shape == x.shape
    for key in ("reconstruction", "anomaly_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key
    torch.testing.assert_close(out["anomaly_map"], (x - out["reconstruction"]).abs())
    assert "score" not in out


def test_the_decoder_reads_every_latent():
    model = PyramidalAutoencoder(1, (64, 64), base_width=4, max_width=16, latent_channels=16).eval()
    latents = [z.detach().requires_grad_(True) for z in model.encode(torch.rand(1, 1, 64, 64))]
    model.decode(latents).sum().backward()
    assert all(z.grad is not None and z.grad.abs().sum() > 0 for z in latents)


def test_options_are_checked(make_config):
    cfg = piade_config(make_config)
    assert isinstance(build_model(cfg), PyramidalAutoencoder)
    assert build_model(cfg.updated({"model.pyramid_levels": 2})).levels == 2
    with pytest.raises(ConfigError, match="pyramid_levels: must be between 1 and 4"):
        build_model(cfg.updated({"model.pyramid_levels": 5}))
    with pytest.raises(ConfigError, match="unknown setting 'model.levels' for method 'piade'"):
        cfg.updated({"model.levels": 2})
    tiled = cfg.updated({"data.image_size": (128, 128), "data.tile_size": (64, 64)})
    assert tiled.data.model_size == (64, 64)


PRETRAINED = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
PERCEPTUAL_LOG = ("perceptual loss: pretrained EfficientNet-Lite0 (ImageNet), stages layer2, layer3, frozen" if PRETRAINED
                  else "perceptual loss: frozen randomly initialised network (seed 0, widths (32, 64, 128))")
"""What the piade recipe logs: the pretrained network whenever the `pretrained` extra is installed (as in CI)."""


@pytest.mark.skipif(not PRETRAINED, reason="needs the pretrained extra")
def test_pretrained_perceptual_network_is_the_frozen_backbone_and_passes_gradients():
    network, description = feature_extractor(1)
    assert "pretrained EfficientNet-Lite0" in description
    assert not any(p.requires_grad for p in network.parameters()) and not network.train().training
    x = torch.rand(2, 1, 64, 64)
    features = network(x)
    assert [f.shape[-1] for f in features] == [8, 4]  # strides 8 and 16
    x_hat = torch.rand(2, 1, 64, 64, requires_grad=True)
    distance = perceptual_distance(network, x, x_hat)
    distance.backward()
    assert distance.item() > 0 and x_hat.grad.abs().sum() > 0
    assert perceptual_distance(network, x, x.clone()).item() == 0.0


def test_without_the_extra_the_random_network_is_used_and_the_log_says_why(monkeypatch):
    from grdnet.errors import GrdnetError
    from grdnet.models import perceptual

    def missing():
        raise GrdnetError("efficientnet_lite_pytorch is not installed; install it with: pip install 'grdnet[pretrained]'")

    monkeypatch.setattr(perceptual, "PretrainedFeatures", missing)
    network, description = feature_extractor(1)
    assert isinstance(network, RandomFeatures) and "pip install 'grdnet[pretrained]'" in description
    with pytest.raises(GrdnetError, match="not installed"):
        feature_extractor(1, pretrained=True)


def test_random_perceptual_network_is_fixed_and_passes_gradients_to_the_reconstruction_only():
    network, description = feature_extractor(1, seed=3, pretrained=False)
    assert "frozen randomly initialised" in description
    again = RandomFeatures(1, seed=3)
    for a, b in zip(network.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert not any(p.requires_grad for p in network.parameters())
    assert not network.train().training
    x = torch.rand(2, 1, 32, 32)
    assert perceptual_distance(network, x, x.clone()).item() == 0.0
    x_hat = torch.rand(2, 1, 32, 32, requires_grad=True)
    distance = perceptual_distance(network, x, x_hat)
    distance.backward()
    assert distance.item() > 0 and x_hat.grad.abs().sum() > 0


def test_recipe_logs_its_perceptual_network_and_training_lowers_both_terms(make_config):
    cfg = piade_config(make_config, epochs=3)
    lines = []
    recipe = build_recipe(build_model(cfg), cfg, StepContext(torch.device("cpu"), log=lines.append))
    assert lines == [PERCEPTUAL_LOG]
    assert not any(p.requires_grad for p in recipe.perceptual_network.parameters())
    result = Trainer(cfg, show_progress=False).fit()
    first, last = result.history[0], result.history[-1]
    assert last["loss_mse"] < first["loss_mse"] and last["loss_perceptual"] < first["loss_perceptual"]


@pytest.mark.slow
def test_cli_train_test_predict(make_config, builtin_category, tmp_path):
    piade_config(make_config, epochs=1).to_yaml(tmp_path / "piade.yaml")
    run = tmp_path / "cli-run"

    def grdnet(*args):
        return subprocess.run([sys.executable, "-m", "grdnet", *map(str, args)], capture_output=True, text=True,
                              timeout=600)

    done = grdnet("train", "--config", tmp_path / "piade.yaml", "--output", run)
    assert done.returncode == 0, done.stderr
    # the console wraps long lines and puts the source file at the end of the first
    assert ("pretrained EfficientNet-Lite0" if PRETRAINED else "frozen randomly initialised") in done.stderr
    done = grdnet("test", run / "best.pt", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= metrics[key] <= 1.0
    done = grdnet("predict", run, builtin_category / "test" / "good", "--output", tmp_path / "pred", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert len(rows) == len(list((builtin_category / "test" / "good").glob("*.png")))
    done = grdnet("export", run / "best.pt", "--format", "onnx", "--output", tmp_path / "model.onnx")
    assert done.returncode == 0, done.stderr
    # BatchNorm layers: the parity check must run PyTorch in eval mode (running statistics), as the graph does
    assert "parity vs PyTorch" in done.stdout and "(ok)" in done.stdout, done.stdout
