"""Validation without test labels: held-out normal images, clean and with fixed synthetic anomalies.

It picks the best checkpoint and calibrates the operating threshold; the test split is never touched.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from grdnet.config import RunConfig
from grdnet.metrics import calibrate_threshold, image_auroc, pixel_auroc
from grdnet.runtime import autocast
from grdnet.seeds import torch_generator
from grdnet.synthesis import AnomalySynthesizer
from grdnet.tiling import wrap_for_inference


@torch.no_grad()
def predict_batches(model: nn.Module, images: torch.Tensor, regions: torch.Tensor, device: torch.device, bf16: bool,
                    batch_size: int) -> dict[str, torch.Tensor]:
    """Run a `ScoredModel` in eval mode over `images` (N,C,H,W) inspected inside `regions` (N,1,H,W); returns
    CPU float `score` (N,) and `smoothed_map` (N,1,H,W)."""
    was_training = model.training
    model.eval()
    scores, maps = [], []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            region = regions[start : start + batch_size].to(device, non_blocking=True)
            with autocast(device, bf16):
                out = model(batch, region)
            scores.append(out["score"].float().cpu())
            maps.append(out["smoothed_map"].float().cpu())
    finally:
        model.train(was_training)
    return {"score": torch.cat(scores), "smoothed_map": torch.cat(maps)}


class Validator:
    """Scores a model on validation normals and on the same images with synthetic anomalies.

    `images` (N,C,H,W) in [0,1] are the held-out normal images, `rois` (N,1,H,W) their ROIs and `valid`
    (N,1,H,W) where each image lies (0 on "fit" padding); the synthetic set is drawn once, from a fixed seed,
    so every validation compares checkpoints on identical inputs. As in the test protocol, a synthetic defect
    counts only where it touches the ROI, pixel metrics are computed inside the ROI, and images are scored
    inside their ROI and never on the padding, with the `Predictor`'s `ScoringHead`. Anomalies are drawn on the whole images (data.image_size) and a tiled
    model runs over them as at test time (`wrap_for_inference`).
    """

    def __init__(self, images: torch.Tensor, rois: torch.Tensor, valid: torch.Tensor, cfg: RunConfig,
                 device: torch.device, bf16: bool) -> None:
        self.cfg, self.device, self.bf16 = cfg, device, bf16
        self.clean, self.rois, self.regions = images, rois, rois * valid
        synth_cfg = cfg.synthesis.model_copy(update={"probability": 1.0})
        synthesizer = AnomalySynthesizer(synth_cfg, cfg.data.image_size, cfg.data.channels, torch.device("cpu"))
        generator = torch_generator(cfg.train.seed, "validation_anomalies")
        self.corrupted, masks, _ = synthesizer(images, generator) if len(images) else (images, images, None)
        self.masks = masks * rois

    def __len__(self) -> int:
        return len(self.clean)

    def _predict(self, model: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(smoothed maps (N,H,W), scores (N,)) as the `Predictor` gives them for these ROIs."""
        out = predict_batches(model, images, self.regions, self.device, self.bf16, self.cfg.train.batch_size * 4)
        return out["smoothed_map"][:, 0].numpy(), out["score"].numpy()

    def run(self, model: nn.Module) -> dict[str, float]:
        """val_image_AUROC, val_pixel_AUROC, val_pixel_AP on synthetic anomalies, their mean (`val_score`),
        and the operating `threshold` from the clean normal scores."""
        model = wrap_for_inference(model, self.cfg).to(self.device)
        _, normal_scores = self._predict(model, self.clean)
        anomalous_maps, anomalous_scores = self._predict(model, self.corrupted)
        scores = np.r_[normal_scores, anomalous_scores]
        touches_roi = self.masks.flatten(1).amax(1).numpy() > 0.5
        labels = np.r_[np.zeros(len(self.clean)), touches_roi.astype(float)]
        inside = self.rois.numpy().ravel() > 0.5
        maps = anomalous_maps.ravel()[inside]
        masks = self.masks.numpy().ravel()[inside] > 0.5
        results = {
            "val_image_AUROC": float(image_auroc(scores, labels)),
            "val_pixel_AUROC": float(pixel_auroc(anomalous_maps[:, None], self.masks, self.rois)),
            "val_pixel_AP": float(average_precision_score(masks, maps)) if masks.any() else float("nan"),
        }
        finite = [v for v in results.values() if np.isfinite(v)]
        results["val_score"] = float(np.mean(finite)) if finite else float("nan")
        results["threshold"] = float(calibrate_threshold(
            normal_scores, quantile=self.cfg.scoring.threshold_quantile, margin=self.cfg.scoring.threshold_margin
        ))
        return results
