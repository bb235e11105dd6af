from pathlib import Path

import pytest
import torch

from grdnet.checkpoint import load_checkpoint, save_checkpoint
from grdnet.errors import CheckpointError


def test_round_trip_and_weights_only(tmp_path: Path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "config": {"a": [1, 2]}, "threshold": 0.5}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], torch.arange(4.0)) and loaded["epoch"] == 3
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_a_run_folder_resolves_to_best_then_last(tmp_path: Path):
    save_checkpoint({"which": "last"}, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path)["which"] == "last"
    save_checkpoint({"which": "best"}, tmp_path / "best.pt")
    assert load_checkpoint(tmp_path)["which"] == "best"


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_refused(tmp_path: Path):
    torch.save({"format": "grdnet-checkpoint-v1", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def test_truncated_missing_and_foreign_files(tmp_path: Path):
    save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a grdnet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch):
    save_checkpoint({"v": 1}, tmp_path / "c.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint({"v": 2}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["v"] == 1
    assert not list(tmp_path.glob(".*tmp"))
