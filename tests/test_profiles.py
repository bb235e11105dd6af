"""Hardware profiles: what `grdnet train` picks for the settings the user leaves unset."""

import pytest
from PIL import Image

from grdnet.config import RunConfig
from grdnet.errors import DataError
from grdnet.profiles import BUDGET_MINUTES, image_stats, resolve_profile, working_size


def _dataset(root, sizes, mode="L"):
    """An MVTec-layout category with one training image per (height, width) in `sizes`."""
    good = root / "cat" / "train" / "good"
    good.mkdir(parents=True)
    (root / "cat" / "test" / "good").mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        Image.new(mode, (w, h), 128).save(good / f"{i:03d}.png")
        Image.new(mode, (w, h), 128).save(root / "cat" / "test" / "good" / f"{i:03d}.png")
    return RunConfig().updated({"data.root": str(root), "data.category": "cat", "train.device": "cpu"})


def test_working_size_rounds_the_median_up_and_caps_the_longer_side():
    assert working_size((322, 268), 64) == (352, 288)
    assert working_size((500, 1250), 64) == (416, 1024)  # 1250 → 1024, aspect kept, then rounded up
    assert working_size((40, 50), 64) == (64, 64)


def test_image_stats_reads_median_size_and_gray_mode(tmp_path):
    _dataset(tmp_path, [(100, 200), (300, 260), (320, 270)])
    paths = sorted((tmp_path / "cat" / "train" / "good").iterdir())
    stats = image_stats(paths)
    assert stats.median_size == (300, 260) and stats.grayscale and stats.count == 3
    assert not image_stats([*paths, _rgb(tmp_path)]).grayscale


def _rgb(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (10, 10)).save(path)
    return path


def test_cpu_profile_fits_native_size_tiles_and_budgets_time(tmp_path):
    cfg = _dataset(tmp_path, [(322, 268)] * 3)
    resolved, summary = resolve_profile(cfg, "cpu", set())
    data, train = resolved.data, resolved.train
    assert data.image_size == (352, 288) and data.resize == "fit" and data.channels == 1
    assert data.tile_size == (64, 64) and data.tile_stride == (32, 32)
    assert train.max_minutes == BUDGET_MINUTES["cpu"] and train.epochs >= 1000
    assert resolved.model.base_width < RunConfig().model.base_width
    assert resolved.model.stages == 3  # an 8×8 latent on a 64² tile (E4a), not the paper's 2×2
    assert resolved.synthesis.stroke_share == 0.5 and resolved.synthesis.local_share == 0.5  # E5b
    assert train.val_share == 0.2  # validation at a fifth of the time
    assert resolved.model.segmenter_features == "pretrained" and resolved.model.memory_bank_size == 16384  # E7
    assert summary.startswith("profile cpu (no GPU found)") and "352×288" in summary and "--profile paper" in summary
    assert "pretrained features and a 16384-patch normal memory" in summary


def test_user_settings_win_and_geometry_moves_as_one(tmp_path):
    cfg = _dataset(tmp_path, [(322, 268)] * 3).updated({"data.image_size": (256, 256), "train.lr": 5e-4})
    resolved, summary = resolve_profile(cfg, "cpu", {"data.image_size", "train.lr"})
    assert resolved.data.image_size == (256, 256) and resolved.data.tile_size is None
    assert resolved.data.resize == "stretch" and resolved.train.lr == 5e-4
    assert "kept your data.image_size, train.lr" in summary


def test_paper_profile_changes_nothing(tmp_path):
    cfg = _dataset(tmp_path, [(322, 268)] * 3)
    resolved, summary = resolve_profile(cfg, "paper", set())
    assert resolved == cfg and "paper" in summary


def test_other_methods_keep_their_geometry(tmp_path):
    cfg = RunConfig.for_model("ganomaly").updated({"data.root": str(tmp_path), "train.device": "cpu"})
    resolved, _ = resolve_profile(cfg, "cpu", set())
    assert resolved.data.image_size == cfg.data.image_size and resolved.train.max_minutes == BUDGET_MINUTES["cpu"]


def test_unknown_profile_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="unknown profile 'laptop'"):
        resolve_profile(RunConfig(), "laptop", set())


@pytest.mark.parametrize("method", ["patchcore", "padim"])
def test_single_pass_methods_get_no_budget(tmp_path, method):
    cfg = RunConfig.for_model(method).updated({"data.root": str(tmp_path), "train.device": "cpu"})
    resolved, summary = resolve_profile(cfg, "cpu", set())
    assert resolved == cfg and resolved.train.epochs == 1 and "one pass" in summary
