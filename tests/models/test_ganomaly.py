"""GANomaly: architecture, shapes, scores, init, loss, D re-init, training, checkpoint round trip, metrics."""

import json

import pytest
import torch
from torch import nn

from grdnet import losses
from grdnet.checkpoint import save_checkpoint
from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.errors import ConfigError
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.models import GANomaly, build_model
from grdnet.models.blocks import INIT_STD
from grdnet.models.ganomaly import dcgan_stages
from grdnet.training import Trainer
from grdnet.training.recipes import StepContext, build_recipe

TINY_MODEL = {"base_width": 8, "max_width": 16, "latent_dim": 16}


def ganomaly_config(make_config, name="ganomaly", **train) -> RunConfig:
    """The tiny test configuration (data, train, scoring) with GANomaly's defaults and narrow widths."""
    base = make_config(name, **train).to_dict()
    return RunConfig.for_model("ganomaly", {**base, "model": TINY_MODEL, "train": {**base["train"], "lr": 2e-4},
                                            "loss": {}, "synthesis": {}})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (128, 128), (64, 96)])
def test_shapes_ranges_and_scores(size, channels):
    torch.manual_seed(0)
    model = GANomaly(channels, size, latent_dim=16, base_width=4, max_width=16).eval()
    x = torch.rand(2, channels, *size)
    with torch.no_grad():
        gen = model.generator(x)
        out = model(x)
        features, logit = model.discriminator(x)
    assert gen["z"].shape == gen["z_hat"].shape == (2, 16, 1, 1)
    assert out["reconstruction"].shape == x.shape
    assert out["anomaly_map"].shape == (2, 1, *size) and "smoothed_map" not in out
    for key in ("reconstruction", "anomaly_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key
    for key in ("score", "score_d1", "score_d2", "score_d3"):
        assert out[key].shape == (2,) and torch.all(out[key] >= 0) and torch.all(torch.isfinite(out[key])), key
    assert features.shape == (2, 16, size[0] // 2 ** dcgan_stages(size), size[1] // 2 ** dcgan_stages(size))
    assert logit.shape == (2,)
    torch.testing.assert_close(out["score"], (gen["z"] - gen["z_hat"]).pow(2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out["score_d3"], (x - out["reconstruction"]).abs().mean(dim=(1, 2, 3)))
    with torch.no_grad():
        gap = (model.discriminator(x)[0] - model.discriminator(out["reconstruction"])[0]).flatten(1)
    torch.testing.assert_close(out["score_d1"], gap.abs().sum(1))
    torch.testing.assert_close(out["score_d2"], gap.norm(dim=1))


def test_dcgan_architecture_and_init():
    model = GANomaly(3, (64, 64), latent_dim=100, base_width=64, max_width=2048)
    assert [dcgan_stages(s) for s in [(64, 64), (128, 128), (256, 256), (64, 96)]] == [4, 5, 6, 4]
    encoder_convs = [m for m in model.generator.encoder1.features if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in encoder_convs] == [
        (3, 64, (4, 4), (2, 2)), (64, 128, (4, 4), (2, 2)), (128, 256, (4, 4), (2, 2)), (256, 512, (4, 4), (2, 2))
    ]  # fmt: skip
    assert model.generator.encoder1.head.kernel_size == (4, 4) and model.generator.encoder1.head.out_channels == 100
    assert isinstance(model.generator.decoder.layers[-1], nn.Sigmoid)
    assert any(isinstance(m, nn.LeakyReLU) for m in model.discriminator.modules())
    assert any(isinstance(m, nn.ReLU) for m in model.generator.decoder.modules())
    convs = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert convs.std().item() == pytest.approx(INIT_STD, rel=0.02) and abs(convs.mean().item()) < 1e-3
    bn = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() == pytest.approx(INIT_STD, rel=0.2)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ConfigError, match="data.image_size"):
        dcgan_stages((6, 64))


def test_config_defaults_and_build():
    cfg = RunConfig.for_model("ganomaly", {"data": {"image_size": [64, 64], "channels": 1}})
    assert (cfg.train.lr, cfg.train.betas[0], cfg.model.latent_dim, cfg.model.base_width) == (2e-4, 0.5, 100, 64)
    assert (cfg.loss.w_adv, cfg.loss.w_con, cfg.loss.w_enc, cfg.loss.w_ssim) == (1.0, 50.0, 1.0, 0.0)
    assert cfg.synthesis.rotation_degrees == 0
    model = build_model(cfg.updated({"model.base_width": 4}))
    assert isinstance(model, GANomaly)
    assert model.generator.encoder1(torch.rand(1, 1, 64, 64)).shape == (1, 100, 1, 1)
    with pytest.raises(ConfigError, match="unknown setting 'model.norm' for method 'ganomaly'"):
        cfg.updated({"model.norm": "group"})


def test_generator_loss_hand_case():
    weights = RunConfig.for_model("ganomaly").loss
    x = torch.rand(2, 3, 8, 8)
    z, z_hat = torch.zeros(2, 4, 1, 1), torch.full((2, 4, 1, 1), 0.5)
    f = torch.rand(2, 5, 2, 2)
    total, parts = losses.generator_loss(x, x.clone(), z, z_hat, f, f.clone(), weights)
    assert parts["con"].item() == 0 and parts["adv"].item() == 0
    assert total.item() == pytest.approx(0.25)  # w_enc · mean (z − ẑ)²
    x_hat, f_fake = (x + 0.1).clamp(0, 1), f + 0.2
    total, parts = losses.generator_loss(x, x_hat, z, z, f, f_fake, weights)
    l1 = (x - x_hat).abs().mean().item()
    assert parts["con"].item() == pytest.approx(l1, rel=1e-5)  # plain L1, no SSIM term
    assert total.item() == pytest.approx(1.0 * 0.04 + 50.0 * l1, rel=1e-4)


def test_discriminator_reinit_on_collapse(make_config, monkeypatch):
    cfg = ganomaly_config(make_config)
    torch.manual_seed(0)
    model = build_model(cfg)
    recipe = build_recipe(model, cfg, StepContext(device=torch.device("cpu")))
    batch = {"image": torch.rand(4, 3, 64, 64), "roi": torch.ones(4, 1, 64, 64)}
    # D loss forced to a constant with zero gradient: Adam leaves D unchanged unless it is re-drawn.
    forced = {"value": 0.5}
    monkeypatch.setattr(losses, "discriminator_loss", lambda real, fake: real.sum() * 0 + forced["value"])

    def d_weights():  # conv and BatchNorm weights (biases are re-set to their initial 0)
        return [p.detach().clone() for n, p in model.discriminator.named_parameters() if n.endswith("weight")]

    before = d_weights()
    assert recipe.training_step(batch, torch.Generator())["d_reinit"].item() == 0
    assert all(torch.equal(a, b) for a, b in zip(before, d_weights()))

    forced["value"] = 1e-7
    result = recipe.training_step(batch, torch.Generator())
    assert result["d_reinit"].item() == 1 and recipe.reinit_count == 1
    after = d_weights()
    assert not any(torch.equal(a, b) for a, b in zip(before, after))
    head = model.discriminator.encoder.head.weight
    assert head.std().item() == pytest.approx(INIT_STD, rel=0.3)


def test_short_run_lowers_con_and_test_reports_residual_scores(make_config, builtin_category):
    cfg = ganomaly_config(make_config, epochs=3)
    result = Trainer(cfg, show_progress=False).fit()
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_con"] < log[0]["loss_con"]
    assert "loss_d_reinit" in log[0] and "loss_adv" in log[0] and "loss_enc" in log[0]
    assert torch.isfinite(torch.tensor(result.threshold))

    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    index = index_dataset(predictor.cfg.data)
    metrics = evaluate_samples(predictor, index.test, use_rois=True).metrics
    for key in ("image_AUROC", "image_AUROC_d1", "image_AUROC_d2", "image_AUROC_d3"):
        assert 0.0 <= metrics[key] <= 1.0, key


def test_checkpoint_round_trip(make_config, tmp_path):
    cfg = ganomaly_config(make_config)
    torch.manual_seed(1)
    model = build_model(cfg)
    with torch.no_grad():  # move BatchNorm running statistics away from their defaults
        model.train()(torch.rand(4, 3, 64, 64))
    model.eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "threshold": 0.5}, tmp_path / "m.pt")
    pred = Predictor.from_checkpoint(tmp_path / "m.pt", device="cpu").predict(x)
    torch.testing.assert_close(torch.from_numpy(pred.score), expected["score"])
    torch.testing.assert_close(torch.from_numpy(pred.anomaly_map), expected["anomaly_map"][:, 0])
    assert set(pred.extra_scores) == {"d1", "d2", "d3"}
    for name, values in pred.extra_scores.items():
        torch.testing.assert_close(torch.from_numpy(values), expected[f"score_{name}"])
