import io
import json
import warnings

import numpy as np
import pytest
import torch

from grdnet.scoring import NORMAL_STATS_PRIOR, NormalStats, ScoringHead, image_score, regions, smooth_map, standardize


def test_smooth_map_hand_computed_borders_not_darkened():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 0, 0] = 1.0
    smoothed = smooth_map(maps, kernel=3)
    assert smoothed.shape == maps.shape
    # windows are clipped to the image: corner = 2×2 valid pixels, edge = 2×3, interior = 3×3
    assert smoothed[0, 0, 0, 0].item() == pytest.approx(1 / 4)
    assert smoothed[0, 0, 0, 1].item() == pytest.approx(1 / 6)
    assert smoothed[0, 0, 1, 1].item() == pytest.approx(1 / 9)
    assert smoothed[0, 0, 2, 2].item() == 0.0
    assert torch.allclose(smooth_map(torch.ones(2, 1, 8, 8), kernel=5), torch.ones(2, 1, 8, 8))


def test_smooth_map_matches_clipped_window_mean():
    rng = np.random.default_rng(0)
    values = rng.random((5, 7)).astype(np.float32)
    smoothed = smooth_map(torch.from_numpy(values)[None, None], kernel=3)[0, 0].numpy()
    expected = np.array(
        [[values[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].mean() for x in range(7)] for y in range(5)]
    )
    np.testing.assert_allclose(smoothed, expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 32, 48), (1, 1, 8, 8)])
def test_smooth_map_keeps_shape_with_default_kernel(shape):
    assert smooth_map(torch.rand(shape)).shape == shape


def test_smooth_map_bf16_and_kernel_checks():
    maps = torch.rand(2, 1, 16, 16)
    smoothed = smooth_map(maps.bfloat16(), kernel=5)
    assert smoothed.dtype == torch.bfloat16
    assert torch.allclose(smoothed.float(), smooth_map(maps, kernel=5), atol=1e-2)
    assert torch.equal(smooth_map(maps, kernel=1), maps)
    with pytest.raises(ValueError):
        smooth_map(maps, kernel=4)


def test_image_score_is_max():
    maps = torch.zeros(3, 1, 4, 4)
    maps[0, 0, 1, 2] = 0.7
    maps[2, 0, 3, 3] = 0.2
    assert torch.equal(image_score(maps), torch.tensor([0.7, 0.0, 0.2]))


def test_smoothing_and_score_export_to_onnx():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Head(torch.nn.Module):
        def forward(self, maps):
            smoothed = smooth_map(maps, kernel=5)
            return smoothed, image_score(smoothed)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            Head(), (torch.rand(1, 1, 16, 16),), buffer, dynamo=False, input_names=["maps"],
            dynamic_axes={"maps": {0: "batch"}},
        )
    maps = np.random.default_rng(0).random((2, 1, 16, 16), dtype=np.float32)
    smoothed, scores = ort.InferenceSession(buffer.getvalue()).run(None, {"maps": maps})
    expected_smoothed, expected_scores = Head()(torch.from_numpy(maps))
    np.testing.assert_allclose(smoothed, expected_smoothed.numpy(), atol=1e-6)
    np.testing.assert_allclose(scores, expected_scores.numpy(), atol=1e-6)


def test_regions_two_blobs_and_roi():
    score_map = np.zeros((20, 20), dtype=np.float32)
    score_map[2:5, 3:7] = 0.8
    score_map[3, 4] = 0.9
    score_map[12:16, 10:13] = 0.6
    score_map[16, 13] = 0.6  # diagonal neighbour: same region (8-connectivity)
    found = regions(score_map, threshold=0.5)
    assert found == [
        {"bbox": [3, 2, 6, 4], "area": 12, "peak": pytest.approx(0.9)},
        {"bbox": [10, 12, 13, 16], "area": 13, "peak": pytest.approx(0.6)},
    ]
    json.dumps(found)

    roi = torch.ones(1, 20, 20)
    roi[0, :10] = 0  # hides the first blob
    hidden = regions(torch.from_numpy(score_map)[None], threshold=0.5, roi=roi)
    assert [region["bbox"] for region in hidden] == [[10, 12, 13, 16]]
    assert regions(score_map, threshold=0.95) == []


def normals_with_a_hot_fixture(count: int = 12) -> torch.Tensor:
    """(count, 1, 32, 32) normal maps: noise around 0.2, plus a fixture at rows 4–8 that is always ~0.8."""
    generator = torch.Generator().manual_seed(0)
    maps = 0.2 + 0.02 * torch.randn(count, 1, 32, 32, generator=generator)
    maps[..., 4:9, 4:9] += 0.6
    return maps


def test_normal_stats_score_a_defect_above_a_fixture_that_is_always_high():
    normals = normals_with_a_hot_fixture()
    stats = NormalStats.fit(normals, torch.ones_like(normals), kernel=1)
    head = ScoringHead(1, map_scored=True, normal_stats=stats)
    image = normals_with_a_hot_fixture(1) * 0 + 0.2
    image[..., 4:9, 4:9] = 0.8  # the fixture, as in every normal
    defect = image.clone()
    defect[..., 20:24, 20:24] = 0.5  # lower than the fixture in raw units
    raw = ScoringHead(1, map_scored=True)
    assert raw({"anomaly_map": defect})["score"] == raw({"anomaly_map": image})["score"]  # the fixture wins raw
    fixture_only, with_defect = head({"anomaly_map": image})["score"], head({"anomaly_map": defect})["score"]
    assert with_defect > 5 * fixture_only and with_defect > 5  # in units of the normal spread
    # 12 normals at ~0.8 there, shrunk toward the image-wide mean with the weight of 5 pseudo-normals
    shrunk = (12 * 0.8 + NORMAL_STATS_PRIOR * float(normals.mean())) / (12 + NORMAL_STATS_PRIOR)
    assert float(stats.mean[..., 6, 6]) == pytest.approx(shrunk, abs=0.01) and float(stats.std.min()) > 0


def test_normal_stats_of_few_normals_fall_back_to_the_image_wide_spread():
    """One normal has no per-position spread; the prior keeps the std near the image-wide one, never ~0."""
    one = normals_with_a_hot_fixture(1)
    stats = NormalStats.fit(one, torch.ones_like(one), kernel=1)
    overall = float(one.std())
    assert 0.3 * overall < float(stats.std.median()) < overall
    assert torch.isfinite(standardize(one, stats.mean, stats.std)).all()


def test_normal_stats_count_only_inspected_pixels():
    """Padding (region 0) of half the normals does not pull their mean there toward 0."""
    normals = normals_with_a_hot_fixture()
    region = torch.ones_like(normals)
    region[:6, :, 16:] = 0
    padded = normals.clone()
    padded[:6, :, 16:] = 0
    stats = NormalStats.fit(padded, region, kernel=1)
    # counted, the zeros would pull it to ~0.13
    assert float(stats.mean[..., 24, 24]) == pytest.approx(0.2, abs=0.025)
    assert float(stats.mean[..., 24, 8]) == pytest.approx(0.2, abs=0.015)


def test_standardize_resizes_the_stats_to_the_map_and_is_exact_at_their_size():
    stats = NormalStats(torch.full((1, 1, 8, 8), 0.5), torch.full((1, 1, 8, 8), 0.25))
    maps = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(standardize(maps, stats.mean, stats.std), (maps - 0.5) / 0.25)
    assert standardize(torch.rand(1, 1, 16, 12), stats.mean, stats.std).shape == (1, 1, 16, 12)


def test_a_head_with_stats_reports_standardized_maps_zero_outside_the_region():
    stats = NormalStats(torch.full((1, 1, 8, 8), 0.5), torch.full((1, 1, 8, 8), 0.25))
    head = ScoringHead(1, map_scored=True, normal_stats=stats)
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4] = 1
    maps = torch.rand(1, 1, 8, 8)
    out = head({"anomaly_map": maps}, region)
    torch.testing.assert_close(out["smoothed_map"], (maps - 0.5) / 0.25 * region)
    torch.testing.assert_close(out["anomaly_map"], maps * region)  # the raw map stays raw
    assert float(out["score"]) == pytest.approx(float(out["smoothed_map"].max()))
    not_map_scored = ScoringHead(1, map_scored=False, normal_stats=stats)
    assert not not_map_scored.standardized
    assert float(not_map_scored({"anomaly_map": maps, "score": torch.tensor([7.0])})["score"]) == 7.0
