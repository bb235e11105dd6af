"""Device, precision and version facts shared by training and inference (seeds: `grdnet.seeds`)."""

from __future__ import annotations

import contextlib
import platform
import sys
from typing import Iterator

import numpy as np
import torch

from grdnet.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; validates explicit names."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a valid device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available here; use --device cpu")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast on CUDA for 'auto' and 'bf16'; fp32 otherwise (CPU bf16 only when asked for)."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    return device.type == "cuda"


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """Autocast context for the device, or a no-op when bf16 is off."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def versions() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    from grdnet import __version__

    return {
        "grdnet": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": str(torch.version.cuda or "none"),
    }


@contextlib.contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to `module`'s parameters (e.g. D during the generator step)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
