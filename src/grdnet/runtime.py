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


WIDE_CONV_CHANNELS = 128
"""'auto' precision on a CPU with AMX-BF16 picks bf16 for models whose median trainable convolution is at least this
wide. Measured on one core (benchmarks/NOTES.md, speed 7): DRAEM at the paper's widths (median 512) trains 3.9×
faster in bf16 + channels-last; its cpu profile (median 64) 1.3× and GRD-Net's (median 32) 1.5× slower: narrow
convolutions do not fill the matrix tiles."""


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX-BF16 matrix units (Intel Xeon 4th generation and later), which multiply bf16 several
    times faster than fp32."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(amx and avx512_bf16 and amx() and avx512_bf16())


def median_conv_width(model: torch.nn.Module) -> int:
    """Median output channels of `model`'s trainable 2-D convolutions (0 when it has none)."""
    widths = sorted(m.out_channels for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad)
    return widths[len(widths) // 2] if widths else 0


def uses_bf16(precision: str, device: torch.device, model: torch.nn.Module | None = None) -> bool:
    """'fp32' / 'bf16' as asked; 'auto': bf16 autocast on CUDA, and on a CPU with AMX-BF16 when `model`'s median
    trainable convolution has at least `WIDE_CONV_CHANNELS` channels; fp32 otherwise."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return True
    return (device.type == "cpu" and model is not None and median_conv_width(model) >= WIDE_CONV_CHANNELS
            and cpu_has_amx_bf16())


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
