"""training_curves.png: one panel per group of the epoch records, redrawn atomically."""

import io

import numpy as np
from PIL import Image

from grdnet.training.curves import plot_training_curves


def record(epoch, loss):
    return {"epoch": epoch, "loss_g": loss, "loss_d": 2 * loss, "lr_generator": 1e-3 / epoch, "seconds": 1.0,
            "val_score": 0.5 + 0.1 * epoch, "val_image_AUROC": 0.6, "threshold": 0.3}


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    image.verify()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def assert_not_blank(array):
    assert array.std() > 10
    assert len(np.unique(array.reshape(-1, 3), axis=0)) > 20


def test_training_curves_are_written_atomically_and_change_per_epoch(tmp_path):
    one = plot_training_curves([record(1, 1.0)], tmp_path / "curves.png").read_bytes()
    two = plot_training_curves([record(1, 1.0), record(2, 0.5)], tmp_path / "curves.png").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary files left behind
    a, b = pixels(one), pixels(two)
    assert_not_blank(a)
    assert a.shape == b.shape and np.abs(a - b).sum(-1).astype(bool).mean() > 0.005


def test_training_curves_accept_epochs_without_validation(tmp_path):
    history = [{k: v for k, v in record(1, 1.0).items() if not k.startswith("val_")}, record(2, 0.5)]
    assert_not_blank(pixels(plot_training_curves(history, tmp_path / "c.png").read_bytes()))
