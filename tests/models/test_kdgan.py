"""kdgan: shapes and ranges, latent search (untouched weights, lower loss, deterministic), training, checkpoints,
progressive growing (schedule, fade-in, exact resume across phase boundaries)."""

import dataclasses
import os
import signal

import pytest
import torch

from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.errors import ConfigError
from grdnet.inference import Predictor
from grdnet.models import KDGAN, build_model
from grdnet.models.kdgan import growth_stage, resolution_levels
from grdnet.training import Trainer, load_checkpoint

TINY_MODEL = {"base_width": 8, "max_width": 16, "latent_dim": 16, "search_steps": 5}


def kdgan_config(make_config, name="kdgan", **train) -> RunConfig:
    """The tiny test configuration with kdgan's defaults and narrow widths."""
    base = make_config(name, **train).to_dict()
    return RunConfig.for_model("kdgan", {**base, "model": TINY_MODEL, "loss": {}, "synthesis": {}})


def small_index(cfg: RunConfig, n_train: int = 32, n_val: int = 4):
    """The built-in data set's index with fewer training and validation images (fast runs)."""
    index = index_dataset(cfg.data)
    return dataclasses.replace(index, train=index.train[:n_train], validation=index.validation[:n_val])


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_ranges_and_weights_untouched(channels):
    torch.manual_seed(0)
    model = KDGAN(channels, (64, 96), base_width=4, max_width=16, latent_dim=8, search_steps=3)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, channels, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out["reconstruction"].shape == x.shape
    assert out["anomaly_map"].shape == (2, 1, 64, 96) and "smoothed_map" not in out
    for key in ("reconstruction", "anomaly_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key
    assert out["score"].shape == (2,) and torch.all(torch.isfinite(out["score"])) and torch.all(out["score"] >= 0)
    torch.testing.assert_close(out["anomaly_map"], (x - out["reconstruction"]).abs().mean(dim=1, keepdim=True))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=name)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_config_defaults_and_options(make_config):
    cfg = kdgan_config(make_config)
    model = build_model(cfg)
    assert isinstance(model, KDGAN) and model.search_steps == 5 and model.search_lambda == 0.1
    defaults = RunConfig.for_model("kdgan")
    assert defaults.synthesis.rotation_degrees == 0 and defaults.train.lr == 2e-4
    assert build_model(defaults.updated({"data.image_size": (64, 64)})).search_steps == 100
    with pytest.raises(ConfigError, match="search_step"):
        cfg.updated({"model.search_step": 3})
    with pytest.raises(ConfigError, match="search_lambda"):
        cfg.updated({"model.search_lambda": 2.0})


@pytest.fixture(scope="module")
def trained(builtin_category, tmp_path_factory):
    """A tiny kdgan trained for 2 short epochs: (config, training result)."""
    from support import tiny_config

    base = tiny_config(builtin_category, tmp_path_factory.mktemp("kdgan") / "run").to_dict()
    cfg = RunConfig.for_model("kdgan", {**base, "model": TINY_MODEL, "loss": {}, "synthesis": {}})
    result = Trainer(cfg, show_progress=False, index=small_index(cfg)).fit()
    return cfg, result


def test_short_run_lowers_the_discriminator_loss(trained):
    _, result = trained
    first, last = result.history[0], result.history[-1]
    assert last["loss_d"] < first["loss_d"]
    assert all(key in first for key in ("loss_g", "loss_ns", "loss_fm", "val_score", "threshold"))


def test_latent_search_lowers_its_loss_and_is_deterministic(trained):
    cfg, result = trained
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    model = predictor.model.model
    x = index_images(cfg, 2)
    with torch.no_grad():
        found = model.search(x, steps=8)
        again, repeat, single = model(x), model(x), model(x[1:2])
    assert found["history"].shape == (8,)
    assert found["loss"].mean() < found["history"][0]
    torch.testing.assert_close(again["score"], repeat["score"])
    torch.testing.assert_close(single["score"], again["score"][1:2], rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip_through_predictor(trained):
    cfg, result = trained
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    assert isinstance(predictor.model.model, KDGAN) and predictor.model.model.search_steps == 5
    fresh = build_model(cfg).eval()
    fresh.load_state_dict(torch.load(result.best_checkpoint, weights_only=True)["model"])
    x = index_images(cfg, 2)
    prediction = predictor.predict(x)
    with torch.no_grad():
        expected = fresh(x)
    assert prediction.anomaly_map.shape == (2, 64, 64)
    assert prediction.score == pytest.approx(expected["score"].numpy(), rel=1e-5, abs=1e-6)
    assert prediction.decision.dtype == bool and predictor.threshold == pytest.approx(result.threshold)


def index_images(cfg: RunConfig, count: int) -> torch.Tensor:
    """The first `count` test images as a (count, C, H, W) batch."""
    from grdnet.data import load_tensors

    return load_tensors(index_dataset(cfg.data, splits="test").test[:count], cfg.data)["image"]


def test_growth_schedule_and_start_sizes():
    assert resolution_levels((64, 64), 8) == 4 and resolution_levels((256, 256), 16) == 5
    assert resolution_levels((64, 96), 8) == 4
    for bad in (3, 12, 128):
        with pytest.raises(ConfigError, match="start_size"):
            resolution_levels((64, 64), bad)
    # phase of 10 epochs: level 0 alone, then each level fades in over 5 epochs and trains 5 at full weight
    assert [growth_stage(e, 3, 10) for e in (0, 9.9, 10, 12.5, 15, 20, 25, 29, 30, 500)] == [
        (0, 1.0), (0, 1.0), (1, 0.0), (1, 0.5), (1, 1.0), (2, 0.0), (2, 1.0), (2, 1.0), (2, 1.0), (2, 1.0)]


def test_fade_in_starts_from_the_previous_resolution():
    """At α = 0 the new level adds nothing: G's output equals the previous level's, D's logit too."""
    torch.manual_seed(0)
    model = KDGAN(1, (64, 96), base_width=4, max_width=16, latent_dim=8, phase_epochs=2.0)
    z, x = torch.randn(2, 8, 1, 1), torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        assert model.set_progress(3.9) == (1, 1.0)
        coarse_image, (_, coarse_logit) = model.generator(z), model.discriminator(x)
        assert model.set_progress(4.0) == (2, 0.0)
        torch.testing.assert_close(model.generator(z), coarse_image)
        torch.testing.assert_close(model.discriminator(x)[1], coarse_logit)
        model.set_progress(4.5)
        assert not torch.allclose(model.generator(z), coarse_image)
    # the 8×12 start grid's image is blocks of 8×8 equal pixels once upsampled to 64×96
    model.set_progress(0.0)
    with torch.no_grad():
        image = model.generator(z)
    torch.testing.assert_close(image, torch.nn.functional.interpolate(image[..., ::8, ::8], scale_factor=8.0))
    assert model.generator.image_size == (64, 96)


def growing_config(make_config, name, epochs) -> RunConfig:
    """kdgan at 64² growing from 16² (16, 32, 64) with one-epoch phases: boundaries at epochs 1 and 2."""
    cfg = kdgan_config(make_config, name, epochs=epochs)
    return cfg.updated({"model.start_size": 16, "model.phase_epochs": 1})


def test_growing_run_reaches_the_full_size_and_logs_each_resolution(make_config):
    cfg = growing_config(make_config, "grow", 3)
    lines = []
    trainer = Trainer(cfg, show_progress=False, index=small_index(cfg, n_train=16))
    trainer.console.log = lines.append
    result = trainer.fit()
    assert [line for line in lines if line.startswith("kdgan")] == [
        "kdgan: training at 16×16 (resolution 1 of 3)", "kdgan: training at 32×32 (resolution 2 of 3)",
        "kdgan: training at 64×64 (resolution 3 of 3)"]
    state = load_checkpoint(result.last_checkpoint)["model"]
    assert state["trained_steps"].item() == 6
    assert state["generator.stage"].tolist() == state["discriminator.stage"].tolist() == [2.0, 1.0]
    still = cfg.updated({"model.progressive": False})
    assert build_model(still).generator.current() == (2, 1.0)  # without growing: full size from the start


def test_resume_is_exact_across_phase_boundaries(make_config):
    """3 epochs straight = 2 epochs then --resume to 3 (at the boundary where 64² starts fading in) = Ctrl-C in
    the middle of epoch 2 (32² fading in) then --resume."""
    index = small_index(growing_config(make_config, "full", 3), n_train=24)  # 3 steps per epoch
    full = Trainer(growing_config(make_config, "full", 3), show_progress=False, index=index).fit()
    Trainer(growing_config(make_config, "split", 2), show_progress=False, index=index).fit()
    split = Trainer(growing_config(make_config, "split", 3), resume=True, show_progress=False, index=index).fit()

    def interrupt(epoch, step):
        if (epoch, step) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        Trainer(growing_config(make_config, "cut", 3), show_progress=False, index=index, step_callback=interrupt).fit()
    saved = load_checkpoint(growing_config(make_config, "cut", 3).train.output_dir / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 2) and saved["model"]["generator.stage"][0] == 1
    cut = Trainer(growing_config(make_config, "cut", 3), resume=True, show_progress=False, index=index).fit()
    expected = load_checkpoint(full.last_checkpoint)["model"]
    for other in (split, cut):
        state = load_checkpoint(other.last_checkpoint)["model"]
        assert state.keys() == expected.keys()
        for key in expected:
            assert torch.equal(state[key], expected[key]), key
