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


def test_model_section_is_the_method_options_with_its_defaults():
    """`model: {name: draem, base_width: 16}` is DRAEM's options: its own defaults for the rest, unknown keys
    (another method's, or the removed `extra`) are errors naming the key and the method."""
    cfg = RunConfig.from_dict({"model": {"name": "draem", "base_width": 16}})
    assert (cfg.model.base_width, cfg.model.segmenter_levels, cfg.model.norm) == (16, 5, "group")
    assert RunConfig.from_dict({"model": {"stages": 4}}).model.name == "grdnet"  # no name: GRD-Net
    with pytest.raises(ConfigError, match="model.latent_channels: unknown setting for method 'draem'"):
        RunConfig.from_dict({"model": {"name": "draem", "latent_channels": 8}})
    with pytest.raises(ConfigError, match="model.extra: no longer used; write its keys in `model`"):
        RunConfig.from_dict({"model": {"name": "vtadl", "extra": {"depth": 2}}})
    with pytest.raises(ConfigError, match="model.name: unknown method 'nope'; choose one of .*grdnet"):
        RunConfig.from_dict({"model": {"name": "nope"}})
    with pytest.raises(ConfigError, match="unknown setting 'model.stages' for method 'piade'"):
        RunConfig.for_model("piade").updated({"model.stages": 4})


def test_switching_the_method_starts_from_its_option_defaults():
    switched = RunConfig().updated({"model.name": "draem", "model.base_width": 32})
    assert switched.model.name == "draem" and switched.model.base_width == 32 and switched.model.segmenter_levels == 5


def test_stored_configs_from_before_typed_options_still_load():
    """A checkpoint's config written when `model` held every method's keys and a `model.extra` dict."""
    old = RunConfig.for_model("vtadl").to_dict()
    old["model"] = {"name": "vtadl", "base_width": 64, "max_width": 512, "bottleneck": "crae", "latent_channels": 32,
                    "latent_dim": 2048, "upsample": "transpose", "stages": 5, "segmenter_width": 64,
                    "segmenter_levels": 4, "segmenter_output": "sigmoid", "extra": {"depth": 2, "heads": 4}}
    cfg = RunConfig.from_stored(old)
    assert (cfg.model.base_width, cfg.model.depth, cfg.model.heads, cfg.model.patch_size) == (64, 2, 4, 16)
    with pytest.raises(ConfigError, match="model.extra"):
        RunConfig.from_dict(old)  # only stored configs are migrated


def test_model_flag_over_a_config_with_another_methods_key_names_it(tmp_path: Path):
    path = tmp_path / "grdnet.yaml"
    path.write_text("model:\n  name: grdnet\n  latent_channels: 8\n")
    with pytest.raises(ConfigError, match="model.latent_channels: unknown setting for method 'ganomaly'"):
        RunConfig.from_yaml(path, model="ganomaly")
