"""`ResumeState`: the loop's position as checkpoints store it (top-level entries, as before it had a class)."""

from pathlib import Path

import pytest
import torch

from grdnet.checkpoint import load_checkpoint, save_checkpoint
from grdnet.errors import CheckpointError
from grdnet.training.resume import SEED_SCHEME, ResumeState


def state() -> ResumeState:
    generator = torch.Generator().manual_seed(5)
    return ResumeState(epoch=3, step=2, epoch_sums={"g": 1.5}, synthesis_rng=generator.get_state(),
                       torch_rng=torch.get_rng_state(), history=[{"epoch": 1}, {"epoch": 2}, {"epoch": 3}],
                       best={"epoch": 2, "val_score": 0.8, "threshold": 0.4}, threshold=0.45,
                       normal_stats={"mean": torch.full((1, 1, 4, 4), 0.2), "std": torch.full((1, 1, 4, 4), 0.1)})


def test_resume_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    save_checkpoint({"config": {}, "model": {}, **state().to_checkpoint()}, tmp_path / "last.pt")
    stored = load_checkpoint(tmp_path / "last.pt")
    assert stored["threshold"] == 0.45 and stored["epoch"] == 3  # inference reads these top-level entries
    back = ResumeState.from_checkpoint(stored, tmp_path / "last.pt")
    assert (back.epoch, back.step, back.epoch_sums, back.history, back.best, back.threshold) == (
        3, 2, {"g": 1.5}, state().history, state().best, 0.45)
    assert torch.equal(back.synthesis_rng, state().synthesis_rng) and back.seed_scheme == SEED_SCHEME
    assert torch.equal(stored["normal_stats"]["std"], state().normal_stats["std"])  # inference reads it too
    assert torch.equal(back.normal_stats["mean"], state().normal_stats["mean"])


def test_a_checkpoint_from_before_the_seed_scheme_reads_without_a_scheme():
    old = state().to_checkpoint()
    del old["rng"]["scheme"]
    assert ResumeState.from_checkpoint(old, Path("last.pt")).seed_scheme is None


def test_a_checkpoint_without_resume_state_is_a_one_line_error():
    entries = state().to_checkpoint()
    del entries["epoch_sums"]
    with pytest.raises(CheckpointError, match=r"last.pt: holds no resume state \(missing or malformed entry 'epoch_sums'\)"):
        ResumeState.from_checkpoint(entries, Path("last.pt"))
