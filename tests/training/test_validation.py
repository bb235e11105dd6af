"""`Validator`: scores follow the test protocol, including "fit" padding left out of the image scores."""

import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.training.validation import Validator


class Darkness(nn.Module):
    """Stand-in model whose anomaly map is 1 − brightness: the black "fit" padding looks fully anomalous."""

    def forward(self, x):
        return {"anomaly_map": 1 - x.mean(dim=1, keepdim=True)}


def test_padding_does_not_set_the_threshold():
    cfg = RunConfig().updated({"data.image_size": [64, 64], "data.resize": "fit", "scoring.smoothing_kernel": 1})
    valid = torch.zeros(4, 1, 64, 64)
    valid[:, :, :32] = 1  # images fitted as the top half; the bottom half is padding
    images = valid.expand(-1, 3, -1, -1).clone()
    with_padding = Validator(images, valid.clone(), valid, cfg, torch.device("cpu"), bf16=False).run(Darkness())
    assert with_padding["threshold"] < 0.5
    unaware = Validator(images, torch.ones_like(valid), torch.ones_like(valid), cfg, torch.device("cpu"), bf16=False)
    assert unaware.run(Darkness())["threshold"] > 0.99
