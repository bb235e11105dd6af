"""Validation without test labels: held-out normal images, clean and with fixed synthetic anomalies.

It fits the per-position normal statistics of a map-scored method's maps (`grdnet.scoring.NormalStats`),
picks the best checkpoint and calibrates the operating threshold; the test split is never touched.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from grdnet.config import RunConfig
from grdnet.methods import get_method
from grdnet.metrics import calibrate_threshold, image_auroc, pixel_auroc
from grdnet.runtime import autocast
from grdnet.scoring import NormalStats, ScoringHead
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


MIN_NORMALS_FOR_STATS = 2
"""Cross-fitting needs a normal outside each fold; below this the maps stay raw (`NormalStats` shrinks the
per-position moments of few normals toward the image-wide ones, so small sets are safe)."""

STATS_FOLDS = 5


class Validator:
    """Scores a model on validation normals and on the same images with synthetic anomalies.

    `images` (N,C,H,W) in [0,1] are the held-out normal images, `rois` (N,1,H,W) their ROIs and `valid`
    (N,1,H,W) where each image lies (0 on "fit" padding); the synthetic set is drawn once, from a fixed seed,
    so every validation compares checkpoints on identical inputs. As in the test protocol, a synthetic defect
    counts only where it touches the ROI, pixel metrics are computed inside the ROI, and images are scored
    inside their ROI and never on the padding, with the `Predictor`'s `ScoringHead`. Anomalies are drawn on the whole images (data.image_size) and a tiled
    model runs over them as at test time (`wrap_for_inference`).

    For a map-scored method with `scoring.standardize` and at least `MIN_NORMALS_FOR_STATS` normals, each run fits `NormalStats` on all
    the clean normals' maps (`normal_stats`, stored with the checkpoint it validates) and scores the synthetic
    set with them. The threshold comes from cross-fitted normal scores: each normal is scored with stats
    fitted on the other folds (`STATS_FOLDS`), as an unseen normal will be; scored in-sample, normals
    look more normal than new ones and the threshold would flag many good parts.
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
        self.normal_stats: NormalStats | None = None

    def __len__(self) -> int:
        return len(self.clean)

    def _predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Raw smoothed maps (N, 1, H, W) of the model over `images`, masked by the inspected regions."""
        return predict_batches(model, images, self.regions, self.device, self.bf16, self.cfg.train.batch_size * 4)["smoothed_map"]

    def _head(self, stats: NormalStats | None) -> ScoringHead:
        return ScoringHead(self.cfg.scoring.smoothing_kernel, get_method(self.cfg.model.name).map_scored, stats)

    def _fit_stats(self, maps: torch.Tensor) -> tuple[NormalStats | None, torch.Tensor]:
        """(stats from every normal, cross-fitted normal scores (N,)); (None, raw scores) when not standardizing."""
        raw_scores = self._head(None).score_smoothed(maps, self.regions)[1]
        scoring = self.cfg.scoring
        if not (scoring.standardize and get_method(self.cfg.model.name).map_scored) or len(maps) < MIN_NORMALS_FOR_STATS:
            return None, raw_scores
        kernel = scoring.smoothing_kernel
        folds = torch.arange(len(maps)) % min(STATS_FOLDS, len(maps))
        scores = torch.empty(len(maps))
        for fold in folds.unique():
            held, rest = folds == fold, folds != fold
            head = self._head(NormalStats.fit(maps[rest], self.regions[rest], kernel))
            scores[held] = head.score_smoothed(maps[held], self.regions[held])[1]
        return NormalStats.fit(maps, self.regions, kernel), scores

    def run(self, model: nn.Module) -> dict[str, float]:
        """val_image_AUROC, val_pixel_AUROC, val_pixel_AP on synthetic anomalies, their mean (`val_score`),
        and the operating `threshold` from the clean normal scores; sets `normal_stats` (None = raw maps)."""
        model = wrap_for_inference(model, self.cfg).to(self.device)
        stats, normal_scores = self._fit_stats(self._predict(model, self.clean))
        self.normal_stats = stats
        anomalous_maps, anomalous_scores = self._head(stats).score_smoothed(self._predict(model, self.corrupted), self.regions)
        anomalous_maps, normal_scores, anomalous_scores = anomalous_maps[:, 0].numpy(), normal_scores.numpy(), anomalous_scores.numpy()
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
