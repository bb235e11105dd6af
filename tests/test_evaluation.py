"""`evaluate_samples` on a data set whose defects carry image-level labels only (no masks)."""

import shutil

import numpy as np
import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.reports import write_report


class Brightness(nn.Module):
    """Stand-in map-scored model: the map is the image's brightness."""

    def forward(self, x):
        return {"anomaly_map": x.mean(dim=1, keepdim=True)}


def test_image_labelled_defects_get_image_metrics_and_a_note(builtin_category, tmp_path):
    category = tmp_path / "part"
    shutil.copytree(builtin_category, category)
    kept_type = sorted((category / "ground_truth").iterdir())[0].name
    for folder in (category / "ground_truth").iterdir():
        if folder.name != kept_type:
            shutil.rmtree(folder)
    cfg = RunConfig().updated({"data.root": str(tmp_path), "data.category": "part", "data.image_size": [64, 64],
                               "scoring.smoothing_kernel": 3})
    predictor = Predictor(Brightness(), cfg, threshold=0.5, device=torch.device("cpu"), bf16=False)
    samples = index_dataset(cfg.data).test
    result = evaluate_samples(predictor, samples, use_rois=False)
    metrics = result.metrics
    with_mask = sum(s.label == 0 or s.mask is not None for s in samples)
    assert metrics["num_defect"] == sum(s.label for s in samples) and np.isfinite(metrics["image_AUROC"])
    assert np.isfinite(metrics["pixel_AUROC"])
    assert metrics["pixel_note"].startswith(f"pixel metrics on {with_mask} of {len(samples)} images")
    page = write_report(result, tmp_path / "report", cfg, 0.5, "stub.pt").read_text()
    assert metrics["pixel_note"] in page
