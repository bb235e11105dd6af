"""Checkpoint files: written atomically, read with `weights_only=True` so a file can never run code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts:
`format`, `config` (resolved RunConfig as a dict), `model` (state dict), `threshold`, `versions`, and for
resuming `optimizers`, `schedulers`, `epoch`, `step`, `rng`, `history`, `best`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from grdnet.errors import CheckpointError

FORMAT = "grdnet-checkpoint-v1"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (`weights_only=True`); CheckpointError when missing, corrupt or foreign."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "best.pt", path / "last.pt"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass a .pt file or a run folder written by grdnet train")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"{path}: cannot be read as a grdnet checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "it may be truncated or not a checkpoint — use another file or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a grdnet checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    return state
