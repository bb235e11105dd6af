"""Helpers shared by test modules (import as `from support import …`; conftest files are not importable by name)."""

from __future__ import annotations

import os
from pathlib import Path

from grdnet.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Real data beside the checkout (`../shared/data`), or GRDNET_DATA_DIR."""
    return Path(os.environ.get("GRDNET_DATA_DIR", REPO.parent / "shared" / "data"))


def tiny_config(category_dir: Path, output: Path, **train) -> RunConfig:
    """GRD-Net at 64×64 with very narrow widths: a few seconds per epoch on CPU."""
    return RunConfig.from_dict(
        {
            "data": {"root": str(category_dir), "image_size": [64, 64], "roi": str(category_dir / "roi"),
                     "test_roi": str(category_dir / "roi"), "val_fraction": 0.1},
            "model": {"base_width": 8, "max_width": 16, "latent_channels": 8, "segmenter_width": 8, "segmenter_levels": 3},
            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "device": "cpu", "output_dir": str(output), **train},
            "scoring": {"smoothing_kernel": 7},
        }
    )


def checkpoint_round_trip(checkpoint: Path, cfg: RunConfig, size: tuple[int, int] = (64, 64)):
    """(Predictor loaded from `checkpoint`, scored outputs of a fresh `build_model(cfg)` given the checkpoint's
    weights and normal stats (`wrap_for_inference`), the predictor's `Prediction`), both on the same two random
    images."""
    import torch

    from grdnet.inference import Predictor
    from grdnet.models import build_model
    from grdnet.scoring import NormalStats
    from grdnet.tiling import wrap_for_inference

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    model = build_model(cfg).eval()
    state = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(state["model"])
    images = torch.rand(2, cfg.data.channels, *size)
    with torch.no_grad():
        expected = wrap_for_inference(model, cfg, NormalStats.from_state(state.get("normal_stats"))).eval()(images)
    return predictor, expected, predictor.predict(images)


def load_benchmark(name: str, monkeypatch):
    """The module of `benchmarks/NAME.py`, freshly executed, with `benchmarks/` on sys.path (for its `common`)."""
    import importlib.util

    benchmarks = REPO / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    spec = importlib.util.spec_from_file_location(name, benchmarks / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_maps_close(got, expected, tolerance: float = 1e-4) -> None:
    """`got` equals `expected` to `tolerance` × the expected values' scale (largest |value|, at least 1), the
    float32 agreement of two runtimes; standardized maps run to tens, raw maps stay within [0, 1]."""
    import numpy as np

    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(got), expected, atol=tolerance * scale, rtol=0)
