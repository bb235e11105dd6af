"""Perlin anomaly masks: shapes, binary values, coverage statistics, minimum area, determinism."""

import pytest
import torch

from grdnet.errors import ConfigError
from grdnet.synthesis import ellipse_masks, min_area_pixels, perlin_masks, perlin_noise


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@pytest.mark.parametrize("batch", [1, 16])
def test_shape_dtype_and_binary(batch):
    masks = perlin_masks(batch, 32, 48, gen(), "cpu")
    assert masks.shape == (batch, 1, 32, 48)
    assert masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_coverage_statistics():
    # Noise scaled to about [-1, 1] and thresholded at 0.5 covers ~5.5 % of the image on average
    # (measured: 5.4–5.6 % over 4 seeds × 300 masks at 32² and 64²; 5th–95th percentile ≈ 2–10 %).
    # The band below is wide enough for any seed and catches masks that are almost empty or huge.
    masks = perlin_masks(300, 64, 64, gen(), "cpu")
    coverage = masks.mean(dim=(1, 2, 3))
    assert 0.035 < coverage.mean().item() < 0.08
    assert coverage.max().item() < 0.5
    assert (coverage > 0.3).float().mean().item() <= 0.02
    assert (masks.sum(dim=(1, 2, 3)) >= min_area_pixels(25, 64, 64)).all()


def test_min_area_scales_with_image_area():
    assert min_area_pixels(25, 256, 256) == 25
    assert min_area_pixels(25, 64, 64) == 2
    assert min_area_pixels(0, 32, 32) == 1  # never empty
    masks = perlin_masks(64, 64, 64, gen(1), "cpu", min_area=2000)
    assert (masks.sum(dim=(1, 2, 3)) >= min_area_pixels(2000, 64, 64)).all()


def test_fallback_when_noise_never_passes_threshold():
    masks = perlin_masks(8, 32, 32, gen(), "cpu", threshold=2.0, max_rounds=2)
    assert (masks.sum(dim=(1, 2, 3)) >= 1).all()
    assert set(masks.unique().tolist()) == {0.0, 1.0}


def test_ellipse_masks_reach_min_area():
    masks = ellipse_masks(16, 32, 32, 300, gen(), torch.device("cpu"))
    assert (masks.sum(dim=(1, 2, 3)) >= 250).all()


def test_deterministic_per_seed():
    a = perlin_masks(8, 32, 32, gen(3), "cpu")
    b = perlin_masks(8, 32, 32, gen(3), "cpu")
    c = perlin_masks(8, 32, 32, gen(4), "cpu")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_noise_range_and_scale_clamp():
    res = torch.full((64,), 8.0)
    noise = perlin_noise(res, res, torch.rand(64, generator=gen()) * 3, 32, 32, (8, 8), gen())
    assert noise.abs().max().item() <= 1.0 + 1e-5
    assert noise.std().item() > 0.1
    # Scales above the image size are clamped (2**7 > 32) and still give valid masks.
    masks = perlin_masks(4, 32, 32, gen(), "cpu", scale_exponents=(6, 8))
    assert (masks.sum(dim=(1, 2, 3)) > 0).all()


def test_bad_scale_exponents():
    with pytest.raises(ConfigError, match="perlin_scale_exponents"):
        perlin_masks(2, 32, 32, gen(), "cpu", scale_exponents=(3, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator():
    masks = perlin_masks(4, 64, 64, gen(0, "cuda"), "cuda")
    assert masks.device.type == "cuda"
    assert (masks.sum(dim=(1, 2, 3)) > 0).all()


def test_stroke_masks_are_thin_curves_of_the_asked_length():
    """Each stroke is non-empty, a few pixels wide (area ≈ length × width) and spans about its length."""
    import numpy as np
    from scipy import ndimage

    from grdnet.synthesis.perlin import stroke_masks

    masks = stroke_masks(64, 96, 96, (20.0, 30.0), (1.0, 3.0), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert masks.shape == (64, 1, 96, 96) and set(masks.unique().tolist()) <= {0.0, 1.0}
    area = masks.flatten(1).sum(1)
    assert (area >= 1).all()
    for mask in masks[:, 0].numpy():
        ys, xs = mask.nonzero()
        if ys.size < 10:  # mostly outside the image
            continue
        extent = max(np.ptp(ys), np.ptp(xs))
        assert extent <= 31  # never longer than the longest asked length
        assert ys.size <= 3.5 * 31  # thin: at most ~3 px wide along its length
        assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 1  # one connected curve, no gaps
    assert (area > 0).float().mean() == 1.0 and area.median() >= 20  # most lie well inside the image
