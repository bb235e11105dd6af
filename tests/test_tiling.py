"""Tiles: origins, stitching (`TiledModel`), random training crops, and a tiled run end to end (train → predict → ONNX)."""

import numpy as np
import pytest
import torch
from torch import nn

from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.scoring import ScoredModel, image_score, smooth_map
from grdnet.tiling import TILES_PER_CALL, TiledModel, random_tile_crops, tile_origins, wrap_for_inference


@pytest.mark.parametrize("length, tile, stride", [(128, 64, 32), (128, 64, 48), (100, 64, 64), (64, 64, 7), (97, 32, 1)])
def test_tile_origins_cover_every_pixel_and_end_aligned(length, tile, stride):
    origins = tile_origins(length, tile, stride)
    covered = np.zeros(length, dtype=bool)
    for start in origins:
        covered[start : start + tile] = True
    assert covered.all()
    assert origins[0] == 0 and origins[-1] + tile == length
    assert all(0 < b - a <= stride for a, b in zip(origins, origins[1:]))


def test_tile_origins_refuse_gaps():
    with pytest.raises(ValueError, match="stride"):
        tile_origins(128, 64, 65)


class PixelModel(nn.Module):
    """Stand-in for a trained model: its maps are per-pixel functions of the input, so tiling must not change them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(len(x))
        anomaly_map = x.mean(dim=1, keepdim=True) ** 2
        return {
            "reconstruction": 1 - x,
            "anomaly_map": anomaly_map,
            "score_mean": x.flatten(1).mean(dim=1),
            "patch_stats": torch.stack([x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))], dim=1),
        }


def test_tiled_model_reproduces_the_untiled_map_and_scores_the_stitched_map():
    image_size, tile, stride, kernel = (128, 96), (64, 64), (48, 40), 7
    inner = PixelModel()
    cfg = RunConfig().updated({"data.image_size": list(image_size), "data.tile_size": list(tile),
                               "data.tile_stride": list(stride), "scoring.smoothing_kernel": kernel})
    scored = wrap_for_inference(inner, cfg)
    x = torch.rand(3, 3, *image_size, generator=torch.Generator().manual_seed(0))
    stitched, out = scored.model(x), scored(x)
    whole = inner(x)
    assert list(stitched) == list(whole)
    torch.testing.assert_close(out["anomaly_map"], whole["anomaly_map"])
    torch.testing.assert_close(out["reconstruction"], whole["reconstruction"])
    torch.testing.assert_close(out["smoothed_map"], smooth_map(whole["anomaly_map"], kernel))
    torch.testing.assert_close(out["score"], image_score(smooth_map(whole["anomaly_map"], kernel)))
    windows = [(t, left) for t in tile_origins(128, 64, 48) for left in tile_origins(96, 64, 40)]
    tile_means = torch.stack([x[:, :, t : t + 64, left : left + 64].flatten(1).mean(1) for t, left in windows], dim=1)
    torch.testing.assert_close(out["score_mean"], tile_means.amax(dim=1))
    assert out["patch_stats"].shape == (3, 2 * len(windows))
    calls = inner.calls[:-1]  # the last call is the untiled reference
    assert sum(calls) == 2 * 3 * len(windows) and max(calls) == 3 * TILES_PER_CALL  # stitched twice above


def test_tiled_model_refuses_other_sizes():
    with pytest.raises(ValueError, match=r"\(128, 96\)"):
        TiledModel(PixelModel(), (128, 96), (64, 64), (32, 32))(torch.rand(1, 3, 64, 64))


def test_wrap_for_inference_tiles_only_when_configured():
    model = PixelModel()
    untiled = wrap_for_inference(model, RunConfig())
    assert isinstance(untiled, ScoredModel) and untiled.model is model
    cfg = RunConfig().updated({"data.image_size": [128, 192], "data.tile_size": [64, 64], "scoring.smoothing_kernel": 5})
    scored = wrap_for_inference(model.eval(), cfg)
    tiled = scored.model
    assert isinstance(tiled, TiledModel) and not scored.training and scored.head.smoothing_kernel == 5
    assert tiled.origins == [(t, left) for t in (0, 32, 64) for left in (0, 32, 64, 96, 128)]  # default stride: half


def test_wrap_for_inference_scores_as_the_method_record_says():
    """The head takes the map's maximum for a map-scored method (GRD-Net) and keeps the model's own score
    for one that is not (GANomaly), on the same raw outputs."""

    class Raw(nn.Module):
        def forward(self, x):
            return {"anomaly_map": x[:, :1], "score": torch.full((len(x),), 0.25)}

    x = torch.zeros(1, 3, 64, 64)
    x[..., 10, 10] = 1.0
    grdnet = wrap_for_inference(Raw(), RunConfig().updated({"scoring.smoothing_kernel": 1}))
    ganomaly = wrap_for_inference(Raw(), RunConfig.for_model("ganomaly").updated({"scoring.smoothing_kernel": 1}))
    assert grdnet(x)["score"].item() == 1.0 and ganomaly(x)["score"].item() == 0.25


@pytest.mark.parametrize("name, model", [
    ("grdnet", {"base_width": 8, "max_width": 16, "latent_channels": 8, "segmenter_width": 8, "segmenter_levels": 3}),
    ("draem", {"base_width": 8, "max_width": 16, "segmenter_width": 8, "segmenter_levels": 3}),
    ("vtadl", {"base_width": 16, "depth": 1, "heads": 2, "components": 2}),
])
def test_every_tileable_method_runs_over_whole_images(name, model):
    from grdnet.models import build_model

    cfg = RunConfig.for_model(name, {"data": {"image_size": [96, 128], "tile_size": [64, 64]}, "model": model})
    inner = build_model(cfg).eval()
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, tile_out = wrap_for_inference(inner, cfg)(x), inner(x[:, :, :64, :64])
    assert set(out) == set(tile_out) | {"smoothed_map", "score"}
    assert out["anomaly_map"].shape == out["smoothed_map"].shape == (2, 1, 96, 128) and out["score"].shape == (2,)
    torch.testing.assert_close(out["score"], image_score(out["smoothed_map"]))
    torch.testing.assert_close(out["anomaly_map"][..., :32, :32], tile_out["anomaly_map"][..., :32, :32].float())


def _coordinates(batch: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) whose value encodes (sample, row, column), so any crop says where it came from."""
    grid = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width)
    return grid + 1e6 * torch.arange(batch, dtype=torch.float64).view(batch, 1, 1, 1)


def test_random_crops_keep_image_and_roi_aligned_and_follow_the_seed():
    image, roi = _coordinates(6, 96, 128), -_coordinates(6, 96, 128)
    crops = random_tile_crops({"image": image, "roi": roi}, (64, 32), torch.Generator().manual_seed(3))
    assert crops["image"].shape == (6, 1, 64, 32) and crops["roi"].shape == (6, 1, 64, 32)
    torch.testing.assert_close(crops["roi"], -crops["image"])
    corners = []
    for i, crop in enumerate(crops["image"][:, 0]):
        top, left = divmod(int(crop[0, 0] - 1e6 * i), 128)
        torch.testing.assert_close(crop, image[i, 0, top : top + 64, left : left + 32])
        corners.append((top, left))
    again = random_tile_crops({"image": image, "roi": roi}, (64, 32), torch.Generator().manual_seed(3))
    assert torch.equal(again["image"], crops["image"])
    other = random_tile_crops({"image": image}, (64, 32), torch.Generator().manual_seed(4))
    assert not torch.equal(other["image"], crops["image"])
    assert len(set(corners)) > 1


def test_focused_crops_contain_the_defect_centre():
    masks = torch.zeros(3, 1, 128, 128)
    masks[0, :, 120:127, 1:8] = 1  # near the bottom-left corner: centre (123, 4)
    masks[1, :, 10:31, 60:101] = 1  # centre (20, 80)
    images = _coordinates(3, 128, 128)
    for seed in range(20):
        crops = random_tile_crops({"image": images, "mask": masks}, (64, 64), torch.Generator().manual_seed(seed), focus=masks)
        for i in (0, 1):
            assert crops["mask"][i].sum() > 0
            top, left = divmod(int(crops["image"][i, 0, 0, 0] - 1e6 * i), 128)
            centre_row, centre_col = (123, 4) if i == 0 else (20, 80)
            assert top <= centre_row < top + 64 and left <= centre_col < left + 64


def test_tiling_config_is_validated_with_one_line_errors():
    with pytest.raises(ConfigError, match=r"tile_size \(256, 256\) is larger than image_size \(128, 128\)"):
        RunConfig().updated({"data.image_size": [128, 128], "data.tile_size": [256, 256]})
    with pytest.raises(ConfigError, match="tile_stride .* between 1 and tile_size"):
        RunConfig().updated({"data.tile_size": [64, 64], "data.tile_stride": [65, 32]})
    with pytest.raises(ConfigError, match="without tile_size"):
        RunConfig().updated({"data.tile_stride": [32, 32]})
    with pytest.raises(ConfigError, match="tile_size sides must be multiples of 32"):
        RunConfig().updated({"data.tile_size": [50, 64]})
    with pytest.raises(ConfigError, match="model 'ganomaly' cannot be tiled"):
        RunConfig.for_model("ganomaly", {"data": {"image_size": [128, 128], "tile_size": [64, 64]}})
    tiled = RunConfig().updated({"data.image_size": [512, 1280], "data.tile_size": [256, 256], "data.resize": "fit"})
    assert tiled.data.model_size == (256, 256) and RunConfig().data.model_size == (256, 256)
    with pytest.raises(ConfigError, match="image_size sides must be multiples of 32 between 64 and 1024"):
        RunConfig().updated({"data.image_size": [512, 1280]})


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiled_run(tmp_path_factory):
    """GRD-Net trained 1 epoch on 64-px tiles of 128-px built-in images, fitted into 128×160 (32 px of padding)."""
    from grdnet.builtin_dataset import make_builtin_dataset
    from grdnet.training import Trainer

    from support import tiny_config

    category = make_builtin_dataset(tmp_path_factory.mktemp("builtin128"), seed=0, size=128, n_train=16,
                                    n_test_good=4, n_test_defect_per_type=1)
    cfg = tiny_config(category, tmp_path_factory.mktemp("tiled"), epochs=1).updated(
        {"data.image_size": [128, 160], "data.resize": "fit", "data.tile_size": [64, 64], "data.val_fraction": 0.2}
    )
    return category, Trainer(cfg, show_progress=False).fit()


def test_tiled_run_predicts_whole_images(tiled_run, tmp_path):
    import csv

    from grdnet.inference import Predictor

    category, result = tiled_run
    assert np.isfinite(result.threshold) and np.isfinite(result.history[-1]["val_score"])
    predictor = Predictor.from_checkpoint(result.run_dir, device="cpu")
    assert isinstance(predictor.model.model, TiledModel) and predictor.model.model.model.image_size == (64, 64)
    paths = sorted((category / "test").rglob("*.png"))
    images, valid = predictor.load_files(paths)
    pred = predictor.predict(images, valid)
    assert images.shape[-2:] == (128, 160) and pred.smoothed_map.shape == (len(paths), 128, 160)
    assert np.all(pred.anomaly_map[:, :, 128:] == 0) and np.all(pred.smoothed_map[:, :, 128:] == 0)
    assert pred.smoothed_map[:, :, :128].max() > 0
    np.testing.assert_allclose(pred.score, pred.smoothed_map.reshape(len(paths), -1).max(1), rtol=1e-6)
    csv_path = predictor.predict_folder(category / "test", tmp_path / "out", overlays=False)
    assert len(list(csv.DictReader(csv_path.open()))) == len(paths)


def test_tiled_run_evaluates_on_the_test_split(tiled_run):
    from grdnet.data import index_dataset
    from grdnet.evaluation import evaluate_samples
    from grdnet.inference import Predictor

    _, result = tiled_run
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    evaluation = evaluate_samples(predictor, index_dataset(predictor.cfg.data).test, use_rois=True)
    assert evaluation.maps.shape[1:] == (128, 160) and np.all(evaluation.rois[:, :, 128:] == 0)
    assert 0.0 <= evaluation.metrics["pixel_AUROC"] <= 1.0


def test_tiled_export_matches_torch(builtin_category, tmp_path):
    """Strict parity on a tiled graph (untrained weights, stretched 64-px images: no padding)."""
    pytest.importorskip("onnxruntime")
    from grdnet.checkpoint import save_checkpoint
    from grdnet.export import export_onnx
    from grdnet.inference import Predictor
    from grdnet.models import build_model
    from grdnet.onnx_predictor import OnnxPredictor

    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path).updated({"data.image_size": [96, 128], "data.tile_size": [64, 64]})
    torch.manual_seed(0)  # the parity margin depends on the weights: the same ones whatever ran before
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "threshold": 0.5}, tmp_path / "best.pt")
    exported = export_onnx(tmp_path / "best.pt", tmp_path / "tiled.onnx")
    assert "images from" in exported.parity_inputs and max(exported.parity.values()) < 1e-4
    paths = sorted((builtin_category / "test").rglob("*.png"))[:3]
    onnx_predictor, torch_predictor = OnnxPredictor(exported.path), Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu")
    images, valid = torch_predictor.load_files(paths)  # the same pixels for both (Pillow resizes slightly differently)
    got, expected = onnx_predictor.predict(images.numpy(), valid), torch_predictor.predict(images, valid)
    assert got.smoothed_map.shape == (3, 96, 128)
    # Untrained weights: ONNX Runtime and PyTorch's NHWC kernels differ by up to ~3e-4 on single tile pixels, and
    # the centre-weighted blend no longer averages four tiles' rounding away; maps to 5e-4, scores to 1e-4.
    np.testing.assert_allclose(got.smoothed_map, expected.smoothed_map, atol=5e-4, rtol=0)
    np.testing.assert_allclose(got.score, expected.score, atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="trained on tiles"):
        export_onnx(tmp_path / "best.pt", tmp_path / "dynamic.onnx", dynamic_size=True)


def test_tiled_fit_run_exports_with_its_resize_mode(tiled_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from grdnet.export import export_onnx
    from grdnet.inference import Predictor
    from grdnet.onnx_predictor import OnnxPredictor

    category, result = tiled_run
    onnx_predictor = OnnxPredictor(export_onnx(result.run_dir, tmp_path / "fit.onnx", parity=False).path)
    assert onnx_predictor.image_size == (128, 160) and onnx_predictor.resize == "fit"
    paths = sorted((category / "test").rglob("*.png"))[:3]
    got = onnx_predictor.predict(*onnx_predictor.load_files(paths))
    torch_predictor = Predictor.from_checkpoint(result.run_dir, device="cpu")
    expected = torch_predictor.predict(*torch_predictor.load_files(paths))
    assert np.all(got.smoothed_map[:, :, 128:] == 0) and np.all(got.anomaly_map[:, :, 128:] == 0)
    # tiles that are half zero padding make this tiny 1-epoch model's GroupNorm statistics ill-conditioned:
    # there torch fp32 itself differs from fp64 by ~2e-4, so the comparison allows 1e-3 on the raw map, and that
    # divided by the smallest normal std on the standardized map and its score
    np.testing.assert_allclose(got.anomaly_map, expected.anomaly_map, atol=1e-3, rtol=0)
    standardized = 1e-3 / float(torch_predictor.model.head.normal_std.min())
    np.testing.assert_allclose(got.smoothed_map, expected.smoothed_map, atol=standardized, rtol=0)
    np.testing.assert_allclose(got.score, expected.score, atol=standardized, rtol=0)


def test_crops_stay_on_the_image_when_fit_padding_surrounds_it():
    """Windows start on the image and, where it is large enough, stay inside it (never wholly padding)."""
    valid = torch.zeros(4, 1, 128, 512)
    valid[0, :, :128, :128] = 1  # 128×128 content: the window must lie inside it
    valid[1, :, :40, :300] = 1  # shorter than the tile: the window starts at the top, stays inside the width
    valid[2:, :, :, :] = 1
    image = _coordinates(4, 128, 512)
    for seed in range(30):
        crops = random_tile_crops({"image": image, "valid": valid}, (64, 64), torch.Generator().manual_seed(seed),
                                  valid=valid)
        assert crops["valid"][0].min() == 1
        assert crops["valid"][1, :, :40].min() == 1 and crops["valid"][1].max() == 1


def test_fit_tiled_training_on_mostly_padding_stays_finite(tmp_path):
    """Regression: 128-px images fitted into 128×512 (three quarters padding) with 64-px tiles used to give
    all-padding tiles whose zero-variance GroupNorms made the gradients NaN within two steps."""
    from grdnet.builtin_dataset import make_builtin_dataset
    from grdnet.training import Trainer

    from support import tiny_config

    category = make_builtin_dataset(tmp_path / "data", seed=0, size=128, n_train=24, n_test_good=2,
                                    n_test_defect_per_type=1)
    cfg = tiny_config(category, tmp_path / "run", epochs=2, lr=1e-4).updated(
        {"data.image_size": [128, 512], "data.resize": "fit", "data.tile_size": [64, 64], "data.val_fraction": 0.2,
         "data.roi": None, "data.test_roi": None, "synthesis.texture": "self"}
    )
    result = Trainer(cfg, show_progress=False).fit()
    assert result.epochs_done == 2
    assert all(np.isfinite(record["loss_seg"]) and np.isfinite(record["loss_g"]) for record in result.history)


def test_stitching_favours_tile_centres_over_tile_borders():
    """A network's border artefact (here: 1 on each tile's 2-pixel rim, 0 inside) stays out of pixels that another
    tile covers centrally; a plain average would keep a quarter to a half of it as a grid."""
    from grdnet.tiling import TiledModel, tile_window

    class RimOnly(torch.nn.Module):
        map_scored = True

        def forward(self, x):
            rim = torch.ones(x.shape[0], 1, *x.shape[-2:])
            rim[..., 2:-2, 2:-2] = 0.0
            return {"anomaly_map": rim}

    tiled = TiledModel(RimOnly(), (128, 128), (64, 64), (32, 32))
    stitched = tiled(torch.rand(1, 1, 128, 128))["anomaly_map"][0, 0]
    interior = stitched[8:-8, 8:-8]  # pixels that some tile covers away from its rim
    assert interior.max() < 0.1, interior.max()
    window = tile_window((64, 64))
    assert window.shape == (1, 1, 64, 64) and window.min() > 0 and window[0, 0, 31:33, 31:33].min() > 0.99
