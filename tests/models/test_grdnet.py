"""GRD-Net: shapes, ranges, inference path, init, configuration, export, gradient flow."""

import io

import pytest
import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.losses import contextual_loss
from grdnet.models import GRDNet, build_model
from grdnet.models.blocks import INIT_STD
from grdnet.models.feature_maps import nearest_neighbours
from grdnet.models.grdnet import MEMORY_LEVELS

TINY = {"base_width": 8, "max_width": 32, "segmenter_width": 8}


def tiny_model(channels=3, size=(64, 64), **kwargs) -> GRDNet:
    return GRDNet(channels, size, **{**TINY, **kwargs})


@pytest.mark.parametrize("bottleneck", ["crae", "drae"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (96, 64), (128, 128)])
def test_shapes_and_ranges(size, channels, bottleneck):
    torch.manual_seed(0)
    model = tiny_model(channels, size, bottleneck=bottleneck, latent_dim=64)
    x = torch.rand(2, channels, *size)
    with torch.no_grad():
        gen = model.generator(x)
        out = model(x)
    h, w = size
    expected_z = (2, 32, h // 32, w // 32) if bottleneck == "crae" else (2, 64)
    assert gen["z"].shape == expected_z and gen["z_hat"].shape == expected_z
    assert gen["reconstruction"].shape == x.shape
    assert out["reconstruction"].shape == x.shape
    assert out["anomaly_map"].shape == (2, 1, h, w) and set(out) == {"reconstruction", "anomaly_map"}
    for key in ("reconstruction", "anomaly_map"):
        assert out[key].min() >= 0 and out[key].max() <= 1


def test_discriminator_outputs():
    model = tiny_model(size=(64, 96))
    features, logit = model.discriminator(torch.rand(2, 3, 64, 96))
    assert features.shape == (2, 32, 2, 3) and logit.shape == (2,)


def test_crae_latent_at_256_is_32x8x8():
    model = tiny_model(1, (256, 256), segmenter_levels=2)
    with torch.no_grad():
        z = model.generator.encoder1(torch.rand(1, 1, 256, 256))
    assert z.shape == (1, 32, 8, 8)


def test_stages_set_the_latent_grid_of_generator_and_discriminator():
    """3 stages keep the latent at 1/8 (8×8 on a 64² tile) instead of the default 1/32 (2×2)."""
    cfg = RunConfig.model_validate({"data": {"image_size": [64, 64]},
                                    "model": {"base_width": 4, "max_width": 8, "latent_channels": 5, "stages": 3,
                                              "segmenter_width": 4}})
    model = build_model(cfg)
    out = model.generator(torch.rand(2, 3, 64, 64))
    assert out["z"].shape == out["z_hat"].shape == (2, 5, 8, 8)
    assert out["reconstruction"].shape == (2, 3, 64, 64)
    assert model.discriminator(torch.rand(2, 3, 64, 64))[0].shape[-2:] == (8, 8)


def test_forward_runs_only_inference_parts():
    model = tiny_model().eval()
    called = []
    parts = {
        "encoder1": model.generator.encoder1,
        "decoder": model.generator.decoder,
        "encoder2": model.generator.encoder2,
        "discriminator": model.discriminator,
        "segmenter": model.segmenter,
    }
    for name, module in parts.items():
        module.register_forward_hook(lambda *args, name=name: called.append(name))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert set(out) == {"reconstruction", "anomaly_map"}
    assert called == ["encoder1", "decoder", "segmenter"]


def test_latent_score():
    model = tiny_model()
    with torch.no_grad():
        score = model.latent_score(torch.rand(3, 3, 64, 64))
    assert score.shape == (3,) and torch.all(score >= 0)


def test_init_applied():
    model = tiny_model(base_width=32, max_width=64)
    convs = [m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat(convs)
    assert weights.std().item() == pytest.approx(INIT_STD, rel=0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_build_model_from_config():
    cfg = RunConfig.from_dict(
        {
            "data": {"image_size": [64, 96], "channels": 1},
            "model": {**TINY, "bottleneck": "drae", "latent_dim": 16, "upsample": "resize",
                      "segmenter_output": "softmax", "norm": "batch"},
        }
    )  # fmt: skip
    model = build_model(cfg)
    assert isinstance(model, GRDNet)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.GroupNorm) for m in model.modules())
    with torch.no_grad():
        z = model.generator.encoder1(torch.rand(2, 1, 64, 96))
    assert z.shape == (2, 16)


def test_build_model_errors():
    with pytest.raises(ConfigError, match="model.dropout: unknown setting for method 'grdnet'"):
        RunConfig.from_dict({"model": {"dropout": 0.1}})
    with pytest.raises(ConfigError, match="model.norm: .*'group', 'batch' or 'instance'"):
        RunConfig.from_dict({"model": {"norm": "layer"}})
    with pytest.raises(ConfigError, match="divisible by 64"):
        tiny_model(size=(96, 64), segmenter_levels=6)


def test_channels_last_bf16_autocast():
    model = tiny_model().to(memory_format=torch.channels_last).eval()
    x = torch.rand(2, 3, 64, 64).to(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out["anomaly_map"].shape == (2, 1, 64, 64)
    assert all(torch.isfinite(v.float()).all() for v in out.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_onnx_export_matches():
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model(bottleneck="drae", latent_dim=32, segmenter_levels=2).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["image"], output_names=list(expected))
    session = ort.InferenceSession(buffer.getvalue())
    for key, value in zip(expected, session.run(None, {"image": x.numpy()})):
        torch.testing.assert_close(torch.from_numpy(value), expected[key], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_generator_training_lowers_contextual_loss():
    torch.manual_seed(0)
    generator = tiny_model(segmenter_levels=1).generator
    grid = torch.linspace(0, 1, 64)
    x = torch.stack([grid[None, :].expand(64, 64), grid[:, None].expand(64, 64), torch.full((64, 64), 0.3)])
    x = torch.stack([x, x.flip(-1)])
    optimizer = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(20):
        loss = contextual_loss(x, generator.decoder(generator.encoder1(x)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in [*generator.encoder1.parameters(), *generator.decoder.parameters()])
    assert losses[-1] < 0.8 * losses[0]


def _featured(memory_bank_size=0):
    return tiny_model(1, (64, 64), stages=3, segmenter_features="pretrained", memory_bank_size=memory_bank_size)


def test_pretrained_segmenter_features_are_frozen_and_widen_only_the_unet_input():
    plain, featured = tiny_model(1, (64, 64), stages=3), _featured()
    width = TINY["segmenter_width"]
    backbone = featured.segmenter.backbone
    # x_n, x̂ and one `width`-channel projection per backbone level (its features and their residual)
    assert featured.segmenter.unet.down[0][0].in_channels == 2 + width * len(backbone.channels)
    assert plain.segmenter.backbone is None and plain.segmenter.unet.down[0][0].in_channels == 2
    assert not any(p.requires_grad for p in backbone.parameters())
    x = torch.rand(2, 1, 64, 64)
    featured.segmenter(x, x.flip(-1)).mean().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert featured.segmenter.projections[0].weight.grad is not None


def test_the_segmenter_reads_a_changed_backbone_residual():
    """The feature residual |φ(x_n) − φ(x̂)| reaches the map: a reconstruction differing from x changes it."""
    torch.manual_seed(0)
    model = _featured().eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        same, other = model.segmenter(x, x), model.segmenter(x, torch.zeros_like(x))
    assert not torch.allclose(same, other)


def test_memory_bank_needs_features_fills_and_round_trips():
    with pytest.raises(ConfigError, match="segmenter_features"):
        tiny_model(1, (64, 64), stages=3, memory_bank_size=10)
    model = _featured(memory_bank_size=10).eval()
    x = torch.rand(2, 1, 64, 64)
    with pytest.raises(RuntimeError, match="memory bank is empty"):
        model(x)
    dim = sum(model.segmenter.backbone.channels[level] for level in MEMORY_LEVELS)
    model.segmenter.set_memory(torch.rand(37, dim), scale=2.5)  # any size: it comes from the training data
    restored = _featured(memory_bank_size=10)
    restored.load_state_dict(model.state_dict())
    assert restored.segmenter.memory_bank.shape == (37, dim) and float(restored.segmenter.memory_scale) == 2.5
    with torch.no_grad():
        assert torch.allclose(restored.eval()(x)["anomaly_map"], model(x)["anomaly_map"])


def test_memory_queries_pool_the_memory_levels_to_the_deepest_grid():
    levels = {"layer1": torch.zeros(2, 24, 32, 32), "layer2": torch.ones(2, 40, 16, 16),
              "layer3": torch.full((2, 112, 8, 8), 2.0)}
    queries = _featured().segmenter.memory_queries(levels)  # layer1 is not a memory level
    assert queries.shape == (2, 152, 8, 8)
    assert torch.allclose(queries[:, :40], torch.ones(())) and torch.allclose(queries[:, 40:], torch.full((), 2.0))


def test_the_memory_distance_is_added_to_the_map_with_its_weight():
    """anomaly_map = segmenter map + w · d / (d + 1), d = distance to the memory / typical normal distance: a patch
    far from every normal entry raises the map where it is, and w = 0 leaves the segmenter's map alone."""
    torch.manual_seed(0)
    fused = tiny_model(1, (64, 64), stages=3, segmenter_features="pretrained", memory_bank_size=10,
                       memory_map_weight=0.5).eval()
    plain = tiny_model(1, (64, 64), stages=3, segmenter_features="pretrained", memory_bank_size=10).eval()
    plain.load_state_dict(fused.state_dict(), strict=False)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        levels = fused.segmenter.backbone(x)
        bank = fused.segmenter.memory_queries(levels).permute(0, 2, 3, 1).reshape(-1, 152)
        memory = bank[4:]  # the image's own patches less the 4×4 grid's first row
        scale = float(nearest_neighbours(bank[:4], memory)[0].min())  # the first row's patches: distance ≥ 1
        fused.segmenter.set_memory(memory, scale=scale)
        plain.segmenter.set_memory(memory, scale=scale)
        out, base = fused(x)["anomaly_map"], plain(x)["anomaly_map"]
        seg, distance = fused.segmenter(x, fused.generator.decoder(fused.generator.encoder1(x)), with_distance=True)
    assert distance.shape == (1, 1, 4, 4)
    assert torch.allclose(base, seg)  # weight 0: the segmenter's map itself
    added = out - base
    assert added.min() >= -1e-6 and added.max() <= 0.5
    assert added[..., 40:, :].abs().max() < 0.05  # patches in the memory: distance ≈ 0 (float rounding) adds ≈ nothing
    assert added[..., :8, :].min() >= 0.5 * 0.5 - 1e-3  # the first row's: w · squash(≥ 1) ≥ 0.25
