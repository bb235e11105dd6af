"""Loss terms on inputs with known answers, and the ROI switch of the segmentation loss."""

import math

import pytest
import torch

from grdnet.config import LossConfig
from grdnet.losses import (
    contextual_loss,
    discriminator_loss,
    feature_matching_loss,
    focal_loss,
    generator_loss,
    latent_loss,
    segmentation_loss,
    ssim_term,
)


def smooth_images(batch=2, channels=3, size=32):
    torch.manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(batch, channels, 8, 8), size=size, mode="bilinear") * 0.6 + 0.2


def test_identical_inputs_give_zero():
    x = smooth_images()
    f = torch.randn(2, 16, 4, 4)
    z = torch.randn(2, 32)
    assert feature_matching_loss(f, f.clone()).item() == 0
    assert latent_loss(z, z.clone()).item() == 0
    assert ssim_term(x, x.clone()).item() == pytest.approx(0, abs=1e-6)
    assert contextual_loss(x, x.clone()).item() == pytest.approx(0, abs=1e-6)


def test_feature_matching_and_latent_hand_values():
    f_real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    f_fake = torch.tensor([[1.0, 0.0], [3.0, 7.0]])
    assert feature_matching_loss(f_real, f_fake).item() == pytest.approx((4 + 9) / 4)
    assert latent_loss(f_real, f_fake).item() == pytest.approx((4 + 9) / 4)


def test_contextual_l1_of_constant_shift():
    x = smooth_images()
    # A constant shift of 0.1 changes SSIM only through its luminance term, so use w_ssim=0 for the L1 part.
    assert contextual_loss(x, x + 0.1, w_l1=1.0, w_ssim=0.0).item() == pytest.approx(0.1, abs=1e-6)
    assert contextual_loss(x, x + 0.1, w_l1=3.0, w_ssim=0.0).item() == pytest.approx(0.3, abs=1e-6)


def test_ssim_term_is_one_minus_ssim():
    x = smooth_images()
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    term = ssim_term(x, noisy)
    assert 0 < term.item() < 2
    combined = contextual_loss(x, noisy, w_l1=0.0, w_ssim=1.0)
    assert combined.item() == pytest.approx(term.item())
    # Structure flipped: SSIM near −1 is possible, so the term can exceed 1 (unlike kornia's (1−SSIM)/2 loss).
    assert ssim_term(x, 1 - x).item() > 1


def test_generator_loss_weights():
    x = smooth_images()
    x_hat = (x + 0.05).clamp(0, 1)
    z, z_hat = torch.zeros(2, 4), torch.ones(2, 4)
    f_real, f_fake = torch.zeros(2, 3), torch.full((2, 3), 2.0)
    cfg = LossConfig()
    total, parts = generator_loss(x, x_hat, z, z_hat, f_real, f_fake, cfg)
    assert parts["adv"].item() == pytest.approx(4.0) and parts["enc"].item() == pytest.approx(1.0)
    assert parts["con"].item() == pytest.approx(contextual_loss(x, x_hat).item())
    assert total.item() == pytest.approx(1 * 4.0 + 50 * parts["con"].item() + 1 * 1.0, rel=1e-6)
    total2, _ = generator_loss(x, x_hat, z, z_hat, f_real, f_fake, LossConfig(w_adv=0.5, w_con=1, w_enc=3))
    assert total2.item() == pytest.approx(0.5 * 4.0 + parts["con"].item() + 3.0, rel=1e-6)


def test_focal_loss_hand_value():
    p = torch.tensor([0.8, 0.3])
    y = torch.tensor([1.0, 0.0])
    expected = (0.25 * 0.2**2 * -math.log(0.8) + 0.75 * 0.3**2 * -math.log(0.7)) / 2
    assert focal_loss(p, y, gamma=2, alpha=0.25).item() == pytest.approx(expected, rel=1e-5)
    unweighted = (0.2**2 * -math.log(0.8) + 0.3**2 * -math.log(0.7)) / 2
    assert focal_loss(p, y, gamma=2, alpha=None).item() == pytest.approx(unweighted, rel=1e-5)
    assert focal_loss(p, y, gamma=0, alpha=None).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy(p, y).item(), rel=1e-5
    )
    # Saturated probabilities stay finite.
    assert torch.isfinite(focal_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])))


def test_segmentation_loss_without_roi_is_focal():
    a = torch.rand(2, 1, 8, 8)
    m = (torch.rand(2, 1, 8, 8) > 0.7).float()
    plain = focal_loss(a, m)
    for roi_on in ("prediction", "target"):
        assert segmentation_loss(a, m, None, roi_on).item() == pytest.approx(plain.item())
        assert segmentation_loss(a, m, torch.ones_like(m), roi_on).item() == pytest.approx(plain.item())
    with pytest.raises(ValueError, match="roi_on"):
        segmentation_loss(a, m, None, "both")


def test_roi_switch_penalises_as_specified():
    # ROI = left half. Outside it: false positives (A = 0.9, M = 0) in row 0, and target defects the
    # prediction misses (A = 0.05, M = 1) in row 1. Inside the ROI the prediction is good.
    roi = torch.zeros(1, 1, 4, 4)
    roi[..., :, :2] = 1
    a = torch.full((1, 1, 4, 4), 0.05)
    m = torch.zeros(1, 1, 4, 4)
    a[..., 0, 2:] = 0.9
    m[..., 1, 2:] = 1
    a[..., 3, 0] = 0.95
    m[..., 3, 0] = 1

    def loss(pred, target, roi_on):
        return segmentation_loss(pred, target, roi, roi_on).item()

    quiet_outside = a.clone()
    quiet_outside[..., 0, 2:] = 0.05
    no_target_outside = m * roi

    # prediction: predictions outside the ROI are not penalised …
    assert loss(a, m, "prediction") == pytest.approx(loss(quiet_outside, m, "prediction"))
    # … but target pixels outside the ROI still count (I = 0 there, M = 1).
    assert loss(a, m, "prediction") > loss(a, no_target_outside, "prediction") + 0.1
    # target: target outside the ROI is ignored …
    assert loss(a, m, "target") == pytest.approx(loss(a, no_target_outside, "target"))
    # … but predicted activity outside the ROI is penalised.
    assert loss(a, m, "target") > loss(quiet_outside, m, "target") + 0.05
    # Net effect on this case: prediction mode pays for the missed outside targets, target mode for the
    # false positives; the former is the larger penalty here.
    assert loss(a, m, "prediction") > loss(a, m, "target")


def test_discriminator_loss_bce():
    zeros = torch.zeros(4)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.5])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(2)) + bce(fake, torch.zeros(2))
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item())
    extra = torch.tensor([1.0])
    with_extra = discriminator_loss(real, fake, extra, gamma=0.5)
    assert with_extra.item() == pytest.approx(expected.item() + 0.5 * math.log1p(math.e))
    assert discriminator_loss(torch.full((2,), 20.0), torch.full((2,), -20.0)).item() < 1e-6
