import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from grdnet.metrics import (
    calibrate_threshold,
    effective_labels,
    evaluate,
    f1_max,
    image_auroc,
    pixel_aupro,
    pixel_auroc,
    save_json,
    threshold_metrics,
)


def _reference_aupro(maps, masks, rois, fpr_limit):
    """Straightforward MVTec AD reference: sort every pixel, cumulative FPR / PRO, trapezoid up to the limit."""
    scores, fp_changes, pro_changes = [], [], []
    regions = 0
    for score_map, mask, roi in zip(maps, masks, rois):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        labelled[~roi] = 0
        sizes = np.bincount(labelled.ravel())
        present = [k for k in range(1, count + 1) if k < sizes.size and sizes[k] > 0]
        regions += len(present)
        pro = np.zeros(mask.shape)
        for k in present:
            pro[labelled == k] = 1.0 / sizes[k]
        scores.append(score_map[roi])
        fp_changes.append((~mask)[roi])
        pro_changes.append(pro[roi])
    scores, fp_changes, pro_changes = map(np.concatenate, (scores, fp_changes, pro_changes))
    order = np.argsort(-scores, kind="stable")
    fpr = np.cumsum(fp_changes[order]) / fp_changes.sum()
    pro = np.cumsum(pro_changes[order]) / regions
    keep = np.append(np.diff(scores[order]) != 0, True)
    x, y = np.concatenate(([0.0], fpr[keep])), np.concatenate(([0.0], pro[keep]))
    end = np.searchsorted(x, fpr_limit, side="right")
    area = np.sum((x[1:end] - x[: end - 1]) * (y[1:end] + y[: end - 1]) / 2)
    if end < x.size and x[end - 1] < fpr_limit:
        y_limit = np.interp(fpr_limit, x[end - 1 : end + 1], y[end - 1 : end + 1])
        area += (fpr_limit - x[end - 1]) * (y[end - 1] + y_limit) / 2
    return area / fpr_limit


def _random_pixels(seed, count=8, size=24, levels=None):
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, size, size), dtype=bool)
    for mask in masks[: count - 2]:  # the last two masks stay empty
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 4, 2)
            h, w = rng.integers(1, 6, 2)
            mask[y : y + h, x : x + w] = True
    maps = rng.random(masks.shape).astype(np.float32) + 0.3 * masks
    if levels:
        maps = np.round(maps * levels) / levels  # many ties
    rois = rng.random(masks.shape) < 0.8
    return maps.astype(np.float32), masks, rois


# ---------------------------------------------------------------- AUROC


def test_image_auroc_matches_sklearn_and_accepts_tensors():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = rng.random(200) + 0.4 * labels
    expected = roc_auc_score(labels, scores)
    assert image_auroc(scores, labels) == pytest.approx(expected)
    assert image_auroc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(expected)


def test_auroc_with_one_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(image_auroc([0.1, 0.5], [0, 0]))
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(pixel_auroc(np.random.rand(2, 4, 4), np.zeros((2, 4, 4))))


@pytest.mark.parametrize("levels", [None, 10])
def test_pixel_auroc_matches_sklearn(levels):
    maps, masks, rois = _random_pixels(2, levels=levels)
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert pixel_auroc(maps[:, None], masks[:, None].astype(np.float32), rois[:, None]) == pytest.approx(
        roc_auc_score(masks[rois], maps[rois]), abs=1e-12
    )
    assert pixel_auroc(torch.from_numpy(maps).bfloat16(), torch.from_numpy(masks)) == pytest.approx(
        roc_auc_score(masks.ravel(), torch.from_numpy(maps).bfloat16().float().numpy().ravel()), abs=1e-12
    )


def test_pixel_auroc_ignores_pixels_outside_roi():
    masks = np.zeros((2, 8, 8))
    masks[0, 2:4, 2:4] = 1
    maps = 0.5 * masks + 0.1
    maps[:, :, 6:] = 1.0  # normal pixels scoring above every defect, outside the ROI
    rois = np.ones((8, 8))
    rois[:, 6:] = 0
    assert pixel_auroc(maps, masks) < 0.8
    assert pixel_auroc(maps, masks, rois) == 1.0


# ---------------------------------------------------------------- AUPRO


def test_aupro_perfect_map_is_one_for_any_limit():
    _, masks, _ = _random_pixels(3)
    for limit in (0.3, 0.05, 1.0):
        assert pixel_aupro(masks.astype(np.float32), masks, fpr_limit=limit) == pytest.approx(1.0)


@pytest.mark.parametrize("limit", [0.3, 0.6, 1.0])
def test_aupro_constant_map_is_half_the_limit(limit):
    # one threshold: the curve jumps from (0, 0) to (1, 1); area up to L is L²/2, normalised L/2
    _, masks, _ = _random_pixels(4)
    assert pixel_aupro(np.full(masks.shape, 0.5), masks, fpr_limit=limit) == pytest.approx(limit / 2)


def test_aupro_one_of_two_regions_found():
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[0, 6:9, 6:9] = True
    maps = np.linspace(0.1, 0.9, 100).reshape(1, 10, 10)  # normal pixels: distinct scores in (0, 1)
    maps[0, 1:3, 1:3] = 1.0  # found before any false positive
    maps[0, 6:9, 6:9] = 0.0  # found only at FPR 1
    assert pixel_aupro(maps, masks) == pytest.approx(0.5)


def test_aupro_interpolates_and_normalises_at_the_limit():
    # 10 normal pixels scoring 0.1 … 1.0 and a region scoring 0.55: PRO jumps from 0 to 1 at FPR 0.5
    maps = np.concatenate((np.linspace(0.1, 1.0, 10), [0.55, 0.55])).reshape(1, 1, 12)
    masks = np.zeros((1, 1, 12))
    masks[0, 0, 10:] = 1
    assert pixel_aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.0)
    assert pixel_aupro(maps, masks, fpr_limit=0.6) == pytest.approx(0.1 / 0.6)
    assert pixel_aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5)
    # a region tied with 4 normal pixels: diagonal from (0.1, 0) to (0.5, 1); area up to 0.3 is 0.05
    maps = np.array([[[0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 0.5]]])
    assert pixel_aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.05 / 0.3)


def test_aupro_empty_masks_add_no_region():
    _, masks, _ = _random_pixels(5, count=3)
    maps = masks.astype(np.float32)
    assert not masks[-1].any()
    assert pixel_aupro(maps, masks) == pytest.approx(1.0)  # an empty "region" would pull this down
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(pixel_aupro(maps[-1:], masks[-1:]))


@pytest.mark.parametrize("levels", [None, 8])
@pytest.mark.parametrize("limit", [0.02, 0.3, 1.0])
def test_aupro_matches_reference_implementation(levels, limit):
    maps, masks, rois = _random_pixels(6, levels=levels)
    full = np.ones_like(rois)
    assert _reference_aupro(np.zeros(maps.shape), masks, full, 0.3) == pytest.approx(0.15)
    assert pixel_aupro(maps, masks, fpr_limit=limit) == pytest.approx(
        _reference_aupro(maps, masks, full, limit), abs=1e-10
    )
    assert pixel_aupro(maps, masks, rois, fpr_limit=limit) == pytest.approx(
        _reference_aupro(maps, masks, rois, limit), abs=1e-10
    )


# ---------------------------------------------------------------- thresholds


def test_threshold_metrics_hand_case():
    result = threshold_metrics([0.1, 0.4, 0.6, 0.9, 0.5], [0, 1, 0, 1, 1], threshold=0.5)
    # predicted defect: 0.6, 0.9, 0.5 (score == threshold counts as defect)
    assert {k: result[k] for k in ("TP", "FP", "TN", "FN")} == {"TP": 2, "FP": 1, "TN": 1, "FN": 1}
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["F1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["threshold"] == 0.5
    nothing_flagged = threshold_metrics([0.1, 0.2], [0, 1], threshold=0.9)
    assert nothing_flagged["precision"] == nothing_flagged["F1"] == 0.0


def test_f1_max_is_labelled_oracle():
    assert f1_max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == {
        "F1_max_oracle": pytest.approx(0.8),
        "threshold_oracle": pytest.approx(0.35),
    }


def _flag_rate(threshold, scores):
    return float(np.mean(scores >= threshold))


def test_calibrate_threshold_typical_normal_validation():
    rng = np.random.default_rng(7)
    validation, test = rng.beta(2, 8, 500), rng.beta(2, 8, 100_000)
    threshold = calibrate_threshold(validation, quantile=0.99)
    assert _flag_rate(threshold, test) <= 0.02
    assert threshold > np.median(validation)
    assert calibrate_threshold(validation, quantile=0.99, margin=0.5) > threshold
    assert _flag_rate(calibrate_threshold(validation, quantile=0.95), test) <= 0.07


@pytest.mark.parametrize(
    "scores", [[0.3] * 20, [0.42], [0.0, 0.0, 0.0], [0.2, 0.25], [-3.0], [1e6, 1e6]], ids=str
)
def test_calibrate_threshold_never_collapses(scores):
    threshold = calibrate_threshold(scores, quantile=0.99, margin=0.1)
    assert math.isfinite(threshold)
    assert threshold > np.median(scores) and threshold > np.quantile(scores, 0.99)
    assert _flag_rate(threshold, np.array(scores)) <= 0.5
    if len(set(scores)) == 1:  # constant scores: just above the constant, nothing flagged
        assert scores[0] < threshold <= scores[0] + 1e-6 * max(1.0, abs(scores[0]))


def test_calibrate_threshold_with_anomalous_scores():
    rng = np.random.default_rng(8)
    normal, anomalous = rng.uniform(0.0, 0.2, 100), rng.uniform(0.6, 1.0, 100)
    base = calibrate_threshold(normal)
    # well separated: the middle of the gap, above the quantile rule
    assert calibrate_threshold(normal, anomalous_scores=anomalous) == pytest.approx(
        (normal.max() + anomalous.min()) / 2
    )
    # anomalies that look normal never lower the threshold
    assert calibrate_threshold(normal, anomalous_scores=np.full(10, 0.05)) == base
    assert calibrate_threshold(normal, anomalous_scores=[]) == base


def test_calibrate_threshold_rejects_bad_input():
    for bad in ([], [0.1, float("nan")], [float("inf")]):
        with pytest.raises(ValueError):
            calibrate_threshold(bad)
    with pytest.raises(ValueError):
        calibrate_threshold([0.1], quantile=0.0)


# ---------------------------------------------------------------- evaluation


def _roi_case():
    masks = np.zeros((4, 1, 8, 8), dtype=np.float32)
    masks[0, 0, 1:3, 1:3] = 1  # defect inside the ROI
    masks[1, 0, 6:, 6:] = 1  # defect outside the ROI
    # image 2: normal; image 3: defect with an empty mask (location unknown)
    rois = np.zeros((4, 1, 8, 8), dtype=np.float32)
    rois[:, :, :5, :5] = 1
    return np.array([1, 1, 0, 1]), masks, rois


def test_effective_labels_with_roi():
    labels, masks, rois = _roi_case()
    assert effective_labels(labels, masks, rois).tolist() == [1, 0, 0, 1]
    assert effective_labels(labels, masks, rois[0, 0]).tolist() == [1, 0, 0, 1]  # one ROI for all images
    assert effective_labels(labels, masks, None).tolist() == [1, 1, 0, 1]


def test_evaluate_is_json_safe(tmp_path):
    labels, masks, rois = _roi_case()
    rng = np.random.default_rng(9)
    maps = rng.random(masks.shape).astype(np.float32) * 0.5 + masks * 0.5
    scores = np.array([0.9, 0.2, 0.3, 0.8])
    results = evaluate(
        torch.from_numpy(scores), labels, maps=torch.from_numpy(maps), masks=masks, rois=rois, threshold=0.5,
        defect_types=["crack", "scratch", "good", "crack"],
    )
    assert results["num_defect"] == 2 and results["num_normal"] == 2 and results["num_defect_outside_roi"] == 1
    assert results["image_AUROC"] == pytest.approx(1.0)  # the outside-ROI defect counts as normal
    assert results["pixel_AUROC"] == pytest.approx(pixel_auroc(maps, masks, rois))
    assert results["pixel_AUPRO"] == pytest.approx(pixel_aupro(maps, masks, rois))
    assert results["F1_max_oracle"] == pytest.approx(1.0)
    assert results["TP"] == 2 and results["FP"] == 0
    assert results["per_defect_type"] == {"crack": {"count": 2, "image_AUROC": pytest.approx(1.0)}}
    assert json.loads(json.dumps(results, allow_nan=False)) == results

    with pytest.warns(RuntimeWarning, match="undefined"):
        only_normal = evaluate([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError):
        json.dumps(only_normal, allow_nan=False)  # NaN metrics: kept as NaN in memory …
    saved = json.loads(save_json(only_normal, tmp_path / "out" / "metrics.json").read_text())
    assert saved["image_AUROC"] is None  # … and written as null
    assert saved["num_images"] == 2


def test_pixel_metrics_use_only_the_images_with_masks():
    maps = np.zeros((3, 8, 8), np.float32)
    masks = np.zeros((3, 8, 8), np.float32)
    masks[1, 2:4, 2:4] = 1
    maps[1, 2:4, 2:4] = 0.9
    maps[2, 5:7, 5:7] = 0.9  # an image-labelled defect: hot, but its pixels' truth is unknown
    scores, labels = np.array([0.0, 0.9, 0.9]), np.array([0, 1, 1])
    kept = evaluate(scores, labels, maps, masks, pixel_labelled=[True, True, False])
    assert kept["pixel_AUROC"] == pytest.approx(1.0) and kept["image_AUROC"] == pytest.approx(1.0)
    assert kept["pixel_note"] == "pixel metrics on 2 of 3 images: 1 defect images have no mask (image-level labels)"
    assert evaluate(scores, labels, maps, masks)["pixel_AUROC"] < 1.0  # the unknown pixels counted as normal
    skipped = evaluate(scores[[0, 2]], labels[[0, 2]], maps[[0, 2]], masks[[0, 2]], pixel_labelled=[True, False])
    assert math.isnan(skipped["pixel_AUROC"]) and math.isnan(skipped["pixel_AUPRO"])
    assert skipped["pixel_note"].startswith("pixel metrics skipped") and skipped["image_AUROC"] == pytest.approx(1.0)
