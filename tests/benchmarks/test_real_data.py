"""benchmarks/real_data.py: the development/evaluation split rule and the quick mode end to end."""

import json
from pathlib import Path

import pytest

from grdnet.data import Sample

from support import load_benchmark


def _samples():
    kinds = {"good": 30, "crack": 9, "pit": 4}
    return [Sample(Path(f"/d/test/{kind}/{i:03d}.png"), int(kind != "good"), kind) for kind, n in kinds.items()
            for i in range(n)]


def test_development_split_takes_a_third_of_each_type_by_seeded_hash(monkeypatch):
    real_data = load_benchmark("real_data", monkeypatch)
    samples = _samples()
    dev, ev = real_data.development_split(samples, seed=0)
    count = lambda part, kind: sum(s.defect_type == kind for s in part)  # noqa: E731
    assert (count(dev, "good"), count(dev, "crack"), count(dev, "pit")) == (10, 3, 1)
    assert set(dev).isdisjoint(ev) and len(dev) + len(ev) == len(samples)
    again, _ = real_data.development_split(list(reversed(samples)), seed=0)
    assert set(again) == set(dev)  # independent of listing order
    other, _ = real_data.development_split(samples, seed=1)
    assert set(other) != set(dev)


@pytest.mark.slow
def test_quick_mode_trains_both_methods_in_stages_and_plots(tmp_path, monkeypatch, capsys):
    real_data = load_benchmark("real_data", monkeypatch)
    assert real_data.main(["--quick", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "out")]) == 0
    payload = json.loads((tmp_path / "out" / "real_data_quick.json").read_text())
    runs = payload["runs"]
    assert {r["model"] for r in runs} == {"grdnet", "draem"} and payload["part"] == "evaluation"
    for model in ("grdnet", "draem"):
        stages = [r for r in runs if r["model"] == model]
        assert [r["minutes"] for r in stages] == [0.02, 0.04]
        assert stages[1]["epochs"] > stages[0]["epochs"]  # the second stage resumed the first
        assert all(0.0 <= r["image_AUROC"] <= 1.0 and 0.0 <= r["F1_max"] <= 1.0 for r in stages)
    assert (tmp_path / "out" / "real_data_quick.png").stat().st_size > 1000
    assert "image_AUROC" in capsys.readouterr().out
