"""Checkpoint files: written atomically, read with `weights_only=True` so a file can never run code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts:
`format`, `config` (resolved RunConfig as a dict), `model` (state dict), `threshold`, `versions`, and for
resuming `optimizers`, `schedulers`, `epoch`, `step`, `rng`, `history`, `best`.

This module sits below training and inference (both read checkpoints) and imports torch only to save and
load, so torch-free code (the inspection log) shares `checkpoint_file` and `sha256_file`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grdnet.errors import CheckpointError

if TYPE_CHECKING:
    import torch

FORMAT = "grdnet-checkpoint-v1"


def checkpoint_file(path: Path | str) -> Path:
    """The file a checkpoint path names: itself, or for a run folder its best.pt, else its last.pt."""
    path = Path(path)
    if path.is_dir():
        return next((c for c in (path / "best.pt", path / "last.pt") if c.is_file()), path / "best.pt")
    return path


def sha256_file(path: Path | str) -> str:
    """SHA-256 (hex) of a file; for a run folder, of its `checkpoint_file`."""
    digest = hashlib.sha256()
    with checkpoint_file(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename."""
    import torch

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
    """Read a checkpoint file or run folder (`checkpoint_file`) safely (`weights_only=True`); CheckpointError when
    missing, corrupt or foreign."""
    import torch

    path = checkpoint_file(path)
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
