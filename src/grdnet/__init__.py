"""grdnet: ROI-aware industrial visual inspection (GRD-Net and companion anomaly-detection methods).

The Python API (see the README's "Python API"): `RunConfig` → `Trainer(cfg).fit()` → `TrainResult`;
`Predictor.from_checkpoint(path)` → `.predict(images)` → `Prediction`; `evaluate_samples(predictor, samples)`
→ `Evaluation`. Names are imported on first use, so `import grdnet` (and the CLI) stays fast.
"""

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

API = {
    "RunConfig": "grdnet.config",
    "Trainer": "grdnet.training.trainer",
    "TrainResult": "grdnet.training.trainer",
    "Predictor": "grdnet.inference",
    "Prediction": "grdnet.predictions_io",
    "Evaluation": "grdnet.evaluation",
    "evaluate_samples": "grdnet.evaluation",
    "index_dataset": "grdnet.data",
    "make_builtin_dataset": "grdnet.builtin_dataset",
}
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name not in API:
        raise AttributeError(f"module 'grdnet' has no attribute '{name}'")
    value = getattr(import_module(API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
