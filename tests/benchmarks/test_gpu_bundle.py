"""benchmarks/gpu_bundle.py: the shrunken data copy that travels to the GPU host (wheels need the network)."""

import importlib
import sys

import numpy as np
from PIL import Image

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.config import DataConfig
from grdnet.data import index_dataset

from support import REPO


def load(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("gpu_bundle", None)
    return importlib.import_module("gpu_bundle")


def test_bundle_shrinks_images_keeps_masks_binary_and_layout(tmp_path, monkeypatch):
    module = load(monkeypatch)
    category = make_builtin_dataset(tmp_path / "src", seed=0, size=128, n_train=4, n_test_good=2, n_test_defect_per_type=1)
    textures = tmp_path / "dtd"
    for name in ("banded", "dotted"):
        (textures / name).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((90, 120, 3), 40 * k, np.uint8)).save(textures / name / f"{name}_{k}.jpg")
    out = tmp_path / "bundle"
    assert module.main(["--mtd", str(category), "--dtd", str(textures), "--out", str(out), "--max-side", "64",
                        "--dtd-per-class", "2", "--no-wheels"]) == 0

    copy = out / "data" / "mtd" / category.name
    originals = sorted(p.relative_to(category) for p in category.rglob("*.png"))
    assert sorted(p.relative_to(copy) for p in copy.rglob("*.png")) == originals
    for relative in originals:
        with Image.open(copy / relative) as image:
            assert image.size == (64, 64)
            if relative.parts[0] in ("ground_truth", "roi"):
                assert set(np.unique(np.asarray(image))) <= {0, 255}  # nearest: still binary
    def index(folder):
        return index_dataset(DataConfig(root=folder.parent, category=folder.name, roi=folder / "roi",
                                        test_roi=folder / "roi", val_fraction=0))

    shrunk, source = index(copy), index(category)
    assert (len(shrunk.train), len(shrunk.test)) == (len(source.train), len(source.test))
    assert sorted(p.name for p in (out / "data" / "dtd" / "images" / "banded").iterdir()) == ["banded_0.jpg", "banded_1.jpg"]
    with Image.open(out / "data" / "dtd" / "images" / "dotted" / "dotted_0.jpg") as texture:
        assert texture.size == (256, 256)


def test_bundle_refuses_missing_data(tmp_path, monkeypatch, capsys):
    module = load(monkeypatch)
    try:
        module.main(["--mtd", str(tmp_path / "absent"), "--dtd", str(tmp_path), "--no-wheels"])
    except SystemExit as stop:
        assert stop.code == 2
    assert "absent: not a folder" in capsys.readouterr().err
