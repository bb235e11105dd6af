import json
import os
import signal

import pytest
import torch

from grdnet.errors import ConfigError, DataError, TrainingError
from grdnet.models.grdnet import MEMORY_LEVELS
from grdnet.training import Trainer, load_checkpoint
from grdnet.training.trainer import FINITE_CHECK_EVERY


def weights(path):
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_short_run_lowers_losses_and_writes_run_files(make_config):
    cfg = make_config(epochs=4)
    result = Trainer(cfg, show_progress=False).fit()
    run = result.run_dir
    for name in ("config.yaml", "run.json", "last.pt", "best.pt", "log.jsonl"):
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert log[-1]["loss_con"] < log[0]["loss_con"]
    # The segmenter learns: its focal loss depends on each epoch's synthetic anomalies (how many, how large),
    # so progress shows on the validator's fixed anomalies instead.
    assert log[-1]["val_pixel_AP"] > log[0]["val_pixel_AP"] + 0.1
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 0 and "torch" in info["versions"] and info["split"]["validation"]
    assert set(info["split"]["train"]).isdisjoint(info["split"]["validation"])
    state = load_checkpoint(result.best_checkpoint)
    assert state["config"]["train"]["epochs"] == 4 and torch.isfinite(torch.tensor(state["threshold"]))


def test_resume_reaches_the_same_weights(make_config):
    full = Trainer(make_config("full", epochs=2), show_progress=False).fit()
    Trainer(make_config("split", epochs=1), show_progress=False).fit()
    resumed = Trainer(make_config("split", epochs=2), resume=True, show_progress=False).fit()
    assert resumed.epochs_done == 2
    assert_same_weights(weights(full.last_checkpoint), weights(resumed.last_checkpoint))


def test_ctrl_c_mid_epoch_saves_and_resume_is_exact(make_config, capsys):
    full = Trainer(make_config("full", epochs=2), show_progress=False).fit()

    def interrupt(epoch, step):
        if (epoch, step) == (1, 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        Trainer(make_config("cut", epochs=2), show_progress=False, step_callback=interrupt).fit()
    saved = load_checkpoint(make_config("cut").train.output_dir / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 3)
    assert "grdnet train --resume --output" in capsys.readouterr().err  # shown without progress output too
    resumed = Trainer(make_config("cut", epochs=2), resume=True, show_progress=False).fit()
    assert_same_weights(weights(full.last_checkpoint), weights(resumed.last_checkpoint))


def tiled(cfg):
    """The same run on 64-px tiles of the images read at 96 px."""
    return cfg.updated({"data.image_size": [96, 96], "data.tile_size": [64, 64]})


def test_tile_crops_follow_the_seed_and_keep_image_and_roi_aligned(make_config):
    trainer = Trainer(tiled(make_config("tiles")), show_progress=False)
    trainer._build()
    indices = torch.arange(4)
    first, again, next_step = (trainer._batch(indices, 0, step) for step in (0, 0, 1))
    assert first["image"].shape == (4, 3, 64, 64) and first["roi"].shape == (4, 1, 64, 64)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["roi"], again["roi"])
    assert not torch.equal(first["image"], next_step["image"])
    for i in range(4):
        full_image, full_roi = trainer.train_data["image"][i], trainer.train_data["roi"][i]
        windows = [(top, left) for top in range(33) for left in range(33)
                   if torch.equal(full_image[:, top : top + 64, left : left + 64], first["image"][i])]
        assert windows, f"tile {i} is not a window of its image"
        assert any(torch.equal(full_roi[:, top : top + 64, left : left + 64], first["roi"][i]) for top, left in windows)


def test_tiled_ctrl_c_mid_epoch_resume_is_exact(make_config):
    full = Trainer(tiled(make_config("full", epochs=1)), show_progress=False).fit()

    def interrupt(epoch, step):
        if (epoch, step) == (0, 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        Trainer(tiled(make_config("cut", epochs=1)), show_progress=False, step_callback=interrupt).fit()
    assert load_checkpoint(make_config("cut").train.output_dir / "last.pt")["step"] == 3
    resumed = Trainer(tiled(make_config("cut", epochs=1)), resume=True, show_progress=False).fit()
    assert_same_weights(weights(full.last_checkpoint), weights(resumed.last_checkpoint))


def test_resume_refuses_changed_settings(make_config):
    Trainer(make_config("run", epochs=1), show_progress=False).fit()
    changed = make_config("run", epochs=2, lr=5e-4)
    with pytest.raises(ConfigError, match="train.lr"):
        Trainer(changed, resume=True, show_progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(make_config, monkeypatch):
    cfg = make_config("nan", epochs=3)
    trainer = Trainer(cfg, show_progress=False)
    from grdnet.training.recipes.grdnet import GRDNetRecipe

    original = GRDNetRecipe.training_step
    calls = {"n": 0}

    def poisoned(self, batch, generator):
        calls["n"] += 1
        losses = original(self, batch, generator)
        if calls["n"] > 7:  # into epoch 2 (5 steps per epoch)
            losses["con"] = torch.tensor(float("nan"))
        return losses

    monkeypatch.setattr(GRDNetRecipe, "training_step", poisoned)
    with pytest.raises(TrainingError, match="nan") as info:
        trainer.fit()
    assert "last good checkpoint" in str(info.value)
    state = load_checkpoint(cfg.train.output_dir / "last.pt")
    assert state["epoch"] >= 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_time_budget_stops_before_an_epoch_that_would_overrun(make_config):
    trainer = Trainer(make_config("budget", epochs=50, max_minutes=1.0), show_progress=False)
    # 10 s of training per epoch so far (3 epochs in 30 s): 30 s of the 60 left fit 3 more epochs.
    trainer._training_seconds = 30.0
    assert trainer._remaining_epochs(elapsed=30.0, epochs_run=3, epochs_done=3) == 3
    trainer._training_seconds = 50.0
    assert trainer._remaining_epochs(elapsed=55.0, epochs_run=5, epochs_done=5) == 0
    trainer._training_seconds = 1.0
    assert trainer._remaining_epochs(elapsed=1.0, epochs_run=1, epochs_done=49) == 1  # never past train.epochs
    assert "50 epochs planned" in trainer._eta(1.0, 1, 49)


def test_the_epoch_cost_counts_validation_by_its_share_not_as_training(make_config):
    """A long first validation (e.g. 300 s against 30 s epochs) must not make every epoch look ten times dearer."""
    shared = Trainer(make_config("share-cost", epochs=500, max_minutes=15.0, val_share=0.2), show_progress=False)
    shared._training_seconds, shared._validation_seconds = 60.0, 300.0  # 2 epochs of 30 s, one validation of 300 s
    assert shared._epoch_cost(2) == pytest.approx(30.0 / 0.8)
    # 900 s budget, 360 s gone, 300 s kept for the final validation: 240 s left at 37.5 s an epoch
    assert shared._remaining_epochs(elapsed=360.0, epochs_run=2, epochs_done=2) == 6
    every = Trainer(make_config("every-cost", epochs=500, max_minutes=15.0, val_every=5), show_progress=False)
    every._training_seconds, every._validation_seconds = 60.0, 50.0
    assert every._epoch_cost(2) == pytest.approx(30.0 + 10.0)


def test_a_tiny_budget_ends_after_one_validated_epoch(make_config):
    result = Trainer(make_config("tiny-budget", epochs=50, max_minutes=1e-4), show_progress=False).fit()
    assert result.epochs_done == 1 and result.stopped.startswith("time budget")
    assert result.best_checkpoint.is_file() and torch.isfinite(torch.tensor(result.threshold))


def test_nan_loss_is_caught_within_a_few_steps_without_a_progress_bar(make_config, monkeypatch):
    """The finite check runs every few steps whatever the terminal (CI, nohup, a pipe, DDP ranks > 0)."""
    cfg = make_config("nan_early", epochs=1, batch_size=2)  # 43 training images: 21 steps in the epoch
    from grdnet.training.recipes.grdnet import GRDNetRecipe

    original = GRDNetRecipe.training_step
    steps = []

    def poisoned(self, batch, generator):
        losses = original(self, batch, generator)
        steps.append(len(steps))
        if len(steps) == 2:
            losses["con"] = torch.tensor(float("inf"))
        return losses

    monkeypatch.setattr(GRDNetRecipe, "training_step", poisoned)
    with pytest.raises(TrainingError, match=r"became inf at epoch 1, step [2-6];"):
        Trainer(cfg, show_progress=False).fit()
    assert len(steps) <= 1 + FINITE_CHECK_EVERY


def test_a_run_folder_is_never_shared_by_two_runs_and_resume_refuses_a_changed_split(builtin_category, tmp_path):
    import shutil

    from support import tiny_config

    data = shutil.copytree(builtin_category, tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "run", epochs=1)
    Trainer(cfg, show_progress=False).fit()
    run = cfg.train.output_dir
    with pytest.raises(ConfigError, match="already holds a run .*--resume.*--overwrite"):
        Trainer(cfg, show_progress=False)

    for folder in ("train/good", "roi/train/good"):  # one image added, one removed: the validation split moves
        shutil.copy(data / folder / "000.png", data / folder / "900.png")
        (data / folder / "001.png").unlink()
    with pytest.raises(ConfigError, match=r"dataset changed since the run started \(train: \d+ added.*removed") as info:
        Trainer(cfg.updated({"train.epochs": 2}), resume=True, show_progress=False)
    assert "restore the original images" in str(info.value)

    (run / ".last.pt.x1y2.tmp").write_bytes(b"partial")
    Trainer(cfg, overwrite=True, show_progress=False)
    assert not (run / ".last.pt.x1y2.tmp").exists() and not any((run / name).exists() for name in ("last.pt", "log.jsonl"))


def test_unwritable_output_and_full_disk_are_refused_before_training(make_config, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DataError, match=r"file/run: cannot write here \(a file is in the way\); choose another --output"):
        Trainer(make_config("file/run"), show_progress=False)
    trainer = Trainer(make_config("tight"), show_progress=False)
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(ConfigError, match="only 0 MiB free"):
        trainer.fit()
    assert not (make_config("tight").train.output_dir / "last.pt").exists()


def test_failed_checkpoint_write_keeps_the_previous_one_and_says_so(make_config, monkeypatch):
    from grdnet.errors import CheckpointError

    cfg = make_config("full_disk", epochs=2)
    real_save, calls = torch.save, {"n": 0}

    def fail_third(state, handle):  # best.pt and last.pt of epoch 1 succeed; epoch 2's best.pt fails
        calls["n"] += 1
        if calls["n"] >= 3:
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 128 vs 64")
        real_save(state, handle)

    monkeypatch.setattr(torch, "save", fail_third)  # checkpoint imports torch when saving
    with pytest.raises(CheckpointError, match=r"cannot write the checkpoint .*the previous (best|last).pt is kept unchanged"):
        Trainer(cfg, show_progress=False).fit()
    monkeypatch.undo()
    assert load_checkpoint(cfg.train.output_dir / "last.pt")["epoch"] == 1
    assert not list(cfg.train.output_dir.glob(".*.tmp"))


def test_a_time_budget_that_cuts_training_says_so_loudly(make_config, capsys):
    result = Trainer(make_config("budget", epochs=3, max_minutes=1e-6), show_progress=False).fit()
    assert result.epochs_done == 1 and "time budget" in result.stopped
    assert "stopped early: 1 of 3 epochs done" in capsys.readouterr().err.replace("\n", " ")


def test_val_share_spaces_validations_by_their_cost_and_the_budget_keeps_one_in_reserve(make_config):
    trainer = Trainer(make_config("val-share", epochs=50, max_minutes=1.0, val_share=0.2), show_progress=False)
    assert trainer._validation_due(0.0)  # before the first validation: as val_every says
    trainer._validation_seconds = 10.0  # a validation costs 10 s: the next after 40 s of training (20 % of the time)
    assert not trainer._validation_due(39.0) and trainer._validation_due(40.0)
    # 24 s of training for 3 epochs (8 s each, 10 s with the validation's fifth), 30 s left of which 10 s are
    # kept for the final validation: 2 more epochs, not 3
    trainer._training_seconds = 24.0
    assert trainer._remaining_epochs(elapsed=30.0, epochs_run=3, epochs_done=3) == 2
    plain = Trainer(make_config("val-every", epochs=50, max_minutes=1.0), show_progress=False)
    plain._validation_seconds = 10.0
    assert plain._validation_due(0.0)  # without val_share every due epoch validates


def test_val_share_validates_fewer_epochs_than_val_every_alone(make_config, monkeypatch):
    from grdnet.training import trainer as trainer_module

    clock = {"now": 0.0}

    def fake_clock():
        clock["now"] += 1.0
        return clock["now"]

    monkeypatch.setattr(trainer_module.time, "perf_counter", fake_clock)
    original = trainer_module.Validator.run

    def slow_validation(self, model):
        clock["now"] += 100.0  # validation costs far more than an epoch
        return original(self, model)

    monkeypatch.setattr(trainer_module.Validator, "run", slow_validation)
    result = Trainer(make_config("spaced", epochs=4, val_share=0.5), show_progress=False).fit()
    validated = [row["epoch"] for row in result.history if "val_score" in row]
    assert validated[0] == 1 and validated[-1] == 4 and len(validated) < 4, validated


def test_resuming_as_another_method_names_the_change():
    """Two methods' model sections hold different keys; the resume check still names what changed."""
    from grdnet.config import RunConfig

    with pytest.raises(ConfigError, match="model.name"):
        Trainer._check_resumable(RunConfig(), RunConfig.for_model("draem"))


def test_grdnet_memory_bank_is_filled_from_training_images_before_training_and_kept_on_resume(make_config, monkeypatch):
    from grdnet.checkpoint import load_checkpoint
    from grdnet.training.recipes.grdnet import GRDNetRecipe

    cfg = make_config("memory", epochs=1).updated({"model.segmenter_features": "pretrained", "model.memory_bank_size": 200})
    trainer = Trainer(cfg, show_progress=False)
    trainer.fit()
    segmenter = trainer.model.segmenter
    bank = segmenter.memory_bank.clone()
    assert bank.shape == (200, sum(segmenter.backbone.channels[level] for level in MEMORY_LEVELS))
    assert float(segmenter.memory_scale) > 0 and bank.abs().sum() > 0
    # the bank travels in the checkpoint; a resumed run keeps it instead of drawing a new one
    assert torch.equal(load_checkpoint(cfg.train.output_dir / "last.pt")["model"]["segmenter.memory_bank"], bank)
    monkeypatch.setattr(GRDNetRecipe, "prepare", lambda self, data: pytest.fail("prepare ran on resume"))
    resumed = Trainer(cfg.updated({"train.epochs": 2}), show_progress=False, resume=True)
    resumed.fit()
    assert torch.equal(resumed.model.segmenter.memory_bank, bank)
