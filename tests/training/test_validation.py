"""`Validator`: scores follow the test protocol, including "fit" padding left out of the image scores."""

import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.scoring import ScoringHead
from grdnet.training.validation import Validator


class Darkness(nn.Module):
    """Stand-in model whose anomaly map is 1 − brightness: the black "fit" padding looks fully anomalous."""

    def forward(self, x):
        return {"anomaly_map": 1 - x.mean(dim=1, keepdim=True)}


def test_padding_does_not_set_the_threshold():
    cfg = RunConfig().updated({"data.image_size": [64, 64], "data.resize": "fit", "scoring.smoothing_kernel": 1,
                                "scoring.standardize": False})  # raw units: the threshold is a map value
    valid = torch.zeros(4, 1, 64, 64)
    valid[:, :, :32] = 1  # images fitted as the top half; the bottom half is padding
    images = valid.expand(-1, 3, -1, -1).clone()
    with_padding = Validator(images, valid.clone(), valid, cfg, torch.device("cpu"), bf16=False).run(Darkness())
    assert with_padding["threshold"] < 0.5
    unaware = Validator(images, torch.ones_like(valid), torch.ones_like(valid), cfg, torch.device("cpu"), bf16=False)
    assert unaware.run(Darkness())["threshold"] > 0.99


class FirstChannel(nn.Module):
    """Stand-in model whose anomaly map is the image's first channel."""

    def forward(self, x):
        return {"anomaly_map": x[:, :1]}


def normals_with_one_spot_each(count: int = 10) -> torch.Tensor:
    """(count, 3, 64, 64): a faint background and, on each image, one bright spot where no other has one."""
    images = 0.1 + 0.01 * torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for i in range(count):
        images[i, :, 5 * i : 5 * i + 4, 30:34] = 0.6
    return images


def test_the_threshold_comes_from_normals_the_stats_did_not_see():
    """Scored in-sample, each normal's own spot is part of the statistics and looks tame; an unseen normal's
    spot does not. The threshold must come from the cross-fitted scores, above every in-sample one."""
    cfg = RunConfig().updated({"data.image_size": [64, 64], "scoring.smoothing_kernel": 1, "model.name": "draem"})
    images = normals_with_one_spot_each()
    ones = torch.ones(len(images), 1, 64, 64)
    validator = Validator(images, ones, ones, cfg, torch.device("cpu"), bf16=False)
    threshold = validator.run(FirstChannel())["threshold"]
    stats = validator.normal_stats
    assert stats is not None and stats.mean.shape == stats.std.shape == (1, 1, 64, 64)
    in_sample = ScoringHead(1, True, stats)({"anomaly_map": images[:, :1]})["score"]
    assert threshold > 1.5 * float(in_sample.max())


def test_no_stats_without_standardize_or_for_a_method_scored_otherwise():
    images = normals_with_one_spot_each(4)
    ones = torch.ones(len(images), 1, 64, 64)
    for update in ({"scoring.standardize": False}, {"model.name": "ganomaly"}):
        cfg = RunConfig().updated({"data.image_size": [64, 64], "scoring.smoothing_kernel": 1, **update})
        validator = Validator(images, ones, ones, cfg, torch.device("cpu"), bf16=False)
        model = FirstChannel() if "scoring.standardize" in update else ScoredByMean()
        validator.run(model)
        assert validator.normal_stats is None


class ScoredByMean(nn.Module):
    """Stand-in for a method with its own image score (not map-scored)."""

    def forward(self, x):
        return {"anomaly_map": x[:, :1], "score": x.mean(dim=(1, 2, 3))}
