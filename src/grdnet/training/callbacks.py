"""Epoch callbacks: what runs around the training loop on the main process, so the loop itself writes no
files beyond its checkpoints. `RunFiles` writes the run folder's own files; the epoch loggers
(`grdnet.training.loggers`) send the same records to TensorBoard or MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from grdnet.config import RunConfig


class EpochCallback:
    """The trainer calls `start` once before the first epoch, `epoch_end` after each epoch (its checkpoint is
    saved by then; `history[-1]` is the epoch's record, as `log.jsonl` gets it) and `close` at the end, also
    after an error or Ctrl-C."""

    def start(self) -> None:
        """Before the first epoch (of this process: after a resume, before the first resumed one)."""

    def epoch_end(self, history: list[dict[str, Any]], model: torch.nn.Module, validator) -> None:
        """After each epoch; `validator` is the run's `Validator`."""

    def close(self) -> None:
        """Flush and release what the callback holds."""


class RunFiles(EpochCallback):
    """`config.yaml` (the resolved configuration) and `run.json` (`run_info`: seed, versions, data split) at the
    start; one `log.jsonl` line and a redrawn `training_curves.png` per epoch."""

    def __init__(self, cfg: RunConfig, run_dir: Path, run_info: dict[str, Any]) -> None:
        self.cfg, self.run_dir, self.run_info = cfg, Path(run_dir), run_info

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.to_yaml(self.run_dir / "config.yaml")
        (self.run_dir / "run.json").write_text(json.dumps(self.run_info, indent=1))

    def epoch_end(self, history: list[dict[str, Any]], model: torch.nn.Module, validator) -> None:
        with (self.run_dir / "log.jsonl").open("a") as log:
            log.write(json.dumps(history[-1]) + "\n")
        from grdnet.training.curves import plot_training_curves  # lazy: matplotlib only once an epoch is done

        plot_training_curves(history, self.run_dir / "training_curves.png")
