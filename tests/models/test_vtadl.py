"""VT-ADL: shapes and ranges, mixture NLL, map transform, configuration, training and checkpoint round trip."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from grdnet.config import RunConfig
from grdnet.data import index_dataset, read_image
from grdnet.errors import ConfigError
from grdnet.losses import vtadl_loss
from grdnet.models import VTADL, build_model
from grdnet.models.vtadl import Z_OFFSET, GaussianMixture, gaussian_mixture_log_prob
from grdnet.training import Trainer

from support import checkpoint_round_trip

TINY_OPTIONS = {"patch_size": 8, "depth": 2, "heads": 2, "components": 4}


def tiny_model(channels=3, size=(64, 64)) -> VTADL:
    return VTADL(channels, size, embed_dim=16, patch_size=8, depth=2, heads=2, components=4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (64, 128)])
def test_shapes_and_ranges(size, channels):
    torch.manual_seed(0)
    model = tiny_model(channels, size)
    model.update_nll_stats(model(torch.rand(4, channels, *size))["patch_nll"])
    with torch.no_grad():
        out = model(torch.rand(2, channels, *size))
    grid = (size[0] // 8) * (size[1] // 8)
    assert out["reconstruction"].shape == (2, channels, *size) and out["patch_nll"].shape == (2, grid)
    assert out["anomaly_map"].shape == (2, 1, *size) and out["score_reconstruction"].shape == (2,)
    assert "score" not in out
    for key in ("reconstruction", "anomaly_map"):
        assert 0 <= out[key].min() and out[key].max() <= 1, key
    assert out["anomaly_map"].std() > 0


def test_single_gaussian_at_its_mean_has_known_nll():
    dim, sigma = 5, 2.0
    mean = torch.randn(1, dim)
    log_prob = gaussian_mixture_log_prob(mean, torch.zeros(1), mean, torch.full((1, dim), math.log(sigma)))
    torch.testing.assert_close(log_prob, torch.tensor([-0.5 * dim * math.log(2 * math.pi) - dim * math.log(sigma)]))


def test_mixture_matches_explicit_sum():
    torch.manual_seed(0)
    x, logits, means, log_scales = torch.randn(3, 7, 4), torch.randn(5), torch.randn(5, 4), torch.randn(5, 4) * 0.3
    components = torch.distributions.Normal(means, log_scales.exp())
    explicit = torch.logsumexp(
        torch.log_softmax(logits, 0) + components.log_prob(x[..., None, :]).sum(-1), dim=-1
    )
    torch.testing.assert_close(gaussian_mixture_log_prob(x, logits, means, log_scales), explicit, atol=1e-4, rtol=1e-4)


def test_map_is_a_fixed_transform_of_patch_nll():
    model = tiny_model().eval()
    model.nll_mean.fill_(10.0)
    model.nll_std.fill_(2.0)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    patch_map = torch.sigmoid((out["patch_nll"] - 10.0) / 2.0 - Z_OFFSET).view(1, 1, 8, 8)
    expected = F.interpolate(patch_map, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["anomaly_map"], expected)


def test_nll_statistics_copy_then_average():
    model = tiny_model()
    model.update_nll_stats(torch.tensor([[1.0, 3.0]]))
    assert float(model.nll_mean) == 2.0 and float(model.nll_std) == pytest.approx(math.sqrt(2))
    model.update_nll_stats(torch.tensor([[12.0, 12.0]]))
    assert float(model.nll_mean) == pytest.approx(3.0)


def test_loss_weights():
    x = torch.rand(2, 3, 32, 32)
    total, parts = vtadl_loss(x, x, torch.full((2, 16), 1.5))
    assert parts["mse"] == 0 and parts["nll"] == 1.5
    torch.testing.assert_close(total, torch.tensor(1.5), atol=1e-5, rtol=0)
    x_hat = (x + 0.1).clamp(0, 1)
    total, parts = vtadl_loss(x, x_hat, torch.zeros(2, 16))
    torch.testing.assert_close(total, 5 * parts["mse"] + 0.5 * parts["ssim"])


def test_configuration_checks():
    cfg = RunConfig.for_model("vtadl", {"data": {"image_size": [64, 64]}, "model": {"base_width": 16}})
    assert cfg.synthesis.rotation_degrees == 0
    with pytest.raises(ConfigError, match="power of two"):
        cfg.updated({"model.patch_size": 12})
    with pytest.raises(ConfigError, match="divisible by the patch size"):
        build_model(cfg.updated({"data.image_size": (96, 96), "model.patch_size": 64}))
    with pytest.raises(ConfigError, match="unknown setting 'model.norm' for method 'vtadl'"):
        cfg.updated({"model.norm": "batch"})
    with pytest.raises(ConfigError, match="heads"):
        cfg.updated({"model.heads": 3})


def test_short_run_lowers_loss_and_checkpoint_round_trip(make_config):
    tiny_model_section = {"base_width": 16, **TINY_OPTIONS}
    cfg = RunConfig.for_model("vtadl", {**make_config(epochs=10).to_dict(), "model": tiny_model_section})
    result = Trainer(cfg, show_progress=False).fit()
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss_mse"] < log[0]["loss_mse"] and log[-1]["loss_ssim"] < log[0]["loss_ssim"]
    # The mixture keeps up with the moving embeddings: after 50 steps it fits training patches at least about
    # as well as a Gaussian fitted to them by moments (at the autoencoder's learning rate it lags ~16 nats).
    images = torch.stack([read_image(s.image, 3, (64, 64)) for s in index_dataset(cfg.data).train[:32]])
    trained = build_model(cfg).eval()
    trained.load_state_dict(torch.load(result.last_checkpoint, weights_only=True)["model"])
    with torch.no_grad():
        tokens = trained.encode(images).flatten(0, 1)
        moments = GaussianMixture(tokens.shape[1], 1)
        moments.means.copy_(tokens.mean(0, keepdim=True))
        moments.log_scales.copy_(tokens.std(0).log()[None])
        assert trained.density(tokens).mean() < moments(tokens).mean() + 3.0
    state = torch.load(result.best_checkpoint, weights_only=True)
    assert state["model"]["nll_updates"] > 0
    _, expected, got = checkpoint_round_trip(result.best_checkpoint, cfg)
    torch.testing.assert_close(torch.from_numpy(got.anomaly_map), expected["anomaly_map"][:, 0])
    torch.testing.assert_close(torch.from_numpy(got.score), expected["score"])
    torch.testing.assert_close(torch.from_numpy(got.extra_scores["reconstruction"]), expected["score_reconstruction"])
