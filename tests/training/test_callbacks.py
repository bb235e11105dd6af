"""Epoch callbacks: the run folder's own files (`RunFiles`), written beside the loop, not by it."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from grdnet.config import RunConfig
from grdnet.training import Trainer
from grdnet.training.callbacks import RunFiles


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_run_files_write_the_config_the_run_info_a_log_line_per_epoch_and_the_curves(tmp_path):
    cfg = RunConfig().updated({"train.seed": 7})
    files = RunFiles(cfg, tmp_path / "run", {"seed": 7, "split": {"train": ["a.png"]}})
    files.start()
    assert RunConfig.from_yaml(tmp_path / "run" / "config.yaml") == cfg
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == {"seed": 7, "split": {"train": ["a.png"]}}
    history = [{"epoch": 1, "loss_g": 1.0}]
    files.epoch_end(history, None, None)
    history.append({"epoch": 2, "loss_g": 0.5, "val_score": 0.7})
    files.epoch_end(history, None, None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log == history
    assert pixels((tmp_path / "run" / "training_curves.png").read_bytes()).std() > 10


@pytest.mark.slow
def test_training_updates_the_curves_every_epoch(make_config):
    after_first = {}

    def grab(epoch, step):
        if epoch == 1 and step == 0:
            after_first["png"] = (cfg.train.output_dir / "training_curves.png").read_bytes()

    cfg = make_config("curves", epochs=2)
    result = Trainer(cfg, show_progress=False, step_callback=grab).fit()
    final = (result.run_dir / "training_curves.png").read_bytes()
    assert pixels(final).std() > 10
    assert pixels(after_first["png"]).shape == pixels(final).shape
    assert not np.array_equal(pixels(after_first["png"]), pixels(final))
