"""`grdnet export --format openvino` and `OpenVinoPredictor`: parity with PyTorch, metadata, CLI, torch-free use."""

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("openvino")

from grdnet.errors import CheckpointError, ConfigError  # noqa: E402

from support import assert_maps_close  # noqa: E402


def _untrained_checkpoint(folder, cfg):
    import torch

    from grdnet.checkpoint import save_checkpoint
    from grdnet.models import build_model

    torch.manual_seed(0)  # the parity margin depends on the weights: the same ones whatever ran before
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "threshold": 0.5}, folder / "best.pt")
    return folder / "best.pt"


@pytest.fixture(scope="module")
def exported(builtin_category, tmp_path_factory):
    """An untrained tiny model's checkpoint (threshold 0.5) exported to OpenVINO IR, with the parity check."""
    from grdnet.export import export_openvino

    from support import tiny_config

    folder = tmp_path_factory.mktemp("openvino")
    return export_openvino(_untrained_checkpoint(folder, tiny_config(builtin_category, folder)), folder / "model.xml")


def test_export_writes_the_ir_and_reports_parity_on_real_images(exported):
    from grdnet.export import describe

    assert exported.path.is_file() and exported.path.with_suffix(".bin").is_file()
    assert not list(exported.path.parent.glob("*.onnx"))  # the intermediate ONNX graph is not left behind
    assert "images from" in exported.parity_inputs
    assert set(exported.parity) == {"anomaly_map", "smoothed_map", "score"}
    assert max(exported.parity.values()) < 1e-4 and "(ok)" in describe(exported)


def test_weights_are_kept_in_fp32(exported):
    """`openvino.save_model` halves weights to fp16 unless told not to; fp16 weights would miss the 1e-4 parity."""
    import openvino as ov

    model = ov.Core().read_model(str(exported.path))
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    assert constants and not any(op.get_output_element_type(0) == ov.Type.f16 for op in constants)


def test_metadata_is_the_onnx_exports(exported, tmp_path):
    """The IR carries exactly the metadata an ONNX export of the same checkpoint carries."""
    import onnx

    from grdnet.checkpoint import sha256_file
    from grdnet.export import export_onnx
    from grdnet.openvino_predictor import OpenVinoPredictor

    checkpoint = exported.path.parent / "best.pt"
    onnx_file = export_onnx(checkpoint, tmp_path / "model.onnx", parity=False).path
    onnx_meta = {p.key[len("grdnet."):]: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    predictor = OpenVinoPredictor(exported.path)
    assert predictor.metadata == onnx_meta
    assert predictor.metadata["checkpoint_sha256"] == sha256_file(checkpoint)
    assert predictor.threshold == 0.5 and predictor.image_size == (64, 64) and predictor.channels == 3
    assert predictor.outputs == ["anomaly_map", "smoothed_map", "score"]


@pytest.mark.parametrize("batch", [1, 3])
def test_files_match_torch_predictor(exported, builtin_category, batch):
    from grdnet.inference import Predictor
    from grdnet.openvino_predictor import OpenVinoPredictor

    paths = sorted((builtin_category / "test").rglob("*.png"))[:batch]
    predictor = OpenVinoPredictor(exported.path, threads=2)
    torch_predictor = Predictor.from_checkpoint(exported.path.parent / "best.pt", device="cpu")
    got = predictor.predict(*predictor.load_files(paths))
    expected = torch_predictor.predict(*torch_predictor.load_files(paths))
    # untrained weights: single tile pixels differ by up to ~3e-4 between runtimes, and the centre-weighted tile
    # blend no longer averages that away; maps to 5e-4, scores to 1e-4
    for name, tolerance in (("anomaly_map", 5e-4), ("smoothed_map", 5e-4), ("score", 1e-4)):
        assert getattr(got, name).shape == getattr(expected, name).shape
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), atol=tolerance, rtol=0)
    np.testing.assert_array_equal(got.decision, got.score >= predictor.threshold)


def test_agrees_with_onnxruntime_on_arrays(exported, tmp_path):
    """Both exported predictors share everything but the runtime call: same pixels, same outputs."""
    pytest.importorskip("onnxruntime")
    from grdnet.export import export_onnx
    from grdnet.onnx_predictor import OnnxPredictor
    from grdnet.openvino_predictor import OpenVinoPredictor

    onnx_predictor = OnnxPredictor(export_onnx(exported.path.parent / "best.pt", tmp_path / "m.onnx", parity=False).path)
    predictor = OpenVinoPredictor(exported.path)
    gray8 = np.random.default_rng(0).integers(0, 255, (80, 100), dtype=np.uint8)
    np.testing.assert_array_equal(predictor.prepare(gray8)[0], onnx_predictor.prepare(gray8)[0])
    roi = np.zeros((64, 64), np.float32)
    roi[8:40, 8:40] = 1
    got, expected = predictor.predict([gray8, gray8], roi=roi), onnx_predictor.predict([gray8, gray8], roi=roi)
    assert np.all(got.smoothed_map[:, roi == 0] == 0)
    assert_maps_close(got.smoothed_map, expected.smoothed_map)
    assert_maps_close(got.score, expected.score)


def test_runs_without_torch(exported, builtin_category, tmp_path):
    code = textwrap.dedent(f"""
        import sys, json
        from grdnet.openvino_predictor import OpenVinoPredictor
        predictor = OpenVinoPredictor({str(exported.path)!r})
        csv_path = predictor.predict_folder({str(builtin_category / "test")!r}, {str(tmp_path / "out")!r}, batch_size=5, json_output=True)
        assert 'torch' not in sys.modules, 'torch was imported'
        print(len(json.load(open({str(tmp_path / "out" / "predictions.json")!r}))))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    count = len(list((builtin_category / "test").rglob("*.png")))
    assert int(run.stdout.strip()) == count
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    assert len(rows) == count and {r["threshold"] for r in rows} == {"0.500000"}


def test_tiled_export_matches_torch(builtin_category, tmp_path):
    """A run trained on tiles exports with its tiling in the graph (96×128 images, 64-px tiles)."""
    from grdnet.export import export_openvino
    from grdnet.inference import Predictor
    from grdnet.openvino_predictor import OpenVinoPredictor

    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path).updated({"data.image_size": [96, 128], "data.tile_size": [64, 64]})
    exported = export_openvino(_untrained_checkpoint(tmp_path, cfg))
    assert exported.path == tmp_path / "best.xml" and max(exported.parity.values()) < 1e-4
    paths = sorted((builtin_category / "test").rglob("*.png"))[:3]
    predictor, torch_predictor = OpenVinoPredictor(exported.path), Predictor.from_checkpoint(tmp_path / "best.pt", device="cpu")
    images, valid = torch_predictor.load_files(paths)  # the same pixels for both
    got, expected = predictor.predict(images.numpy(), valid), torch_predictor.predict(images, valid)
    assert got.smoothed_map.shape == (3, 96, 128)
    # as for ONNX Runtime (tests/test_tiling.py): untrained weights, single tile pixels differ by up to ~3e-4
    np.testing.assert_allclose(got.smoothed_map, expected.smoothed_map, atol=5e-4, rtol=0)
    assert_maps_close(got.score, expected.score)


def test_dynamic_size_runs_at_another_size(builtin_category, tmp_path):
    import torch

    from grdnet.export import export_openvino
    from grdnet.inference import Predictor
    from grdnet.openvino_predictor import OpenVinoPredictor

    from support import tiny_config

    checkpoint = _untrained_checkpoint(tmp_path, tiny_config(builtin_category, tmp_path))
    predictor = OpenVinoPredictor(export_openvino(checkpoint, dynamic_size=True, parity=False).path)
    images = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = Predictor.from_checkpoint(checkpoint, device="cpu").model(images)
    got = predictor.run(images.numpy(), np.ones((2, 1, 96, 128), np.float32))
    assert_maps_close(got["smoothed_map"], expected["smoothed_map"].numpy())
    assert_maps_close(got["score"], expected["score"].numpy())


def test_cli_export_and_predict_by_suffix(exported, builtin_category, tmp_path):
    out = tmp_path / "cli.xml"
    run = subprocess.run([sys.executable, "-m", "grdnet", "export", str(exported.path.parent / "best.pt"),
                          "--format", "openvino", "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"exported {out}" in run.stdout and "parity vs PyTorch" in run.stdout and "(ok)" in run.stdout
    folder = builtin_category / "test" / "good"
    run = subprocess.run([sys.executable, "-m", "grdnet", "predict", str(out), str(folder), "--output", str(tmp_path / "pred"),
                          "--json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    records = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(rows) == len(records) == len(list(folder.glob("*.png")))
    assert {r["threshold"] for r in rows} == {"0.500000"}
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == len(rows)


def test_output_must_be_an_xml_file(exported, tmp_path):
    from grdnet.export import export_openvino

    with pytest.raises(ConfigError, match=r"ends in \.xml"):
        export_openvino(exported.path.parent / "best.pt", tmp_path / "model.onnx")


def test_foreign_and_tampered_files_are_clear_errors(exported, tmp_path):
    from grdnet.openvino_predictor import OpenVinoPredictor

    (tmp_path / "bad.xml").write_text("<net>not an IR</net>")
    with pytest.raises(CheckpointError, match="cannot be loaded by OpenVINO"):
        OpenVinoPredictor(tmp_path / "bad.xml")
    with pytest.raises(CheckpointError, match="not found"):
        OpenVinoPredictor(tmp_path / "missing.xml")
    ir = exported.path.read_text()
    weights = exported.path.with_suffix(".bin").read_bytes()
    for name, text, fragment in (
        ("old", ir.replace('<format value="grdnet-onnx-v2"', '<format value="grdnet-onnx-v1"'), "another grdnet version"),
        ("plain", ir.replace("<grdnet>", "<other>").replace("</grdnet>", "</other>"), "not a grdnet export"),
        ("size", ir.replace('<image_size value="[64, 64]"', '<image_size value="[99999, 99999]"'), "grdnet.image_size"),
    ):
        assert text != ir, name
        (tmp_path / f"{name}.xml").write_text(text)
        (tmp_path / f"{name}.bin").write_bytes(weights)
        with pytest.raises(CheckpointError, match=fragment):
            OpenVinoPredictor(tmp_path / f"{name}.xml")
