"""Loss terms (GRD-Net paper eq. 1–6). All inputs are cast to float32 (safe under bf16 autocast)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor

from grdnet.config import LossConfig

PROB_EPS = 1e-6
"""Probabilities are clamped to [PROB_EPS, 1 − PROB_EPS] before taking logs."""


def feature_matching_loss(f_real: Tensor, f_fake: Tensor) -> Tensor:
    """L_adv = mean of (f(x) − f(x̂))² over all elements; f_* are the discriminator's last feature maps."""
    return F.mse_loss(f_fake.float(), f_real.float())


def latent_loss(z: Tensor, z_hat: Tensor) -> Tensor:
    """L_enc = mean of (z − ẑ)² over all elements."""
    return F.mse_loss(z_hat.float(), z.float())


def ssim_term(x: Tensor, x_hat: Tensor, window: int = 11) -> Tensor:
    """1 − mean SSIM(x, x̂) for images in [0, 1] (Gaussian window, σ 1.5); 0 for identical images.

    Uses kornia's SSIM map with eps=0 (the textbook formula); note `kornia.losses.ssim_loss` would give
    (1 − SSIM) / 2 instead.
    """
    return 1.0 - ssim(x.float(), x_hat.float(), window, max_val=1.0, eps=0.0).mean()


def contextual_loss(x: Tensor, x_hat: Tensor, w_l1: float = 1.0, w_ssim: float = 1.0, window: int = 11) -> Tensor:
    """L_con = w_l1 · mean |x − x̂| + w_ssim · (1 − SSIM(x, x̂)); x, x̂ (B, C, H, W) in [0, 1].

    The SSIM term is skipped when w_ssim is 0 (GANomaly's plain L1).
    """
    l1 = w_l1 * F.l1_loss(x_hat.float(), x.float())
    return l1 + w_ssim * ssim_term(x, x_hat, window) if w_ssim else l1


def generator_loss(
    x: Tensor,
    x_hat: Tensor,
    z: Tensor,
    z_hat: Tensor,
    f_real: Tensor,
    f_fake: Tensor,
    cfg: LossConfig | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_gan = w_adv · L_adv + w_con · L_con + w_enc · L_enc (paper eq. 3; weights from `cfg`).

    x: clean target image; x_hat: reconstruction; f_real / f_fake: discriminator features of x / x̂ (with D
    frozen; f_real carries no generator gradient). Returns (total, parts) where parts holds detached
    `adv`, `con`, `enc` for logging.
    """
    cfg = cfg or LossConfig()
    parts = {
        "adv": feature_matching_loss(f_real, f_fake),
        "con": contextual_loss(x, x_hat, cfg.w_l1, cfg.w_ssim, cfg.ssim_window),
        "enc": latent_loss(z, z_hat),
    }
    total = cfg.w_adv * parts["adv"] + cfg.w_con * parts["con"] + cfg.w_enc * parts["enc"]
    return total, {name: value.detach() for name, value in parts.items()}


def focal_loss(probability: Tensor, target: Tensor, gamma: float = 2.0, alpha: float | None = 0.25) -> Tensor:
    """Mean binary focal loss on probabilities: −α_t (1 − p_t)^γ log p_t, with α_t = α for target 1 and
    1 − α for target 0 (no weighting when alpha is None). Same shapes; target in [0, 1]."""
    p = probability.float().clamp(PROB_EPS, 1.0 - PROB_EPS)
    target = target.float()
    p_t = p * target + (1.0 - p) * (1.0 - target)
    loss = -((1.0 - p_t) ** gamma) * torch.log(p_t)
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss.mean()


def segmentation_loss(
    anomaly_map: Tensor,
    target_mask: Tensor,
    roi: Tensor | None = None,
    roi_on: Literal["prediction", "target"] = "prediction",
    gamma: float = 2.0,
    alpha: float | None = 0.25,
) -> Tensor:
    """L_seg: focal loss between the anomaly map A and the defect mask M, restricted by the ROI.

    roi_on="prediction" (paper eq. 5): FocalLoss(A ⊙ ROI, M) — predictions outside the ROI are not penalised,
    target pixels outside the ROI still count. roi_on="target" (paper flowchart): FocalLoss(A, M ⊙ ROI) —
    target outside the ROI is ignored, predicted activity outside it is penalised. A, M, ROI (B, 1, H, W);
    A in [0, 1]; M, ROI in {0, 1}; roi=None means the whole image.
    """
    if roi_on not in ("prediction", "target"):
        raise ValueError(f"roi_on must be 'prediction' or 'target', got {roi_on!r}")
    if roi is None:
        return focal_loss(anomaly_map, target_mask, gamma, alpha)
    if roi_on == "prediction":
        return focal_loss(anomaly_map.float() * roi, target_mask, gamma, alpha)
    return focal_loss(anomaly_map, target_mask.float() * roi, gamma, alpha)


def discriminator_loss(
    real_logits: Tensor,
    fake_logits: Tensor,
    extra_fake_logits: Tensor | None = None,
    gamma: float = 1.0,
) -> Tensor:
    """BCE-with-logits: real (clean x) → 1, fake (detached x̂) → 0, each mean-reduced and summed; optional
    extra fakes (known defect images) → 0, weighted by gamma. Logits (B,)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    loss = loss + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if extra_fake_logits is not None:
        extra = extra_fake_logits.float()
        loss = loss + gamma * F.binary_cross_entropy_with_logits(extra, torch.zeros_like(extra))
    return loss


def kdgan_generator_loss(
    fake_logits: Tensor, f_real: Tensor, f_fake: Tensor, w_fm: float = 1.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Unconditional GAN generator loss: non-saturating BCE(D(G(z)) → real) + w_fm · feature matching of the
    batch-mean discriminator features, ‖E f(x) − E f(G(z))‖² (Salimans et al. 2016; x and G(z) are unpaired).

    fake_logits (B,); f_real (detached) / f_fake (B, F, h, w). Returns (total, detached parts `ns`, `fm`).
    """
    fake_logits = fake_logits.float()
    parts = {
        "ns": F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits)),
        "fm": feature_matching_loss(f_real.float().mean(dim=0), f_fake.float().mean(dim=0)),
    }
    total = parts["ns"] + w_fm * parts["fm"]
    return total, {name: value.detach() for name, value in parts.items()}


def draem_loss(
    clean: Tensor,
    reconstruction: Tensor,
    anomaly_map: Tensor,
    mask: Tensor,
    roi: Tensor | None = None,
    cfg: LossConfig | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DRAEM: mean (x − x̂)² + (1 − SSIM(x, x̂)) + focal(A, M) (ROI as in `segmentation_loss`, γ / α from `cfg`).

    clean / reconstruction (B, C, H, W) in [0, 1]; anomaly_map / mask / roi (B', 1, H, W) — B' ≥ B when
    images without a clean target (known defects) are segmented too. Returns (total, detached parts
    `l2`, `ssim`, `seg`).
    """
    cfg = cfg or LossConfig()
    parts = {
        "l2": F.mse_loss(reconstruction.float(), clean.float()),
        "ssim": ssim_term(clean, reconstruction, cfg.ssim_window),
        "seg": segmentation_loss(anomaly_map, mask, roi, cfg.roi_on, cfg.focal_gamma, cfg.focal_alpha),
    }
    return sum(parts.values()), {name: value.detach() for name, value in parts.items()}


def vtadl_loss(
    x: Tensor, x_hat: Tensor, patch_nll: Tensor, w_mse: float = 5.0, w_ssim: float = 0.5, window: int = 11
) -> tuple[Tensor, dict[str, Tensor]]:
    """VT-ADL: w_mse · mean (x − x̂)² + w_ssim · (1 − SSIM) + mean per-patch mixture NLL (B, N).

    (1 − SSIM) differs from the paper's −SSIM by a constant only. Returns (total, detached parts
    `mse`, `ssim`, `nll`).
    """
    parts = {
        "mse": F.mse_loss(x_hat.float(), x.float()),
        "ssim": ssim_term(x, x_hat, window),
        "nll": patch_nll.float().mean(),
    }
    total = w_mse * parts["mse"] + w_ssim * parts["ssim"] + parts["nll"]
    return total, {name: value.detach() for name, value in parts.items()}


def margin_loss(lengths: Tensor, labels: Tensor, m_plus: float = 0.9, m_minus: float = 0.1,
                down_weight: float = 0.5) -> Tensor:
    """Capsule margin loss (Sabour et al. 2017), batch mean.

    `lengths` (B, K) class-capsule lengths in [0, 1), `labels` (B,) class indices. Per class k:
    T_k·max(0, m⁺ − ‖v_k‖)² + down_weight·(1 − T_k)·max(0, ‖v_k‖ − m⁻)², summed over k.
    """
    target = F.one_hot(labels.long(), lengths.shape[1]).to(lengths.dtype)
    present = target * F.relu(m_plus - lengths).pow(2)
    absent = down_weight * (1.0 - target) * F.relu(lengths - m_minus).pow(2)
    return (present + absent).sum(dim=1).mean()
