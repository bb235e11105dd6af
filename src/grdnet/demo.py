"""The main job: built-in dataset → GRD-Net training on CPU in a few minutes → test metrics inside the ROI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.evaluation import evaluate_samples
from grdnet.inference import Predictor
from grdnet.metrics import save_json
from grdnet.training import Trainer


def demo_config(category_dir: Path, output: Path, seed: int = 0, device: str = "auto") -> RunConfig:
    """A small GRD-Net (64×64 px, narrow widths) that trains 29 epochs on 2 CPU cores in about four minutes.

    Chosen on development copies of the built-in dataset (seeds 1–3; the demo reports seed 0):
    `synthesis.texture: self` (anomalies cut from the image itself, shifted and flipped, instead of uniform
    noise) makes the segmenter compare x_n with x̂ rather than look for noise, which is what transfers to
    real marks; `loss.roi_on: target` teaches it to ignore defects outside the ROI; smaller Perlin blobs
    (scales 2**2…2**5) and a 5×5 smoothing window suit 64-px images with small defects; β ≤ 0.8 keeps every
    synthetic defect visible. The budget is epochs, not wall time, so a slow or busy machine takes longer
    but reaches the same weights (29 epochs: the run the README's figures come from).
    """
    return RunConfig.from_dict(
        {
            "data": {
                "root": str(category_dir), "category": None, "layout": "mvtec", "image_size": [64, 64],
                "channels": 3, "roi": str(category_dir / "roi"), "test_roi": str(category_dir / "roi"),
                "val_fraction": 0.1,
            },
            "synthesis": {"texture": "self", "probability": 0.75, "beta": [0.1, 0.8], "perlin_scale_exponents": [2, 6]},
            "model": {"name": "grdnet", "base_width": 8, "max_width": 32, "latent_channels": 16, "segmenter_width": 16},
            "loss": {"roi_on": "target", "focal_alpha": 0.5},
            "train": {"epochs": 29, "batch_size": 16, "lr": 1e-3, "seed": seed, "device": device,
                      "output_dir": str(output / "run")},
            "scoring": {"smoothing_kernel": 5},
        },
        source="demo configuration",
    )


def run_demo(output: Path, epochs: int | None = None, device: str = "auto", seed: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Run the whole job; returns the test metrics (also written to `output/run/test/metrics.json`)."""
    output = Path(output)
    category_dir = make_builtin_dataset(output / "data", seed=seed)
    cfg = demo_config(category_dir, output, seed=seed, device=device)
    if epochs is not None:
        cfg = cfg.updated({"train.epochs": epochs})
    result = Trainer(cfg, show_progress=show_progress, overwrite=True).fit()  # a demo re-run replaces its run
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device=device)
    evaluation = evaluate_samples(predictor, index_dataset(cfg.data, splits="test").test, use_rois=True)
    save_json(evaluation.metrics, result.run_dir / "test" / "metrics.json")
    return evaluation.metrics
