import io
import json
import warnings

import numpy as np
import pytest
import torch

from grdnet.scoring import image_score, regions, smooth_map


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
