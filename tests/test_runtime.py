"""`grdnet.runtime`: the precision rule ('auto' bf16 on CUDA, and on AMX CPUs for wide models only)."""

import pytest
import torch
from torch import nn

from grdnet import runtime
from grdnet.runtime import median_conv_width, uses_bf16

CPU = torch.device("cpu")


def convs(*widths: int) -> nn.Module:
    return nn.Sequential(*(nn.Conv2d(1, width, 3) for width in widths))


def test_median_conv_width_counts_trainable_convolutions_only():
    model = convs(16, 32, 256)
    assert median_conv_width(model) == 32
    frozen = convs(512, 512, 512, 512)
    frozen.requires_grad_(False)
    assert median_conv_width(nn.Sequential(model, frozen)) == 32
    assert median_conv_width(nn.Linear(3, 3)) == 0


@pytest.mark.parametrize("amx", [True, False])
def test_auto_on_cpu_picks_bf16_only_for_wide_models_on_amx(monkeypatch, amx):
    monkeypatch.setattr(runtime, "cpu_has_amx_bf16", lambda: amx)
    assert uses_bf16("auto", CPU, convs(128, 256, 512)) is amx
    assert uses_bf16("auto", CPU, convs(8, 16, 32)) is False  # narrow: slower in bf16 even with AMX
    assert uses_bf16("auto", CPU) is False  # no model to judge
    assert uses_bf16("bf16", CPU) is True
    assert uses_bf16("fp32", CPU, convs(512)) is False


def test_auto_on_cuda_is_bf16():
    assert uses_bf16("auto", torch.device("cuda"), convs(8)) is True


def test_amx_probe_answers_without_error():
    assert isinstance(runtime.cpu_has_amx_bf16(), bool)
