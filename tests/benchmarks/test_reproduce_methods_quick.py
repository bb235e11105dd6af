"""Reproduction scripts of the survey's methods in `--quick` mode (in-process, toy scale): rows and metric ranges."""

import json
import math

import pytest

from support import load_benchmark

pytestmark = pytest.mark.slow  # every test here runs a benchmark script end to end

CASES = {
    # script: (column that varies, its values, keys every row has, keys no row may have)
    "reproduce_capsnet": ("known_defects", [2, 5, 10], {"image_AUROC", "F1", "accuracy", "train_seconds"},
                          {"pixel_AUROC", "pixel_AUPRO"}),
    "reproduce_piade": ("variant", ["pyramid_perceptual", "pyramid_mse", "single_level_perceptual"],
                        {"image_AUROC", "pixel_AUROC", "pixel_AUPRO", "F1", "accuracy", "train_seconds"}, set()),
}


@pytest.mark.parametrize("name", CASES)
def test_quick_mode_writes_its_table(name, tmp_path, monkeypatch, capsys):
    column, values, present, absent = CASES[name]
    work, out = tmp_path / "work", tmp_path / "out"
    assert load_benchmark(name, monkeypatch).main(["--quick", "--work", str(work), "--out", str(out)]) == 0
    report = json.loads((out / f"{name}_quick.json").read_text())
    assert report["command"] == f"python benchmarks/{name}.py --quick --work {work} --out {out}"
    rows = report["rows"]
    assert [row[column] for row in rows] == values
    for row in rows:
        assert present <= row.keys() and not absent & row.keys()
        for key in present - {"train_seconds"}:
            assert math.isnan(row[key]) or 0.0 <= row[key] <= 1.0, (key, row[key])
    assert f"| {column} |" in (out / f"{name}_quick.md").read_text()
    assert str(out / f"{name}_quick.json") in capsys.readouterr().out
