from pathlib import Path

import pytest
import torch

from grdnet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
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
    with pytest.raises(CheckpointError, match="evil.pt") as info:
        load_checkpoint(tmp_path / "evil.pt")
    # never torch's hint that weights_only=False "will likely succeed": that is the one unsafe fix
    assert "weights_only" not in str(info.value) and "could run code" in str(info.value) and "\n" not in str(info.value)


def test_zero_byte_file_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "zero.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="zero.pt: empty file"):
        load_checkpoint(tmp_path / "zero.pt")


def test_config_that_does_not_fit_the_weights(tmp_path: Path):
    from grdnet.config import RunConfig
    from grdnet.models import build_model

    cfg = RunConfig().updated({"data.image_size": [64, 64], "model.base_width": 8, "model.max_width": 16,
                               "model.latent_channels": 8, "model.segmenter_width": 8})
    weights = build_model(cfg).state_dict()
    wider = cfg.updated({"model.base_width": 16})
    cases = {
        "no 'config' section": {"model": weights},
        "no 'model' section": {"config": cfg.to_dict()},
        "stored config is not valid": {"config": {"model": {"name": "nonsense"}}, "model": weights},
        "weights do not match its stored config (model 'grdnet'": {"config": wider.to_dict(), "model": weights},
        "weights do not match its stored config (model 'draem'": {"config": cfg.updated({"model.name": "draem"}).to_dict(),
                                                                  "model": weights},
        "written by grdnet 0.0.1 and this is grdnet": {"config": wider.to_dict(), "model": weights,
                                                       "versions": {"grdnet": "0.0.1"}},
    }
    for fragment, state in cases.items():
        save_checkpoint(state, tmp_path / "c.pt")
        with pytest.raises(CheckpointError, match="use the file grdnet train wrote|use the checkpoint grdnet train wrote|retrain with this version") as info:
            model_from_checkpoint(load_checkpoint(tmp_path / "c.pt"), tmp_path / "c.pt")
        assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


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
    with pytest.raises(CheckpointError, match=r"c.pt: cannot write the checkpoint \(OSError: disk full\); the previous c.pt is kept unchanged"):
        save_checkpoint({"v": 2}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["v"] == 1
    assert not list(tmp_path.glob(".*tmp"))
