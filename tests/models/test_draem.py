"""DRAEM: shapes and ranges, configuration, loss, schedule, known defects, training and checkpoint round trip."""

import copy
import json

import pytest
import torch

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.losses import draem_loss, focal_loss
from grdnet.models import DRAEM, build_model
from grdnet.seeds import torch_generator
from grdnet.training import Trainer
from grdnet.training.recipes import StepContext, build_recipe
from grdnet.training.recipes.draem import milestones

from support import checkpoint_round_trip

TINY_MODEL = {"base_width": 8, "max_width": 16, "segmenter_width": 8, "segmenter_levels": 3}


def draem_config(make_config, name="run", **train) -> RunConfig:
    """The tiny shared run configuration with DRAEM's defaults under it and tiny widths (lr 1e-3)."""
    return RunConfig.for_model("draem", {**make_config(name, **train).to_dict(), "model": TINY_MODEL})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (64, 128)])
def test_shapes_and_ranges(size, channels):
    torch.manual_seed(0)
    model = DRAEM(channels, base_width=8, max_width=16, segmenter_width=8, segmenter_levels=3)
    with torch.no_grad():
        out = model(torch.rand(2, channels, *size))
    assert out["reconstruction"].shape == (2, channels, *size)
    assert out["anomaly_map"].shape == (2, 1, *size) and set(out) == {"reconstruction", "anomaly_map"}
    for key in ("reconstruction", "anomaly_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key
    assert model.discriminative.down[0][0].in_channels == 2 * channels


def test_method_defaults_and_config_checks():
    cfg = RunConfig.for_model("draem")
    assert (cfg.model.base_width, cfg.model.segmenter_width, cfg.train.epochs, cfg.train.lr) == (128, 64, 700, 1e-4)
    assert cfg.synthesis.rotation_degrees == 0 and cfg.synthesis.texture == "random"
    with pytest.raises(ConfigError, match="unknown setting 'model.patch_size' for method 'draem'"):
        cfg.updated({"model.patch_size": 8})
    with pytest.raises(ConfigError, match="not divisible by 64"):
        build_model(cfg.updated({"data.image_size": (96, 96), "model.segmenter_levels": 6}))


def test_loss_of_perfect_reconstruction_is_the_focal_part():
    torch.manual_seed(0)
    clean = torch.rand(2, 3, 32, 32)
    anomaly_map, mask = torch.rand(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.7).float()
    total, parts = draem_loss(clean, clean.clone(), anomaly_map, mask)
    expected = focal_loss(anomaly_map, mask, gamma=2.0, alpha=0.25)
    assert parts["l2"] == 0 and parts["ssim"].abs() < 1e-5
    torch.testing.assert_close(total, expected, atol=1e-5, rtol=0)
    worse, _ = draem_loss(clean, clean.flip(-1), anomaly_map, mask)
    assert worse > total + 0.1


@pytest.mark.parametrize("epochs, expected", [(700, [400, 600]), (7, [4, 6]), (2, [1, 2]), (1, [1, 1])])
def test_multistep_milestones(epochs, expected):
    assert milestones(epochs) == expected


def test_scheduler_drops_lr_at_four_and_six_sevenths(make_config):
    cfg = draem_config(make_config, epochs=14)
    recipe = build_recipe(build_model(cfg), cfg, StepContext(torch.device("cpu")))
    optimizer = recipe.optimizers["draem"]
    scheduler = recipe.make_scheduler("draem", optimizer)
    lrs = []
    for _ in range(14):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs[7] == pytest.approx(1e-3) and lrs[8] == pytest.approx(1e-4) and lrs[12] == pytest.approx(1e-5)


def test_known_defects_join_segmentation_but_not_reconstruction(make_config):
    cfg = draem_config(make_config)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = {"image": torch.rand(2, 3, 64, 64), "roi": torch.ones(2, 1, 64, 64)}
    known = {"known_image": torch.rand(1, 3, 64, 64), "known_mask": torch.ones(1, 1, 64, 64),
             "known_roi": torch.ones(1, 1, 64, 64)}
    results = []
    for extra in ({}, known):
        recipe = build_recipe(copy.deepcopy(model), cfg, StepContext(torch.device("cpu")))
        results.append(recipe.training_step({**batch, **extra}, torch_generator(0, "synthesis", 1)))
    plain, with_known = results
    torch.testing.assert_close(plain["l2"], with_known["l2"])
    torch.testing.assert_close(plain["ssim"], with_known["ssim"])
    assert not torch.isclose(plain["seg"], with_known["seg"])


def test_short_run_lowers_loss_and_checkpoint_round_trip(make_config):
    cfg = draem_config(make_config, epochs=3)
    result = Trainer(cfg, show_progress=False).fit()
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_loss"] < log[0]["loss_loss"]
    assert log[-1]["loss_l2"] < log[0]["loss_l2"]
    predictor, expected, got = checkpoint_round_trip(result.best_checkpoint, cfg)
    assert isinstance(predictor.model.model, DRAEM)
    torch.testing.assert_close(torch.from_numpy(got.anomaly_map), expected["anomaly_map"][:, 0])
    torch.testing.assert_close(torch.from_numpy(got.score), expected["score"])
