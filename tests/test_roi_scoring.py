"""One ROI-aware image score everywhere: max of the smoothed map ⊙ ROI (⊙ where the image lies).

The same image with the same ROI gets the same score from `grdnet test` (`evaluate_samples`), the
`Predictor`, the HTTP service, validation and the exported ONNX graph.
"""


import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from grdnet.config import RunConfig
from grdnet.data import Sample
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.scoring import smooth_map
from grdnet.training.validation import Validator

KERNEL = 7


class HotOutsideTheROI(nn.Module):
    """Stand-in map-scored model: map 0.9 on the top-left 16×16 corner, 0.1 elsewhere, whatever the input."""

    def forward(self, x):
        anomaly_map = torch.full((x.shape[0], 1, *x.shape[-2:]), 0.1)
        anomaly_map[..., :16, :16] = 0.9
        return {"anomaly_map": anomaly_map}


def config(**data):
    return RunConfig().updated({"data.image_size": [64, 64], "scoring.smoothing_kernel": KERNEL, "train.device": "cpu",
                                **{f"data.{k}": v for k, v in data.items()}})


def right_half() -> np.ndarray:
    roi = np.zeros((64, 64), np.uint8)
    roi[:, 32:] = 255
    return roi


@pytest.fixture
def files(tmp_path):
    """One image and an ROI (the right half, away from the hot corner) on disk."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(right_half()).save(tmp_path / "roi.png")
    return tmp_path / "a.png", tmp_path / "roi.png"


def test_every_entry_point_scores_inside_the_roi(files):
    image_path, roi_path = files
    predictor = Predictor(HotOutsideTheROI(), config(), threshold=0.5, device=torch.device("cpu"), bf16=False)
    inside = 0.1  # the hot corner's smoothing reaches 3 pixels, far from the ROI

    sample = Sample(image=image_path, label=1, defect_type="crack", mask=None, roi=roi_path)
    tested = evaluate_samples(predictor, [sample], use_rois=True).records[0]
    assert tested["score"] == pytest.approx(inside) and tested["decision"] is False

    roi = (right_half() > 0).astype(np.float32)[None]
    predicted = predictor.predict(*predictor.load_files([image_path]), roi=roi)
    assert predicted.score[0] == pytest.approx(inside) and not predicted.decision[0]
    assert predictor.predict(*predictor.load_files([image_path])).score[0] == pytest.approx(0.9)

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from grdnet.service import create_app

    with TestClient(create_app(predictor, "sha", max_wait_ms=1)) as client:
        body = client.post("/inspect", files={"file": ("a.png", image_path.read_bytes()),
                                              "roi": ("r.png", roi_path.read_bytes())}).json()
    assert body["score"] == pytest.approx(inside) and body["decision"] == "ok"


def test_validation_scores_inside_the_roi():
    rois = torch.zeros(4, 1, 64, 64)
    rois[..., 32:] = 1
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    cfg = config().updated({"scoring.standardize": False})  # raw units: the threshold is a map value
    validator = Validator(images, rois, torch.ones_like(rois), cfg, torch.device("cpu"), bf16=False)
    # every normal validation image scores 0.1 inside its ROI, so the threshold sits just above 0.1
    assert validator.run(HotOutsideTheROI())["threshold"] == pytest.approx(0.1, abs=1e-3)


def test_onnx_graph_applies_the_same_roi_rule(builtin_category, tmp_path):
    """The exported graph takes the inspected region as an input and scores exactly like the `Predictor`."""
    pytest.importorskip("onnxruntime")
    from grdnet.checkpoint import save_checkpoint
    from grdnet.export import export_onnx
    from grdnet.models import build_model
    from grdnet.onnx_predictor import OnnxPredictor

    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "threshold": 0.5}, tmp_path / "best.pt")
    onnx_predictor = OnnxPredictor(export_onnx(tmp_path / "best.pt", parity=False).path)
    predictor = Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu")
    images = np.random.default_rng(1).random((2, 3, 64, 64)).astype(np.float32)
    roi = np.zeros((2, 64, 64), np.float32)
    roi[0, 10:30, 5:60] = 1
    roi[1, :, 40:] = 1
    got, expected = onnx_predictor.predict(images, roi=roi), predictor.predict(torch.from_numpy(images), roi=roi)
    with torch.no_grad():
        raw = predictor.model.model(torch.from_numpy(images))["anomaly_map"]
    by_hand = (smooth_map(raw, cfg.scoring.smoothing_kernel)[:, 0].numpy() * roi).reshape(2, -1).max(1)
    np.testing.assert_allclose(expected.score, by_hand, atol=1e-6)
    np.testing.assert_allclose(got.score, expected.score, atol=1e-5)
    assert np.all(got.smoothed_map[roi == 0] == 0) and np.all(expected.smoothed_map[roi == 0] == 0)


def test_the_service_reads_the_roi_like_training_does():
    """A grey ROI (value 100 of 255) is "inside" for training (any nonzero pixel), so it is for the service too."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from grdnet.data.io import read_mask
    from grdnet.service import create_app

    grey = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(grey, format="PNG")
    image = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image, format="PNG")
    predictor = Predictor(HotOutsideTheROI(), config(), threshold=0.5, device=torch.device("cpu"), bf16=False)
    with TestClient(create_app(predictor, "sha", max_wait_ms=1)) as client:
        body = client.post("/inspect", files={"file": ("a.png", image.getvalue()), "roi": ("r.png", grey.getvalue())}).json()
    grey.seek(0)
    assert read_mask(grey).sum() == 64 * 64
    assert body["score"] == pytest.approx(0.9) and body["decision"] == "defect"


def test_smoothing_comes_before_the_roi():
    """The rule is max(smooth(map) ⊙ ROI), not max(smooth(map ⊙ ROI)): a hot pixel just outside the ROI raises
    the smoothed values inside it, as the GRD-Net paper's inference reads."""
    from grdnet.scoring import ScoringHead

    anomaly_map = torch.zeros(1, 1, 64, 64)
    anomaly_map[..., 20, 31] = 1.0  # one column left of the ROI
    region = torch.zeros(1, 1, 64, 64)
    region[..., 32:] = 1
    out = ScoringHead(smoothing_kernel=3, map_scored=True)({"anomaly_map": anomaly_map}, region)
    assert out["score"].item() == pytest.approx(1 / 9)
    assert torch.all(out["smoothed_map"][..., :32] == 0)
