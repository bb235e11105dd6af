"""Training with defect images mixed into the training set (data.contamination): the split in run.json."""

import csv
import json
import subprocess
import sys

import pytest

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import RunConfig
from grdnet.data import index_dataset
from grdnet.training import Trainer

FRACTION = 0.05


@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    """A factory of tiny GRD-Net configs on a smaller built-in dataset (48 normal training images)."""
    from support import tiny_config

    category = make_builtin_dataset(tmp_path_factory.mktemp("small"), n_train=48, n_test_good=8,
                                    n_test_defect_per_type=3)
    return lambda output: tiny_config(category, output, epochs=1)


def check_split(run_dir, cfg: RunConfig) -> list[str]:
    """Assert the contaminated split recorded in run.json is consistent; returns the contamination paths."""
    info = json.loads((run_dir / "run.json").read_text())
    split = info["split"]
    train, validation, moved = split["train"], split["validation"], split["contamination"]
    clean = index_dataset(cfg.data.model_copy(update={"contamination": 0.0}), check_images=False)
    contaminated = index_dataset(cfg.data, check_images=False)
    test = {str(s.image) for s in contaminated.test}
    defects = {str(s.image) for s in clean.test if s.label == 1}

    assert len(moved) == round(FRACTION * len(clean.train)) > 0
    assert set(moved) <= defects and set(moved) <= set(train)
    assert test.isdisjoint(train) and test.isdisjoint(validation) and test.isdisjoint(moved)
    assert len(train) == len(set(train)) == len(clean.train) + len(moved)
    assert sorted(set(train) - set(moved)) == sorted(str(s.image) for s in clean.train)
    assert validation == [str(s.image) for s in clean.validation]
    assert len(test) + len(moved) == len(clean.test)
    counts = info["data"]
    assert counts["contamination"]["total"] == counts["train"]["defect"] == len(moved)
    assert counts["train"]["total"] == len(train) and counts["test"]["total"] == len(test)
    return moved


def test_grdnet_trains_on_the_contaminated_split(small_config, tmp_path):
    cfg = small_config(tmp_path / "contaminated").updated({"data.contamination": FRACTION})
    trainer = Trainer(cfg, show_progress=False)
    result = trainer.fit()
    check_split(result.run_dir, cfg)
    assert len(trainer.train_data["image"]) == len(trainer.index.train)


def test_ganomaly_with_contamination_through_the_cli(small_config, tmp_path):
    base = small_config(tmp_path / "unused").to_dict()
    cfg = RunConfig.for_model(
        "ganomaly", {**base, "model": {"base_width": 8, "max_width": 16, "latent_dim": 16}, "loss": {}, "synthesis": {}}
    )
    cfg.to_yaml(tmp_path / "ganomaly.yaml")
    run = tmp_path / "ganomaly-run"

    def grdnet(*args):
        done = subprocess.run([sys.executable, "-m", "grdnet", *map(str, args)], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    grdnet("train", "--config", tmp_path / "ganomaly.yaml", "--contamination", FRACTION, "--output", run, "--quiet")
    stored = RunConfig.from_yaml(run / "config.yaml")
    assert stored.model.name == "ganomaly" and stored.data.contamination == FRACTION
    moved = check_split(run, stored)

    done = grdnet("test", run / "best.pt", "--device", "cpu")
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    for key in ("image_AUROC", "image_AUROC_d1", "image_AUROC_d2", "image_AUROC_d3"):
        assert 0.0 <= metrics[key] <= 1.0, key
        assert key in done.stdout
    tested = {row["path"] for row in csv.DictReader((run / "test" / "scores.csv").open())}
    assert tested and tested.isdisjoint(moved)
