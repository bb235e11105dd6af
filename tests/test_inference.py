import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from grdnet.errors import DataError
from grdnet.inference import Predictor
from grdnet.training import Trainer


@pytest.fixture(scope="module")
def trained(builtin_category, tmp_path_factory):
    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path_factory.mktemp("run"), epochs=1)
    return Trainer(cfg, show_progress=False).fit()


def test_predictor_loads_a_checkpoint_alone(trained):
    predictor = Predictor.from_checkpoint(trained.run_dir, device="cpu")
    assert predictor.image_size == (64, 64) and np.isfinite(predictor.threshold)
    batch = torch.rand(3, 3, 64, 64)
    pred = predictor.predict(batch)
    assert pred.anomaly_map.shape == (3, 64, 64) and pred.smoothed_map.shape == (3, 64, 64)
    assert pred.score.shape == (3,) and pred.decision.dtype == bool
    assert 0 <= pred.anomaly_map.min() and pred.anomaly_map.max() <= 1
    np.testing.assert_allclose(pred.score, pred.smoothed_map.reshape(3, -1).max(1), rtol=1e-5)
    np.testing.assert_array_equal(pred.decision, pred.score >= predictor.threshold)


def test_the_predictor_scores_with_the_normal_stats_its_checkpoint_holds(trained):
    """Training stores the validation's per-position stats beside the threshold; the predictor's maps are the
    raw smoothed maps in those units, and its score is their maximum."""
    from grdnet.checkpoint import load_checkpoint, model_from_checkpoint

    state = load_checkpoint(trained.best_checkpoint)
    mean, std = state["normal_stats"]["mean"], state["normal_stats"]["std"]
    assert mean.shape == std.shape == (1, 1, 64, 64) and float(std.min()) > 0
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu", precision="fp32")
    cfg, model = model_from_checkpoint(state, trained.best_checkpoint)
    raw = Predictor(model, cfg, predictor.threshold, torch.device("cpu"), bf16=False)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = (raw.predict(images).smoothed_map - mean[0].numpy()) / std[0].numpy()
    got = predictor.predict(images)
    np.testing.assert_allclose(got.smoothed_map, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.score, expected.reshape(2, -1).max(1), rtol=1e-4)


def test_predictor_runs_only_the_inference_path(trained):
    """E1, decoder and segmenter run; E2 and the discriminator (training only) do not."""
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    model, ran = predictor.model.model, []
    parts = {"encoder1": model.generator.encoder1, "decoder": model.generator.decoder, "encoder2": model.generator.encoder2,
             "discriminator": model.discriminator, "segmenter": model.segmenter}
    for name, part in parts.items():
        part.register_forward_hook(lambda *a, n=name: ran.append(n))
    predictor.predict(torch.rand(1, 3, 64, 64))
    assert ran == ["encoder1", "decoder", "segmenter"]


def test_importing_inference_pulls_in_no_training_code():
    """The layers point down: checkpoints are read below training, so serving never loads the trainer."""
    import subprocess
    import sys

    code = ("import sys, grdnet.inference; "
            "print(sorted(m for m in sys.modules if m.startswith(('grdnet.training', 'grdnet.synthesis', 'rich'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_channels_last_predicts_what_the_contiguous_layout_predicts(trained):
    loaded = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    nhwc = Predictor(loaded.model.model, loaded.cfg.updated({"train.channels_last": True}), loaded.threshold, loaded.device, False)
    weights = [m.weight for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    nchw = Predictor(loaded.model.model, loaded.cfg.updated({"train.channels_last": False}), loaded.threshold, loaded.device, False)
    assert all(w.is_contiguous() for w in weights)
    batch = torch.rand(2, 3, 64, 64)
    a, b = nhwc.predict(batch), nchw.predict(batch)
    np.testing.assert_allclose(a.smoothed_map, b.smoothed_map, atol=1e-5)
    np.testing.assert_allclose(a.score, b.score, atol=1e-5)


def test_arrays_of_any_kind_are_read_as_their_pixels(trained, tmp_path):
    """uint8, uint16 and float arrays, gray, RGB or RGBA, give the prediction of the same pixels as floats in
    [0, 1] (alpha dropped) and, for a gray uint8 array, of the same image saved as a file."""
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    gray8 = np.random.default_rng(0).integers(0, 255, (80, 100), dtype=np.uint8)
    rgb16 = np.random.default_rng(1).integers(0, 65535, (64, 64, 3), dtype=np.uint16)
    rgba = np.random.default_rng(2).random((50, 70, 4)).astype(np.float32)
    as_floats = {"gray8": (gray8, gray8 / 255.0), "rgb16": (rgb16, rgb16 / 65535.0), "rgba": (rgba, rgba[..., :3])}
    scores = {}
    for name, (array, floats) in as_floats.items():
        got, expected = predictor.predict(array), predictor.predict(floats.astype(np.float32))
        np.testing.assert_allclose(got.smoothed_map, expected.smoothed_map, atol=1e-5, err_msg=name)
        scores[name] = float(got.score[0])
    assert len({round(score, 6) for score in scores.values()}) == 3  # three images, three scores
    Image.fromarray(gray8).save(tmp_path / "gray.png")
    from_file = predictor.predict(*predictor.load_files([tmp_path / "gray.png"]))
    np.testing.assert_allclose(from_file.score, [scores["gray8"]], atol=1e-5)
    both = predictor.predict([gray8, rgba])
    np.testing.assert_allclose(both.score, [scores["gray8"], scores["rgba"]], atol=1e-5)


def test_predict_folder_writes_csv_and_overlays(trained, builtin_category, tmp_path):
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    folder = builtin_category / "test"
    csv_path = predictor.predict_folder(folder, tmp_path / "out", batch_size=16)
    rows = list(csv.DictReader(csv_path.open()))
    images = [p for p in folder.rglob("*.png")]
    assert len(rows) == len(images)
    assert {r["decision"] for r in rows} <= {"ok", "defect"}
    assert all(isinstance(json.loads(r["regions"]), list) for r in rows)
    overlays = list((tmp_path / "out" / "overlays").glob("*.png"))
    assert len(overlays) == len(images)
    assert np.asarray(Image.open(overlays[0])).shape == (64, 64, 3)


def test_predict_folder_without_images_is_a_clear_error(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        predictor.predict_folder(tmp_path / "empty", tmp_path / "out")


def test_fit_resize_zeroes_maps_on_the_padding_and_scores_the_image_only(trained, tmp_path):
    loaded = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    fit = Predictor(loaded.model.model, loaded.cfg.updated({"data.resize": "fit"}), loaded.threshold, loaded.device, False)
    wide = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)  # fits as rows 0–31 of 64×64
    batch, valid = fit.prepare(wide)
    assert batch.shape == (1, 3, 64, 64) and torch.equal(batch[:, :, 32:], batch[:, :, :32].flip(2))  # mirrored
    assert valid.shape == (1, 64, 64) and valid[0, :32].all() and not valid[0, 32:].any()
    pred = fit.predict(wide)
    assert np.all(pred.anomaly_map[0, 32:] == 0) and np.all(pred.smoothed_map[0, 32:] == 0)
    assert pred.score[0] == pytest.approx(pred.smoothed_map[0, :32].max()) and pred.score[0] > 0
    unmasked = fit.predict(batch)  # already at size: nothing known about padding
    assert unmasked.smoothed_map[0, 32:].min() > 0
    np.testing.assert_array_equal(unmasked.smoothed_map[0, :32], pred.smoothed_map[0, :32])
    Image.fromarray(wide).save(tmp_path / "wide.png")
    from_file = fit.predict(*fit.load_files([tmp_path / "wide.png"]))
    np.testing.assert_allclose(from_file.smoothed_map, pred.smoothed_map, atol=1e-6)
    np.testing.assert_allclose(from_file.score, pred.score, atol=1e-6)


def test_progress_bars_of_predict_folder_and_evaluation_on_a_terminal(trained, builtin_category, tmp_path, monkeypatch, capsys):
    from grdnet.data import index_dataset
    from grdnet.evaluation import evaluate_samples

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    predictor = Predictor.from_checkpoint(trained.best_checkpoint, device="cpu")
    predictor.predict_folder(builtin_category / "test", tmp_path / "quiet", batch_size=16)
    assert "predicting" not in capsys.readouterr().err
    predictor.predict_folder(builtin_category / "test", tmp_path / "out", batch_size=16, show_progress=True)
    assert "predicting" in capsys.readouterr().err
    evaluate_samples(predictor, index_dataset(predictor.cfg.data).test[:8], use_rois=True, batch_size=4, show_progress=True)
    assert "testing" in capsys.readouterr().err
