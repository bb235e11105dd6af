"""Shared building blocks: shapes, value ranges, options, init."""

import pytest
import torch
from torch import nn

from grdnet.models.blocks import (
    INIT_STD,
    PreActResidualBlock,
    ResidualDecoder,
    ResidualEncoder,
    UNet,
    init_weights,
    make_norm,
    stage_widths,
)


@pytest.mark.parametrize("norm", ["group", "batch", "instance"])
def test_residual_block_identity_and_projection(norm):
    x = torch.rand(2, 8, 16, 12)
    same = PreActResidualBlock(8, 8, norm=norm)
    assert isinstance(same.shortcut, nn.Identity)
    assert same(x).shape == (2, 8, 16, 12)
    down = PreActResidualBlock(8, 16, stride=2, norm=norm)
    assert isinstance(down.shortcut, nn.Conv2d) and down.shortcut.kernel_size == (1, 1)
    assert down(x).shape == (2, 16, 8, 6)


@pytest.mark.parametrize("build", [
    lambda **norm: nn.Sequential(ResidualEncoder(3, 8, 32, num_stages=4, **norm),
                                 ResidualDecoder(32, 3, 8, 32, num_stages=4, **norm)),
    lambda **norm: UNet(3, 1, base_width=8, levels=3, **norm),
], ids=["encoder-decoder", "unet"])
def test_default_norm_stacks_treat_each_sample_alone_in_training_mode(build):
    """The blocks' default normalisation keeps a sample's output independent of the rest of its batch in
    training mode (so a batch of one trains like any other) and informative down to the deepest stage (4×4
    here: different images still give different outputs); a BatchNorm stack's output depends on the batch."""
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    default = build().train()
    alone = torch.cat([default(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(alone, default(x), atol=1e-5, rtol=1e-4)
    assert (alone[0] - alone[1]).abs().mean() > 1e-3
    batch = build(norm="batch").train()
    assert not torch.allclose(batch(x[:1]), batch(x)[:1], atol=1e-3)
    assert all(not isinstance(m, nn.modules.batchnorm._BatchNorm) for m in default.modules())


def test_make_norm_kinds():
    assert isinstance(make_norm("batch", 8), nn.BatchNorm2d)
    group = make_norm("group", 64)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 32
    assert make_norm("group", 8).num_groups == 8
    instance = make_norm("instance", 8)
    assert isinstance(instance, nn.InstanceNorm2d) and instance.affine
    with pytest.raises(ValueError, match="norm must be"):
        make_norm("layer", 8)


def test_stage_widths_double_and_cap():
    assert stage_widths(64, 512, 5) == [64, 128, 256, 512, 512, 512]
    assert stage_widths(8, 32, 3) == [8, 16, 32, 32]


def test_encoder_shapes_and_stage_features():
    encoder = ResidualEncoder(3, base_width=8, max_width=32, num_stages=3)
    x = torch.rand(2, 3, 32, 48)
    features = encoder.stage_features(x)
    assert [f.shape[1:] for f in features] == [(8, 32, 48), (16, 16, 24), (32, 8, 12), (32, 4, 6)]
    out = encoder(x)
    assert out.shape == (2, encoder.out_channels, 4, 6) and encoder.out_channels == 32
    assert sum(isinstance(m, PreActResidualBlock) for m in encoder.modules()) == 6


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_decoder_shape_and_range(upsample):
    decoder = ResidualDecoder(4, 3, base_width=8, max_width=32, num_stages=3, upsample=upsample)
    out = decoder(torch.randn(2, 4, 4, 6) * 10)
    assert out.shape == (2, 3, 32, 48)
    assert out.min() >= 0 and out.max() <= 1


def test_decoder_rejects_unknown_upsample():
    with pytest.raises(ValueError, match="upsample"):
        ResidualDecoder(4, 3, base_width=8, max_width=32, num_stages=2, upsample="pixelshuffle")


def test_unet_sigmoid():
    net = UNet(6, 1, base_width=8, levels=4)
    out = net(torch.rand(2, 6, 32, 48))
    assert out.shape == (2, 1, 32, 48)
    assert out.min() >= 0 and out.max() <= 1


def test_unet_softmax_returns_defect_probability():
    net = UNet(6, 1, base_width=8, levels=3, output="softmax")
    captured = {}
    net.head.register_forward_hook(lambda module, inputs, output: captured.update(logits=output))
    out = net(torch.rand(2, 6, 16, 24))
    assert captured["logits"].shape == (2, 2, 16, 24)
    assert out.shape == (2, 1, 16, 24)
    logits = captured["logits"]
    torch.testing.assert_close(out, torch.sigmoid(logits[:, 1:] - logits[:, :1]))


def test_unet_skip_widths_capped():
    net = UNet(2, 1, base_width=4, levels=5, max_width=16)
    assert net.down[-1][0].out_channels == 16
    assert net(torch.rand(1, 2, 64, 64)).shape == (1, 1, 64, 64)


def test_init_weights():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(64, 64, 3), nn.ConvTranspose2d(64, 32, 4), nn.Linear(256, 128),
        nn.GroupNorm(4, 64), nn.BatchNorm2d(8), nn.InstanceNorm2d(8, affine=True),
    )  # fmt: skip
    for p in model.parameters():
        nn.init.uniform_(p, 2.0, 3.0)
    model.apply(init_weights)
    for layer in model[:3]:
        assert layer.weight.std().item() == pytest.approx(INIT_STD, rel=0.05)
        assert layer.weight.mean().abs().item() < 0.002
        assert torch.all(layer.bias == 0)
    for layer in model[3:]:
        assert torch.all(layer.weight == 1) and torch.all(layer.bias == 0)
