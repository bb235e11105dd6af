"""Rotation of images and ROIs: exact quarter turns, same angle for both, binary ROIs, angle range."""

import pytest
import torch

from grdnet.synthesis import random_rotate, rotate


def asymmetric_pattern(size: int = 16) -> torch.Tensor:
    """(1, 1, size, size) binary L-shape with a dot: no rotation maps it onto itself."""
    roi = torch.zeros(1, 1, size, size)
    roi[..., 2 : size - 3, 3:6] = 1
    roi[..., size - 6 : size - 3, 3 : size - 4] = 1
    roi[..., 3, size - 4] = 1
    return roi


@pytest.mark.parametrize(("k", "degrees"), [(1, 90.0), (-1, -90.0), (2, 180.0)])
def test_quarter_turns_match_rot90(k, degrees):
    roi = asymmetric_pattern()
    image = torch.rand(1, 3, 16, 16) * roi
    angles = torch.tensor([degrees])
    assert torch.allclose(rotate(image, angles), torch.rot90(image, k, dims=(-2, -1)), atol=1e-5)
    assert torch.equal(rotate(roi, angles, mode="nearest"), torch.rot90(roi, k, dims=(-2, -1)))


def test_image_and_roi_get_the_same_angle_and_roi_stays_binary():
    roi = asymmetric_pattern(32).repeat(16, 1, 1, 1)
    image = roi.repeat(1, 3, 1, 1)
    out_image, out_roi = random_rotate(image, roi, 90.0, torch.Generator().manual_seed(0))
    assert out_image.shape == image.shape and out_roi.shape == roi.shape
    assert set(out_roi.unique().tolist()) <= {0.0, 1.0}
    assert 0.0 <= out_image.min().item() and out_image.max().item() <= 1.0
    # Where the bilinear image is clearly 0 or 1 the nearest-neighbour ROI must agree.
    gray = out_image.mean(dim=1, keepdim=True)
    assert torch.equal(out_roi[gray > 0.9], torch.ones_like(out_roi[gray > 0.9]))
    assert torch.equal(out_roi[gray < 0.1], torch.zeros_like(out_roi[gray < 0.1]))
    assert not torch.equal(out_roi[0], out_roi[1])  # angles differ per sample


def test_angle_range_and_black_corners():
    ones = torch.ones(64, 1, 32, 32)
    bound = 1 - rotate(ones[:1], torch.tensor([10.0])).mean().item()  # area lost at exactly 10°
    out, _ = random_rotate(ones, ones, 10.0, torch.Generator().manual_seed(1))
    lost = 1 - out.mean(dim=(1, 2, 3))
    assert (lost <= bound + 1e-4).all()
    assert (lost > 0).any()
    corner = rotate(ones[:1], torch.tensor([45.0]), mode="nearest")
    assert corner[0, 0, 0, 0] == 0 and corner[0, 0, 16, 16] == 1


def test_zero_degrees_is_identity_and_roi_optional():
    image, roi = torch.rand(2, 3, 16, 16), torch.ones(2, 1, 16, 16)
    out_image, out_roi = random_rotate(image, roi, 0.0, torch.Generator())
    assert out_image is image and out_roi is roi
    out_image, out_roi = random_rotate(image, None, 30.0, torch.Generator())
    assert out_roi is None and out_image.shape == image.shape


def test_non_square_half_turn():
    image = torch.rand(2, 1, 16, 32)
    assert torch.allclose(rotate(image, torch.tensor([180.0, 180.0])), torch.rot90(image, 2, (-2, -1)), atol=1e-5)
