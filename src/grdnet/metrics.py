"""Evaluation metrics and threshold calibration (pixel metrics as MVTec AD defines them).

Inputs may be numpy arrays or torch tensors. Image scores are `(N,)`, labels `(N,)` with 0 = normal and
1 = defect; anomaly maps, defect masks and ROIs are `(N, H, W)` or `(N, 1, H, W)` (masks and ROIs: 1 inside,
0 outside; one `(H, W)` ROI may stand for all images). A metric that needs both classes returns NaN with a
warning when one is missing, so one bad category never stops an evaluation.

Pixel metrics are exact (no threshold grid) and sort only the normal pixels: about 40 M pixels (600 images
of 256²) take a few seconds and about 1 GB of memory. Pixel scores are compared in float32.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------- input handling


def _array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.is_floating_point() and values.dtype != torch.float64:
            values = values.float()
        values = values.numpy()
    return np.asarray(values)


def _scores(scores: Any) -> np.ndarray:
    values = _array(scores).astype(np.float64).ravel()
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; check the model outputs")
    return values


def _labels(labels: Any, count: int | None = None) -> np.ndarray:
    values = _array(labels).ravel()
    if not np.isin(values, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (defect)")
    if count is not None and values.size != count:
        raise ValueError(f"got {values.size} labels for {count} scores")
    return values.astype(np.int64)


def _stack(values: Any, what: str) -> np.ndarray:
    """`(N, H, W)` view of `(N, H, W)` or `(N, 1, H, W)` data."""
    array = _array(values)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise ValueError(f"{what} must have shape (N, H, W) or (N, 1, H, W), got {array.shape}")
    return array


def _masks_and_rois(masks: Any, rois: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    defect = _stack(masks, "masks") > 0.5
    if defect.shape != shape:
        raise ValueError(f"masks shape {defect.shape} does not match {shape}")
    if rois is None:
        return defect, None
    roi = _array(rois)
    inside = _stack(roi[None] if roi.ndim == 2 else roi, "rois") > 0.5
    try:
        return defect, np.broadcast_to(inside, shape)
    except ValueError:
        raise ValueError(f"rois shape {inside.shape} does not match {shape}") from None


def _pixel_inputs(maps: Any, masks: Any, rois: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """float32 maps, bool defect masks and bool ROIs (or None), all `(N, H, W)`."""
    scores = _stack(maps, "maps").astype(np.float32, copy=False)
    if np.isnan(scores).any():
        raise ValueError("anomaly maps contain NaN; check the model outputs")
    defect, inside = _masks_and_rois(masks, rois, scores.shape)
    return scores, defect, inside


def _one_class(what: str, detail: str) -> float:
    warnings.warn(f"{what} is undefined ({detail}); reporting NaN", RuntimeWarning, stacklevel=3)
    return math.nan


# ---------------------------------------------------------------- curves


def _curve_area(
    scores: np.ndarray, payload: np.ndarray, weights: np.ndarray | None, fpr_limit: float, what: str
) -> float:
    """Area under the (FPR, weighted TPR) curve for FPR in [0, fpr_limit].

    `scores` float32 `(P,)`; `payload` `(P,)` int or bool: 0 for a normal pixel, k > 0 for a defect pixel of weight
    `weights[k]` (every defect pixel weighs 1 when `weights` is None). The curve is the MVTec AD reference
    one: a point per distinct score (thresholds from high to low, "positive" means score >= threshold),
    straight segments between points, starting at (0, 0). It is the weighted sum of one ramp per defect
    pixel, 0 before the FPR where the pixel's score is reached and 1 after, rising linearly across the
    normal pixels tied with it; integrating each ramp up to the limit gives the exact area. Both sides are
    sorted first: `searchsorted` with sorted queries is many times faster than with random ones.
    """
    normal = payload == 0
    negatives = scores[normal]
    positives = scores[~normal]
    if weights is None:
        positives.sort()
        positive_weights = np.ones(positives.size)
    else:
        order = np.argsort(positives)
        positives, positive_weights = positives[order], weights[payload[~normal]][order]
    count, total_weight = negatives.size, float(positive_weights.sum())
    if count == 0 or total_weight == 0:
        return _one_class(what, f"{count} normal and {positives.size} defect pixels")
    limit = fpr_limit * count  # the FPR limit in normal pixels
    if fpr_limit < 1:
        # Normal pixels scoring below the one where the FPR passes the limit never reach the integrated part.
        cut = count - min(count, math.ceil(limit))
        negatives.partition(cut)
        negatives = negatives[negatives >= negatives[cut]]
    negatives.sort()
    above = (negatives.size - np.searchsorted(negatives, positives, side="right")).astype(np.float64)
    at_least = (negatives.size - np.searchsorted(negatives, positives, side="left")).astype(np.float64)
    ramp_area = np.where(
        at_least <= limit,
        limit - (above + at_least) / 2,
        np.where(above < limit, (limit - above) ** 2 / (2 * np.maximum(at_least - above, 1)), 0.0),
    )
    return float(positive_weights @ ramp_area) / (total_weight * count)


# ---------------------------------------------------------------- image and pixel metrics


def image_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC of image scores `(N,)` against labels `(N,)`; NaN if one class is missing."""
    values = _scores(scores)
    truth = _labels(labels, values.size)
    if np.unique(truth).size < 2:
        return _one_class("image AUROC", f"{truth.size} images, all of one class")
    return float(roc_auc_score(truth, values))


def pixel_auroc(maps: Any, masks: Any, rois: Any = None) -> float:
    """ROC area over all test pixels (inside the ROIs when given), pooled over images; in [0, 1] or NaN."""
    scores, defect, inside = _pixel_inputs(maps, masks, rois)
    if inside is not None:
        scores, defect = scores[inside], defect[inside]
    return _curve_area(scores.ravel(), defect.ravel(), None, 1.0, "pixel AUROC")


def pixel_aupro(maps: Any, masks: Any, rois: Any = None, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`, divided by `fpr_limit` (MVTec AD definition).

    Each 8-connected ground-truth region of each image weighs the same: PRO(t) is the mean over regions of
    the fraction of the region's pixels scoring >= t; FPR(t) is the share of normal pixels scoring >= t.
    With ROIs, regions come from the full mask and only their pixels inside the ROI count, and FPR uses the
    normal pixels inside the ROI. Empty masks add no region. A perfect map gives 1.0; NaN without regions.
    """
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    scores, defect, inside = _pixel_inputs(maps, masks, rois)
    region_ids = np.zeros(defect.shape, dtype=np.int32)  # 0 = normal pixel, k > 0 = k-th region overall
    regions = 0
    for ids, mask in zip(region_ids, defect):
        count = ndimage.label(mask, structure=_EIGHT_CONNECTED, output=ids)
        ids[ids > 0] += regions
        regions += count
    if inside is not None:
        scores, region_ids = scores[inside], region_ids[inside]
    region_ids = region_ids.ravel()
    sizes = np.bincount(region_ids, minlength=regions + 1).astype(np.float64)
    weights = np.divide(1.0, sizes, out=np.zeros_like(sizes), where=sizes > 0)
    weights[0] = 0.0
    return _curve_area(scores.ravel(), region_ids, weights, fpr_limit, "pixel AUPRO") / fpr_limit


# ---------------------------------------------------------------- thresholds


def threshold_metrics(scores: Any, labels: Any, threshold: float) -> dict[str, Any]:
    """F1, precision, recall, accuracy and confusion counts when "defect" means `score >= threshold`.

    A ratio with a zero denominator (no predicted or no actual defects) is reported as 0.0.
    """
    values = _scores(scores)
    truth = _labels(labels, values.size).astype(bool)
    predicted = values >= threshold
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    tn = int(np.sum(~predicted & ~truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "F1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        "accuracy": (tp + tn) / values.size if values.size else math.nan,
        "threshold": float(threshold),
        "TP": tp,
        "FP": fp,
        "TN": tn,
        "FN": fn,
    }


def _best_f1(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(best F1, its threshold t, the highest score below t, or t when none) for "defect iff score >= t"."""
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    denominator = precision[:-1] + recall[:-1]
    f1 = np.divide(2 * precision[:-1] * recall[:-1], denominator, out=np.zeros_like(denominator), where=denominator > 0)
    best = int(np.argmax(f1))
    threshold = float(thresholds[best])
    below = scores[scores < threshold]
    return float(f1[best]), threshold, float(below.max()) if below.size else threshold


def f1_max(scores: Any, labels: Any) -> dict[str, float]:
    """Best F1 over all thresholds, chosen with the test labels: an *oracle* figure, not an operating point."""
    values = _scores(scores)
    truth = _labels(labels, values.size)
    if not truth.any():
        nan = _one_class("F1-max", "no defect images")
        return {"F1_max_oracle": nan, "threshold_oracle": nan}
    f1, threshold, _ = _best_f1(values, truth)
    return {"F1_max_oracle": f1, "threshold_oracle": threshold}


def calibrate_threshold(
    normal_scores: Any,
    quantile: float = 0.99,
    margin: float = 0.0,
    anomalous_scores: Any = None,
) -> float:
    """Operating threshold from validation scores only (no test labels); "defect" means `score >= threshold`.

    Base rule: `q + max(margin * (q - median), eps)` with `q` the `quantile` of the normal scores and
    `eps = 1e-6 * max(1, |q|)`. It is always above the median and above `q`, finite, and works with a single
    or constant score (then it sits just above that score). With fewer than `1 / (1 - quantile)` scores the
    quantile is close to the largest one; `margin` adds robustness there.

    With `anomalous_scores` (e.g. synthetic anomalies on the validation images): the cut that maximises
    F1 between normal and anomalous scores, placed in the middle of its gap (halfway to the next lower
    score), but never below the base rule: anomalies can only raise the threshold, never make it flag
    more normal validation images than the quantile allows.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    normal = _scores(normal_scores)
    if normal.size == 0 or not np.isfinite(normal).all():
        raise ValueError("threshold calibration needs at least one finite validation score of a normal image")
    q = float(np.quantile(normal, quantile))
    threshold = q + max(margin * (q - float(np.median(normal))), 1e-6 * max(1.0, abs(q)))
    if anomalous_scores is not None:
        anomalous = _scores(anomalous_scores)
        if anomalous.size:
            values = np.concatenate((normal, anomalous))
            truth = np.concatenate((np.zeros(normal.size), np.ones(anomalous.size)))
            _, cut, below = _best_f1(values, truth)
            threshold = max(threshold, (cut + below) / 2)
    return float(threshold)


# ---------------------------------------------------------------- evaluation


def effective_labels(labels: Any, masks: Any = None, rois: Any = None) -> np.ndarray:
    """Image labels `(N,)` under the ROIs: a defect image counts as defective only if its mask touches its ROI.

    Normal images stay 0. A defect image with an empty mask (location unknown) keeps its label. Without
    ROIs (or without masks) the labels are returned unchanged.
    """
    truth = _labels(labels)
    if rois is None or masks is None:
        return truth
    defect, inside = _masks_and_rois(masks, rois, _stack(masks, "masks").shape)
    if defect.shape[0] != truth.size:
        raise ValueError(f"got {defect.shape[0]} masks for {truth.size} labels")
    outside_only = defect.any(axis=(1, 2)) & ~(defect & inside).any(axis=(1, 2))
    return np.where(outside_only, 0, truth)


def evaluate(
    scores: Any,
    labels: Any,
    maps: Any = None,
    masks: Any = None,
    rois: Any = None,
    threshold: float | None = None,
    defect_types: list[str] | None = None,
    pixel_labelled: Any = None,
) -> dict[str, Any]:
    """All reported metrics as a JSON-safe dict (plain numbers; undefined metrics are NaN).

    Keys: counts, `image_AUROC`, `F1_max_oracle`, `threshold_oracle`; `pixel_AUROC` and `pixel_AUPRO` when
    `maps` and `masks` are given; `F1`, `precision`, `recall`, `accuracy`, `threshold` and confusion counts
    when `threshold` is given; `per_defect_type` (each defect type against all normal images) when
    `defect_types` `(N,)` is given. With ROIs, labels are `effective_labels`.

    `pixel_labelled` `(N,)` bool marks the images whose mask is ground truth (False: a defect image with an
    image-level label only). Pixel metrics then use only those images, and `pixel_note` says so in one line;
    with no defect image among them the pixel metrics are NaN ("skipped").
    """
    values = _scores(scores)
    truth = _labels(labels, values.size)
    effective = effective_labels(truth, masks, rois)
    results: dict[str, Any] = {
        "num_images": int(values.size),
        "num_normal": int(np.sum(effective == 0)),
        "num_defect": int(np.sum(effective == 1)),
    }
    if rois is not None and masks is not None:
        results["num_defect_outside_roi"] = int(np.sum(truth != effective))
    results["image_AUROC"] = image_auroc(values, effective)
    results.update(f1_max(values, effective))
    if maps is not None and masks is not None:
        results.update(_pixel_metrics(maps, masks, rois, truth, pixel_labelled))
    if threshold is not None:
        results.update(threshold_metrics(values, effective, threshold))
    if defect_types is not None:
        types = np.asarray([str(name) for name in defect_types], dtype=object)
        if types.size != values.size:
            raise ValueError(f"got {types.size} defect types for {values.size} scores")
        normal = effective == 0
        per_type = {}
        for name in sorted(set(types[effective == 1])):
            chosen = (types == name) & (effective == 1)
            per_type[name] = {
                "count": int(chosen.sum()),
                "image_AUROC": image_auroc(values[chosen | normal], effective[chosen | normal]),
            }
        results["per_defect_type"] = per_type
    return results


def _pixel_metrics(maps: Any, masks: Any, rois: Any, labels: np.ndarray, pixel_labelled: Any) -> dict[str, Any]:
    """pixel_AUROC and pixel_AUPRO on the images with pixel labels (see `evaluate`), plus `pixel_note` when some
    images were left out."""
    kept = np.ones(labels.size, dtype=bool) if pixel_labelled is None else _array(pixel_labelled).astype(bool).ravel()
    if kept.all():
        return {"pixel_AUROC": pixel_auroc(maps, masks, rois), "pixel_AUPRO": pixel_aupro(maps, masks, rois)}
    left_out = int((~kept).sum())
    if not labels[kept].any():
        return {"pixel_AUROC": math.nan, "pixel_AUPRO": math.nan,
                "pixel_note": f"pixel metrics skipped: none of the {int(labels.sum())} defect images has a mask "
                              "(image-level labels only)"}
    roi = None if rois is None else _array(rois)
    if roi is not None and roi.ndim >= 3 and roi.shape[0] == labels.size:
        roi = roi[kept]
    return {"pixel_AUROC": pixel_auroc(_array(maps)[kept], _array(masks)[kept], roi),
            "pixel_AUPRO": pixel_aupro(_array(maps)[kept], _array(masks)[kept], roi),
            "pixel_note": f"pixel metrics on {int(kept.sum())} of {labels.size} images: {left_out} defect images "
                          "have no mask (image-level labels)"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def save_json(results: dict[str, Any], path: str | Path) -> Path:
    """Write `results` as indented JSON (NaN and infinities become null); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n")
    return path
