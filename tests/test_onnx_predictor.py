import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from grdnet.errors import CheckpointError
from grdnet.predictions_io import Prediction, find_regions, inspection_record, write_predictions

from support import assert_maps_close


@pytest.fixture(scope="module")
def onnx_file(builtin_category, tmp_path_factory):
    """An untrained tiny model's checkpoint (threshold 0.5), exported; training is not needed here."""
    from grdnet.checkpoint import save_checkpoint
    from grdnet.export import export_onnx
    from grdnet.models import build_model

    from support import tiny_config

    folder = tmp_path_factory.mktemp("onnx")
    cfg = tiny_config(builtin_category, folder)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "threshold": 0.5}, folder / "best.pt")
    return export_onnx(folder / "best.pt", parity=False).path


def test_runs_without_torch(onnx_file, builtin_category, tmp_path):
    code = textwrap.dedent(f"""
        import sys, json
        from grdnet.onnx_predictor import OnnxPredictor
        predictor = OnnxPredictor({str(onnx_file)!r})
        csv_path = predictor.predict_folder({str(builtin_category / "test")!r}, {str(tmp_path / "out")!r}, batch_size=5, json_output=True)
        assert 'torch' not in sys.modules, 'torch was imported'
        print(len(json.load(open({str(tmp_path / "out" / "predictions.json")!r}))))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    count = len(list((builtin_category / "test").rglob("*.png")))
    assert int(run.stdout.strip()) == count
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert len(rows) == count and {r["threshold"] for r in rows} == {"0.500000"}
    assert len(list((tmp_path / "out" / "overlays").glob("*.png"))) == count


def test_files_match_torch_predictor_closely(onnx_file, builtin_category, tmp_path):
    from grdnet.inference import Predictor
    from grdnet.onnx_predictor import OnnxPredictor

    paths = sorted((builtin_category / "test").rglob("*.png"))[:4]
    onnx_predictor = OnnxPredictor(onnx_file)
    torch_predictor = Predictor.from_checkpoint(onnx_file.with_suffix(".pt"), device="cpu")
    got = onnx_predictor.predict(*onnx_predictor.load_files(paths))
    expected = torch_predictor.predict(*torch_predictor.load_files(paths))
    # the built-in images are already at model size: no resize difference, so float32 precision
    assert_maps_close(got.score, expected.score)
    assert_maps_close(got.smoothed_map, expected.smoothed_map)


def test_accepts_arrays_and_resizes(onnx_file):
    from grdnet.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(onnx_file)
    gray8 = np.random.default_rng(0).integers(0, 255, (80, 100), dtype=np.uint8)
    rgba = np.random.default_rng(1).random((50, 70, 4)).astype(np.float32)
    batch, valid = predictor.prepare(gray8)
    assert batch.shape == (1, 3, 64, 64) and valid.shape == (1, 64, 64) and valid.all()
    pred = predictor.predict([rgba, rgba])
    assert pred.smoothed_map.shape == (2, 64, 64) and pred.score.shape == (2,)
    np.testing.assert_allclose(pred.score[0], pred.score[1])


def test_fit_export_pads_and_zeroes_maps_like_torch(builtin_category, tmp_path):
    from grdnet.checkpoint import save_checkpoint
    from grdnet.export import export_onnx
    from grdnet.inference import Predictor
    from grdnet.models import build_model
    from grdnet.onnx_predictor import OnnxPredictor

    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path).updated({"data.resize": "fit"})
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "threshold": 0.5}, tmp_path / "best.pt")
    onnx_predictor = OnnxPredictor(export_onnx(tmp_path / "best.pt", parity=False).path)
    assert onnx_predictor.resize == "fit" and onnx_predictor.metadata["resize"] == "fit"
    tall = np.random.default_rng(0).integers(0, 255, (64, 32), dtype=np.uint8)  # fits as columns 0–31 of 64×64
    batch, valid = onnx_predictor.prepare(tall)
    assert np.array_equal(batch[:, :, :, 32:], batch[:, :, :, :32][..., ::-1])  # padding mirrors the image
    assert valid[0, :, :32].all() and not valid[0, :, 32:].any()
    got = onnx_predictor.predict(tall)
    assert np.all(got.anomaly_map[:, :, 32:] == 0) and np.all(got.smoothed_map[:, :, 32:] == 0)
    expected = Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu").predict(tall)
    assert_maps_close(got.smoothed_map, expected.smoothed_map)
    assert_maps_close(got.score, expected.score)


def test_foreign_file_is_a_clear_error(tmp_path):
    from grdnet.onnx_predictor import OnnxPredictor

    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        OnnxPredictor(tmp_path / "bad.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPredictor(tmp_path / "missing.onnx")


def _tampered(onnx_file, tmp_path, **values):
    """A copy of `onnx_file` with `grdnet.<key>` metadata replaced by `values`."""
    import onnx

    proto = onnx.load(str(onnx_file))
    for entry in proto.metadata_props:
        key = entry.key[len("grdnet."):]
        if key in values:
            entry.value = values[key]
    onnx.save(proto, str(tmp_path / "tampered.onnx"))
    return tmp_path / "tampered.onnx"


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"image_size": "[99999, 99999]"}, "grdnet.image_size [99999, 99999] differs from the stored config's [64, 64]"),
        ({"config": "{not json"}, "grdnet.config is not valid JSON"),
        ({"config": "[1, 2]"}, "grdnet.config is not a valid run configuration"),
        ({"channels": "1"}, "grdnet.channels 1 differs"),
        ({"threshold": "high"}, "is missing or malformed"),
    ],
)
def test_tampered_metadata_is_refused_before_any_allocation(onnx_file, tmp_path, values, fragment):
    from grdnet.onnx_predictor import OnnxPredictor

    with pytest.raises(CheckpointError, match="re-export the file") as caught:
        OnnxPredictor(_tampered(onnx_file, tmp_path, **values))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_tampered_config_and_size_together_meet_the_graph_shape(onnx_file, tmp_path):
    """Changing image_size in both places is still caught: by the config's own size limits and the graph's input."""
    from grdnet.onnx_predictor import OnnxPredictor

    config = json.loads(OnnxPredictor(onnx_file).metadata["config"])
    config["data"]["image_size"] = [99999, 99999]
    with pytest.raises(CheckpointError, match="not a valid run configuration"):
        OnnxPredictor(_tampered(onnx_file, tmp_path, image_size="[99999, 99999]", config=json.dumps(config)))
    config["data"]["image_size"] = [128, 128]
    with pytest.raises(CheckpointError, match="graph's input is"):
        OnnxPredictor(_tampered(onnx_file, tmp_path, image_size="[128, 128]", config=json.dumps(config)))


def _two_blobs() -> np.ndarray:
    scores = np.zeros((32, 32), dtype=np.float32)
    scores[2:6, 3:10] = 0.9
    scores[4, 5] = 0.95
    scores[20:30, 25:28] = 0.7
    return scores


def test_inspection_record_regions_and_roi():
    record = inspection_record("a.png", 0.95, 0.5, _two_blobs())
    assert record == {"path": "a.png", "score": 0.95, "decision": "defect", "threshold": 0.5, "regions": [
        {"bbox": [3, 2, 9, 5], "area": 28, "peak": pytest.approx(0.95)},
        {"bbox": [25, 20, 27, 29], "area": 30, "peak": pytest.approx(0.7)},
    ]}
    roi = np.zeros((32, 32), dtype=np.float32)
    roi[15:, :] = 1
    assert [r["bbox"] for r in inspection_record("a.png", 0.95, 0.5, _two_blobs(), roi)["regions"]] == [[25, 20, 27, 29]]
    unknown = inspection_record("a.png", 0.95, float("nan"), _two_blobs())
    assert unknown["decision"] == "ok" and unknown["threshold"] is None and unknown["regions"] == []
    assert find_regions(_two_blobs(), 0.99) == []


def test_json_output_on_hand_made_maps(tmp_path):
    maps = np.stack([_two_blobs(), np.zeros((32, 32), dtype=np.float32)])
    pred = Prediction(anomaly_map=maps, smoothed_map=maps, score=np.array([0.95, 0.0]), decision=np.array([True, False]))
    folder = tmp_path / "images"
    folder.mkdir()
    paths = [folder / "defect.png", folder / "good.png"]
    for path in paths:
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(path)
    write_predictions([(paths, np.zeros((2, 1, 32, 32)), pred)], folder, tmp_path / "out", 0.5, json_output=True)
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [(r["decision"], len(r["regions"])) for r in records] == [("defect", 2), ("ok", 0)]
    assert records[0]["regions"][0] == {"bbox": [3, 2, 9, 5], "area": 28, "peak": pytest.approx(0.95)}
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert json.loads(rows[0]["regions"]) == records[0]["regions"] and rows[1]["decision"] == "ok"
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == ["defect.png", "good.png"]


def test_prepare_gives_the_pixels_training_reads(onnx_file, tmp_path):
    """Arrays of another size and channel count become exactly what `read_image` gives for the same file."""
    from grdnet.data import read_image
    from grdnet.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(onnx_file)
    for name, array in (("rgb", np.random.default_rng(0).integers(0, 256, (80, 100, 3), np.uint8)),
                        ("gray", np.random.default_rng(1).integers(0, 256, (50, 70), np.uint8))):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        batch, _ = predictor.prepare(array)
        np.testing.assert_allclose(batch[0], read_image(tmp_path / f"{name}.png", 3, (64, 64)).numpy(), atol=1e-6)
