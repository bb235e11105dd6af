"""`ResumeState`: where a run stands, as every checkpoint stores it, so `--resume` continues it exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grdnet.errors import CheckpointError

SEED_SCHEME = "SeedSequence-1"
"""The random streams' scheme (`grdnet.seeds`) a checkpoint's run drew from. Checkpoints written before it
existed store none: they resume, with this scheme's streams for the rest of the run."""


@dataclass
class ResumeState:
    """The loop's position and everything a resumed run needs to draw the same numbers as an uninterrupted one.

    `epoch` epochs are done and `step` steps of the next one (0 at an epoch boundary), whose loss sums are
    `epoch_sums`; `synthesis_rng` is the state of that epoch's synthesis generator, `torch_rng` torch's global
    generator's; `history` holds the records of the epochs done, `best` the best validation epoch
    (`epoch`, `val_score`, `threshold`), `threshold` and `normal_stats` (`NormalStats.to_state`, None = raw
    maps) the latest validation's.
    """

    epoch: int
    step: int
    epoch_sums: dict[str, float]
    synthesis_rng: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict[str, Any]]
    best: dict[str, Any]
    threshold: float
    normal_stats: dict[str, torch.Tensor] | None = None
    seed_scheme: str | None = SEED_SCHEME

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint entries (top-level keys, as inference reads `threshold`, `normal_stats` and `best`)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_sums": dict(self.epoch_sums),
            "rng": {"synthesis": self.synthesis_rng, "torch": self.torch_rng, "scheme": self.seed_scheme},
            "history": list(self.history),
            "best": dict(self.best),
            "threshold": self.threshold,
            "normal_stats": self.normal_stats,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], path: Path) -> "ResumeState":
        """Read the entries back; a checkpoint without them (not written by the trainer) is a one-line error."""
        try:
            rng = state["rng"]
            return cls(
                epoch=int(state["epoch"]), step=int(state["step"]), epoch_sums=dict(state["epoch_sums"]),
                synthesis_rng=rng["synthesis"], torch_rng=rng["torch"], history=list(state["history"]),
                best=dict(state["best"]), threshold=float(state["threshold"]), normal_stats=state.get("normal_stats"),
                seed_scheme=rng.get("scheme"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: holds no resume state (missing or malformed entry {error}); it was not written by "
                "`grdnet train`; start a new run with --overwrite or another --output"
            ) from None
