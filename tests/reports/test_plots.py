"""Training curves and ROC/PR figures."""

import io

import numpy as np
import pytest
from PIL import Image

from grdnet.reports import curve_pngs, plot_training_curves
from grdnet.training import Trainer


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


def test_roc_and_pr_curves_show_the_data():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    good = curve_pngs(scores, np.array([0, 0, 0, 1, 1, 1]), threshold=0.5)
    bad = curve_pngs(scores, np.array([1, 1, 1, 0, 0, 0]), threshold=0.5)
    for name in ("roc", "pr"):
        assert_not_blank(pixels(good[name]))
        assert not np.array_equal(pixels(good[name]), pixels(bad[name]))
    undefined = curve_pngs(scores, np.zeros(6, dtype=int), threshold=0.5)
    curve_blue = np.array([31, 119, 180])  # matplotlib's tab:blue, the curves' colour
    for name in ("roc", "pr"):
        drawn = (np.abs(pixels(good[name]) - curve_blue).sum(-1) < 30).sum()
        assert drawn > 50, name
        assert (np.abs(pixels(undefined[name]) - curve_blue).sum(-1) < 30).sum() == 0, f"{name} drew a curve of one class"
        assert_not_blank(pixels(undefined[name]))  # the "undefined" note is written instead


@pytest.mark.slow
def test_training_updates_the_curves_every_epoch(make_config):
    after_first = {}

    def grab(epoch, step):
        if epoch == 1 and step == 0:
            after_first["png"] = (cfg.train.output_dir / "training_curves.png").read_bytes()

    cfg = make_config("curves", epochs=2)
    result = Trainer(cfg, show_progress=False, step_callback=grab).fit()
    final = (result.run_dir / "training_curves.png").read_bytes()
    assert_not_blank(pixels(final))
    assert pixels(after_first["png"]).shape == pixels(final).shape
    assert not np.array_equal(pixels(after_first["png"]), pixels(final))
