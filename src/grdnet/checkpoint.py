"""Checkpoint files: written atomically, read with `weights_only=True` so a file can never run code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts:
`format`, `config` (resolved RunConfig as a dict), `model` (state dict), `threshold`, `normal_stats` (the
scoring head's per-position statistics, `grdnet.scoring.NormalStats`, or None), `versions`, and for
resuming `optimizers`, `schedulers`, `epoch`, `step`, `rng`, `history`, `best`.

This module sits below training and inference (both read checkpoints) and imports torch only to save and
load, so torch-free code (the inspection log) shares `checkpoint_file` and `sha256_file`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grdnet.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from grdnet.config import RunConfig

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
    """Write `state` to `path` atomically: a temp file in the same folder, fsync, then rename.

    A failed write (full disk, read-only folder) leaves any previous file at `path` untouched and raises
    CheckpointError saying so; the temp file is removed.
    """
    import torch

    path = Path(path)
    kept = path.is_file()
    state = {"format": FORMAT, **state}
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except (OSError, RuntimeError) as error:  # torch reports a full disk as RuntimeError ("unexpected pos …")
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        previous = f"the previous {path.name} is kept unchanged" if kept else f"no {path.name} was written"
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({error_reason(error)}); {previous}. Free disk space or fix the "
            "folder's permissions, then resume or choose another output folder"
        ) from None
    except BaseException:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` files a killed `save_checkpoint` left in `folder`; returns what was removed."""
    stale = sorted(Path(folder).glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def error_reason(error: BaseException) -> str:
    """A one-line reason for `error`, never torch's advice to retry with `weights_only=False` (it would run code)."""
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects other than tensors and plain data, refused because loading them could run code"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and "weights_only" not in line]
    text = " ".join(lines[:2])  # load_state_dict puts the first mismatch on its second line
    return f"{type(error).__name__}: {text[:300]}" if lines else type(error).__name__


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file or run folder (`checkpoint_file`) safely (`weights_only=True`); CheckpointError when
    missing, corrupt or foreign."""
    import torch

    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass a .pt file or a run folder written by grdnet train")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), probably from an interrupted copy; use another file or retrain")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(
            f"{path}: cannot be read as a grdnet checkpoint ({error_reason(error)}); "
            "it may be truncated or not a checkpoint — use another file or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a grdnet checkpoint (format {state.get('format') if isinstance(state, dict) else type(state).__name__!r})")
    return state


def _section(state: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    if not isinstance(state.get(key), dict):
        raise CheckpointError(f"{path}: checkpoint has no '{key}' section; it was edited or cut short — use the file grdnet train wrote")
    return state[key]


def stored_config(state: dict[str, Any], path: Path) -> "RunConfig":
    """The RunConfig stored in a `load_checkpoint` state; CheckpointError when missing or invalid."""
    from grdnet.config import RunConfig
    from grdnet.errors import ConfigError

    try:
        return RunConfig.from_stored(_section(state, "config", path))
    except ConfigError as error:
        raise CheckpointError(f"{path}: its stored config is not valid ({str(error).split(';')[0]}); use the file grdnet train wrote") from None


def model_from_checkpoint(state: dict[str, Any], path: Path) -> tuple["RunConfig", torch.nn.Module]:
    """(stored RunConfig, model built from it with the stored weights) of a `load_checkpoint` state;
    CheckpointError when the config is invalid or the weights do not fit it (wrong model, changed width)."""
    from grdnet.models import build_model

    cfg = stored_config(state, path)
    weights = _section(state, "model", path)
    try:
        model = build_model(cfg)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: its stored config is not valid ({error_reason(error)}); use the file grdnet train wrote") from None
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path}: its weights do not match its stored config (model '{cfg.model.name}': {error_reason(error)}); "
            f"{_mismatch_advice(state, cfg.model.name)}"
        ) from None
    return cfg, model


def _mismatch_advice(state: dict[str, Any], method: str) -> str:
    """Why stored weights may not fit the model this grdnet builds from their config, and what to do."""
    from grdnet import __version__

    versions = state.get("versions")
    written_by = versions.get("grdnet") if isinstance(versions, dict) else None
    if written_by and written_by != __version__:
        return (f"it was written by grdnet {written_by} and this is grdnet {__version__}, whose '{method}' layout "
                f"differs — retrain with this version, or read the checkpoint with grdnet {written_by}")
    return (f"either an earlier build of grdnet {__version__} changed the '{method}' layout since (retrain with this "
            "build), or the file was edited or mixed from two runs (use the checkpoint grdnet train wrote)")
