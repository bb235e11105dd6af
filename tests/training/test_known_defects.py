"""`data.known_defects` end to end: GRD-Net's segmenter gets them as real positives, kdgan's discriminator as a
γ-weighted second fake, and test images are refused as known defects (one-line CLI error)."""

import copy
import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
import torch

from grdnet import losses
from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import RunConfig
from grdnet.data import index_dataset, load_tensors
from grdnet.errors import DataError
from grdnet.models import build_model
from grdnet.seeds import torch_generator
from grdnet.training import Trainer
from grdnet.training.recipes import StepContext, build_recipe

BATCH = 8
KNOWN = 4


@pytest.fixture(scope="module")
def known_dir(tmp_path_factory):
    """A known-defects folder: 4 defect images of another built-in data set, masks as `<stem>_mask.png` beside."""
    other = make_builtin_dataset(tmp_path_factory.mktemp("other"), seed=1, n_train=1, n_test_good=1,
                                 n_test_defect_per_type=2)
    folder = tmp_path_factory.mktemp("known")
    defects = sorted(p for p in (other / "test").glob("*/*.png") if p.parent.name not in ("good", "contamination"))
    for image in defects[:KNOWN]:
        name = f"{image.parent.name}_{image.stem}"
        shutil.copy(image, folder / f"{name}.png")
        shutil.copy(other / "ground_truth" / image.parent.name / f"{image.stem}_mask.png", folder / f"{name}_mask.png")
    return folder


def with_known(cfg: RunConfig, known_dir, name: str = "grdnet") -> RunConfig:
    """`cfg` as method `name` with the known-defects folder and no training ROI (known ROIs = whole image)."""
    data = {**cfg.to_dict()["data"], "known_defects": str(known_dir), "roi": None}
    base = {**cfg.to_dict(), "data": data}
    if name != "grdnet":
        base.update(model={"base_width": 8, "max_width": 16, "latent_dim": 16, "search_steps": 2},
                    loss={}, synthesis={})
    return RunConfig.for_model(name, base)


def small_index(cfg: RunConfig):
    index = index_dataset(cfg.data)
    return dataclasses.replace(index, train=index.train[: 2 * BATCH], validation=index.validation[:4])


def test_grdnet_segmenter_gets_the_known_defects_as_positives(make_config, known_dir, monkeypatch):
    cfg = with_known(make_config(epochs=1, batch_size=BATCH), known_dir)
    index = small_index(cfg)
    assert len(index.known_defects) == KNOWN and all(s.mask is not None for s in index.known_defects)
    known_masks = load_tensors(index.known_defects, cfg.data, ("image", "mask", "roi"))["mask"]
    calls = []
    original = losses.segmentation_loss

    def spy(anomaly_map, target_mask, *args, **kwargs):
        calls.append(target_mask.detach().clone())
        return original(anomaly_map, target_mask, *args, **kwargs)

    monkeypatch.setattr(losses, "segmentation_loss", spy)
    result = Trainer(cfg, show_progress=False, index=index).fit()
    assert len(calls) == 2
    for masks in calls:
        assert masks.shape[0] == BATCH + KNOWN
        extra = masks[BATCH:]
        assert all(m.sum() > 0 for m in extra)
        assert all(any(torch.equal(m, k) for k in known_masks) for m in extra)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert len(run["split"]["known_defects"]) == KNOWN


def test_kdgan_discriminator_penalises_known_defects_with_gamma(make_config, known_dir):
    cfg = with_known(make_config(batch_size=BATCH), known_dir, "kdgan")
    index = small_index(cfg)
    train = load_tensors(index.train[:BATCH], cfg.data)
    known = load_tensors(index.known_defects, cfg.data, ("image", "mask", "roi"))
    batch = {**train, **{f"known_{k}": v for k, v in known.items()}}
    torch.manual_seed(0)
    model = build_model(cfg)
    d_loss = {}
    for gamma in (0.0, 1.0, 2.0):
        recipe = build_recipe(copy.deepcopy(model), cfg.updated({"loss.known_defect_gamma": gamma}),
                              StepContext(torch.device("cpu")))
        d_loss[gamma] = float(recipe.training_step(batch, torch_generator(0, "synthesis", 7))["d"])
    assert d_loss[1.0] > d_loss[0.0] + 1e-3
    assert d_loss[2.0] - d_loss[0.0] == pytest.approx(2 * (d_loss[1.0] - d_loss[0.0]), rel=1e-4)


def test_kdgan_trainer_feeds_known_defects_to_the_discriminator(make_config, known_dir, monkeypatch):
    cfg = with_known(make_config(epochs=1, batch_size=BATCH), known_dir, "kdgan")
    seen = []
    original = losses.discriminator_loss

    def spy(real_logits, fake_logits, extra_fake_logits=None, gamma=1.0):
        seen.append((None if extra_fake_logits is None else len(extra_fake_logits), gamma))
        return original(real_logits, fake_logits, extra_fake_logits, gamma)

    monkeypatch.setattr(losses, "discriminator_loss", spy)
    Trainer(cfg, show_progress=False, index=small_index(cfg)).fit()
    assert seen == [(KNOWN, cfg.loss.known_defect_gamma)] * 2


def test_test_images_are_refused_as_known_defects(make_config, builtin_category):
    test_defects = builtin_category / "test" / "crack"
    cfg = make_config().updated({"data.known_defects": str(test_defects)})
    with pytest.raises(DataError, match="used for both training and testing"):
        index_dataset(cfg.data)
    done = subprocess.run(
        [sys.executable, "-m", "grdnet", "train", "--data-root", builtin_category.parent, "--category",
         builtin_category.name, "--image-size", "64", "--epochs", "1", "--known-defects", test_defects, "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "used for both training and testing" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
