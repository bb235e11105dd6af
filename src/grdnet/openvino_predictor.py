"""`OpenVinoPredictor`: runs an OpenVINO IR written by `grdnet export --format openvino` (model.xml + model.bin)
with the OpenVINO runtime on the CPU — NumPy, Pillow, no torch.

Everything but the runtime call is `grdnet.onnx_predictor.ExportedPredictor`: the same metadata checks, pixel
path, outputs, threshold and decision as `OnnxPredictor`. The metadata is the ONNX export's, kept in the IR's
rt_info under `grdnet` (in the .xml: `<rt_info><grdnet><threshold value="..."/>...`; OpenVINO's ONNX reader also
copies it under `framework`, which is not read). Inference runs in fp32
(`INFERENCE_PRECISION_HINT f32`: OpenVINO would otherwise pick bf16 on CPUs that have it, ~1e-2 off PyTorch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grdnet.errors import CheckpointError
from grdnet.extras import require
from grdnet.onnx_predictor import ExportedPredictor

RT_INFO_SECTION = "grdnet"
"""rt_info section holding the export's metadata, one string per key (the ONNX file's `grdnet.*` keys)."""


class OpenVinoPredictor(ExportedPredictor):
    """Loads an exported OpenVINO IR and its metadata; predicts on arrays, files or folders.

    `threads` = 0 lets OpenVINO choose (all cores); `device` is an OpenVINO device name ("CPU", "GPU", "AUTO")."""

    def __init__(self, path: Path | str, threads: int = 0, device: str = "CPU") -> None:
        ov = require("openvino")

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: OpenVINO IR not found; write one with grdnet export CHECKPOINT --format openvino")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise CheckpointError(f"{path}: cannot be loaded by OpenVINO ({str(error).strip().splitlines()[0]}); re-export it") from None
        section = model.get_rt_info([RT_INFO_SECTION]).astype(dict) if model.has_rt_info([RT_INFO_SECTION]) else {}
        meta = {key: value.astype(str) for key, value in section.items()}
        ports = {name: port for port in model.inputs for name in port.get_names()}
        shape = [dim.get_length() if dim.is_static else "dynamic" for dim in ports["image"].get_partial_shape()] if "image" in ports else []
        self._read_metadata(path, meta, shape, [port.get_any_name() for port in model.outputs])
        config = {"INFERENCE_PRECISION_HINT": "f32", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
        self.compiled = core.compile_model(model, device, config)
        self._output_ports = {name: self.compiled.output(name) for name in self.outputs}

    def run(self, batch: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
        result = self.compiled({"image": batch, "region": region})
        return {name: result[port] for name, port in self._output_ports.items()}
