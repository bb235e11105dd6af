from pathlib import Path

import pytest

from grdnet.config import RunConfig
from grdnet.errors import ConfigError


def test_defaults_follow_the_spec():
    cfg = RunConfig()
    assert (cfg.loss.w_l1, cfg.loss.w_ssim, cfg.loss.w_adv, cfg.loss.w_con, cfg.loss.w_enc) == (1, 1, 1, 50, 1)
    assert cfg.loss.roi_on == "prediction" and cfg.loss.focal_gamma == 2
    assert cfg.train.lr == 1e-4 and cfg.train.betas == (0.5, 0.999) and cfg.train.plateau_patience == 3
    assert abs(cfg.train.plateau_factor - 0.904837) < 1e-6
    assert cfg.synthesis.probability == 0.5 and cfg.synthesis.beta == (0.1, 1.0) and cfg.synthesis.texture == "random"
    assert cfg.scoring.smoothing_kernel == 21 and cfg.model.bottleneck == "crae"


def test_yaml_round_trip(tmp_path: Path):
    cfg = RunConfig().updated({"train.epochs": 7, "data.image_size": [128, 256], "loss.roi_on": "target"})
    cfg.to_yaml(tmp_path / "c.yaml")
    again = RunConfig.from_yaml(tmp_path / "c.yaml")
    assert again == cfg and again.data.image_size == (128, 256)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("train:\n  epocs: 3\n", "train.epocs"),
        ("data:\n  image_size: [100, 100]\n", "multiples of 32"),
        ("synthesis:\n  beta: [0.8, 0.2]\n", "beta"),
        ("scoring:\n  smoothing_kernel: 20\n", "odd"),
        ("- a\n- b\n", "mapping"),
        ("train: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_file_and_setting(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="train.nope"):
        RunConfig().updated({"train.nope": 1})


def test_only_map_scored_methods_can_be_tiled():
    """The tiling check follows each method's record: GRD-Net (map-scored) tiles, GANomaly does not."""
    tiles = {"data": {"image_size": [128, 128], "tile_size": [64, 64]}}
    assert RunConfig.for_model("grdnet", tiles).data.tile_size == (64, 64)
    with pytest.raises(ConfigError, match="cannot be tiled.*use .*grdnet"):
        RunConfig.for_model("ganomaly", tiles)
