"""benchmarks/side_by_side.py: the numbered MVTec subset both sides read, the ratio table, and `--quick` end to end."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def side_by_side(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("side_by_side", BENCHMARKS / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("side_by_side", None)


def _write(path: Path, value: int, size=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def test_numbered_subset_copies_seeded_images_with_their_masks(side_by_side, tmp_path):
    source = tmp_path / "src"
    for i in range(5):
        _write(source / "train" / "good" / f"a{i}.jpg", i)
    for kind in ("good", "crack"):
        for i in range(4):
            _write(source / "test" / kind / f"{kind}{i}.png", 100 + i)
            if kind != "good":
                _write(source / "ground_truth" / kind / f"{kind}{i}_mask.png", 200 + i)
    target = side_by_side.numbered_subset(source, tmp_path / "out" / "cat", n_train=3, n_test=5)
    assert sorted(p.name for p in (target / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
    assert len(list((target / "test" / "crack").iterdir())) == 3  # round-robin: crack 3, good 2
    assert len(list((target / "test" / "good").iterdir())) == 2
    for image in (target / "test" / "crack").iterdir():  # each mask is its own image's mask (same index)
        value = int(np.asarray(Image.open(image))[0, 0])
        mask = np.asarray(Image.open(target / "ground_truth" / "crack" / f"{image.stem}_mask.png"))
        assert int(mask[0, 0]) == value + 100


def test_table_rows_average_our_runs_and_divide_by_anomalib(side_by_side):
    figures = dict.fromkeys(side_by_side.FIGURES, 0)
    ours = [{"framework": "grdnet", **figures, "train_images_per_s": rate, "gflops_forward_per_image": 10.0}
            for rate in (2.0, 4.0)]
    theirs = {"framework": "anomalib", **{k: 1.0 for k in figures}, "train_images_per_s": 1.5,
              "gflops_forward_per_image": 20.0}
    rows = side_by_side.table_rows("draem", 128, [ours[0], theirs, ours[1]], None, peak_gflops=100.0)
    train = next(r for r in rows if r["figure"] == "train images per s")
    assert (train["grdnet"], train["anomalib"], train["ratio"], train["grdnet runs"]) == (3.0, 1.5, "2.00×", "2.0 / 4.0")
    assert (train["GFLOP/image grdnet"], train["share of peak grdnet"]) == (30.0, "90.0%")  # 3 × 10 GFLOP × 3 img/s
    assert (train["GFLOP/image anomalib"], train["share of peak anomalib"]) == (60.0, "90.0%")
    failed = side_by_side.table_rows("draem", 128, [ours[0], {"framework": "anomalib", "error": "boom"}], None, 100.0)
    assert all(r["ratio"] == "—" and "boom" in r["anomalib"] for r in failed)


@pytest.mark.slow
def test_quick_runs_our_commands_and_notes_anomalib_skipped(side_by_side, tmp_path):
    out, page = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    page.write_text(f"# before\n{side_by_side.SECTION_START}\nold table\n{side_by_side.SECTION_END}\n# after\n")
    assert side_by_side.main(["--quick", "--models", "ganomaly", "--work", str(tmp_path / "w"), "--out", str(out),
                              "--benchmarks-md", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# before\n") and text.endswith("# after\n") and "old table" not in text
    assert "| ganomaly | 64 | train images per s |" in text and "torch" in text and "load average" in text
    report = json.loads((out / "side_by_side_quick.json").read_text())
    assert "anomalib not run" in report["note"]
    assert [r["figure"] for r in report["rows"]] == ["train images per s", "test images per s", "predict images per s"]
    assert all(r["grdnet"] > 0 and r["anomalib"] == "—" and r["GFLOP/image grdnet"] > 0 for r in report["rows"])
    assert all(peak > 0 for peak in report["matmul_peak_gflops"])
    (run,) = report["runs"]
    assert run["n_test"] == run["n_predicted"] == 29 and len(run["epoch_seconds"]) == 2
