"""Export a checkpoint's inference forward (maps, and the `ScoringHead`'s smoothing, region mask and score
inside the graph) to ONNX, or to OpenVINO IR converted from that ONNX graph. The graph takes `image`
(B, C, H, W) in [0, 1] and `region` (B, 1, H, W) in {0, 1}: where the image is inspected (ones, or the ROI; 0 on
"fit" padding).

The file carries its own metadata (keys `grdnet.*`: resolved config, threshold, input size, resize mode,
channels, version, checkpoint SHA-256; in ONNX `metadata_props`, in the IR's rt_info section `grdnet`), so
`grdnet.onnx_predictor.OnnxPredictor` and `grdnet.openvino_predictor.OpenVinoPredictor` need nothing else. A run
trained on tiles is exported with its tiling (`grdnet.tiling.TiledModel`) in the graph.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

import grdnet
from grdnet.checkpoint import checkpoint_file, load_checkpoint, model_from_checkpoint, sha256_file
from grdnet.errors import ConfigError, DataError, GrdnetError
from grdnet.extras import require
from grdnet.methods import get_method

if TYPE_CHECKING:  # torch is imported when exporting, so registering the command stays cheap
    import numpy as np
    import torch
    from torch import nn

    from grdnet.config import RunConfig

OUTPUTS = ("anomaly_map", "smoothed_map", "score")
DEFAULT_OPSET = 17
OPSETS = (11, 23)
"""Opsets accepted: below 11 the exporter's upsampling differs from PyTorch's (maps off by ~2e-2); 23 is the
newest the exporter writes (checked with torch 2.13 and ONNX Runtime 1.32)."""
PARITY_IMAGES = 4


@dataclass
class ExportResult:
    """Where the file went and how it compares with PyTorch (max |Δ| / scale per output, `compare`, on `parity_inputs`)."""

    path: Path
    dynamic_size: bool
    parity: dict[str, float]
    parity_inputs: str


def export_onnx(checkpoint: Path, output: Path | None = None, dynamic_size: bool = False,
                opset: int = DEFAULT_OPSET, parity: bool = True) -> ExportResult:
    """Export `checkpoint` (file or run folder) to ONNX with a dynamic batch axis (and H/W with `dynamic_size`).

    Default output: the checkpoint path with suffix `.onnx`. With `parity`, ONNX Runtime is compared with
    PyTorch on real images from the stored dataset (random inputs when it is not reachable).
    """
    source = checkpoint_file(checkpoint)
    output = _output_path(source, output, ".onnx")
    model, cfg, _ = _write_onnx(source, output, dynamic_size, opset)
    result = ExportResult(output, dynamic_size, {}, "")
    if parity:
        from grdnet.onnx_predictor import OnnxPredictor

        inputs, result.parity_inputs = parity_inputs(cfg)
        result.parity = compare(model, OnnxPredictor(output).run, inputs)
    return result


def export_openvino(checkpoint: Path, output: Path | None = None, dynamic_size: bool = False,
                    opset: int = DEFAULT_OPSET, parity: bool = True) -> ExportResult:
    """Export `checkpoint` to OpenVINO IR (`output` .xml + the weights beside it in .bin, fp32): the ONNX export's
    graph and metadata (see `export_onnx`; the ONNX file itself is not kept), converted with `openvino.convert_model`.

    Default output: the checkpoint path with suffix `.xml`. With `parity`, the OpenVINO runtime (CPU, fp32) is
    compared with PyTorch as `export_onnx` compares ONNX Runtime.
    """
    ov = require("openvino")

    source = checkpoint_file(checkpoint)
    output = _output_path(source, output, ".xml")
    if output.suffix != ".xml":  # OpenVINO writes the weights beside it, as the same name with .bin
        raise ConfigError(f"--output {output}: an OpenVINO IR's name ends in .xml, e.g. {output.with_suffix('.xml')}")
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = Path(folder) / "model.onnx"
        model, cfg, metadata = _write_onnx(source, onnx_path, dynamic_size, opset)
        try:
            converted = ov.convert_model(str(onnx_path))
        except Exception as error:  # OpenVINO's frontends raise their own types, with multi-line messages
            raise ConfigError(f"{source}: OpenVINO cannot convert the ONNX graph ({_first_line(error)}); use the default "
                              f"--opset {DEFAULT_OPSET} or export --format onnx") from None
    from grdnet.openvino_predictor import RT_INFO_SECTION, OpenVinoPredictor

    for key, value in metadata.items():
        converted.set_rt_info(value, [RT_INFO_SECTION, key])
    ov.save_model(converted, str(output), compress_to_fp16=False)  # the default halves the weights to fp16
    result = ExportResult(output, dynamic_size, {}, "")
    if parity:
        inputs, result.parity_inputs = parity_inputs(cfg)
        result.parity = compare(model, OpenVinoPredictor(output).run, inputs)
    return result


def _output_path(source: Path, output: Path | None, suffix: str) -> Path:
    """`output`, or `source` with `suffix`; checked to be a file path in a writable folder."""
    from grdnet.files import writable_folder

    output = Path(output) if output else source.with_suffix(suffix)
    if output.is_dir():
        raise DataError(f"{output}: is a folder; pass a file name for --output, e.g. {output / ('model' + suffix)}")
    writable_folder(output.parent, "--output")
    return output


def _write_onnx(source: Path, output: Path, dynamic_size: bool, opset: int) -> tuple[nn.Module, RunConfig, dict[str, str]]:
    """Trace `source`'s inference forward into the ONNX file `output` with its `grdnet.*` metadata; returns the
    PyTorch model that was traced (eval mode) and the checkpoint's config, for a parity check, and the metadata
    (keys without the `grdnet.` prefix)."""
    import torch

    from grdnet.onnx_predictor import FORMAT
    from grdnet.scoring import NormalStats
    from grdnet.seeds import torch_generator
    from grdnet.tiling import wrap_for_inference

    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise ConfigError(f"opset {opset} is outside {OPSETS[0]}–{OPSETS[1]}; use the default --opset {DEFAULT_OPSET}")
    state = load_checkpoint(source)
    cfg, trained = model_from_checkpoint(state, source)
    if not get_method(cfg.model.name).onnx_exportable:
        raise ConfigError(f"{source}: model '{cfg.model.name}' cannot be exported to ONNX (its inference is not a "
                          "fixed graph); use the PyTorch backend (grdnet predict / serve with the checkpoint)")
    if dynamic_size and cfg.data.tile_size is not None:
        raise ConfigError(
            f"--dynamic-size: {source} was trained on tiles (data.tile_size), which are laid out for "
            f"{cfg.data.image_size[0]}x{cfg.data.image_size[1]} images only; export without --dynamic-size"
        )
    model = wrap_for_inference(trained, cfg, NormalStats.from_state(state.get("normal_stats"))).eval()
    size = tuple(cfg.data.image_size)
    example = torch.rand(2, cfg.data.channels, *size, generator=torch_generator(cfg.train.seed, "export_inputs"))
    region = torch.ones(2, 1, *size)
    with torch.no_grad():
        names = list(OUTPUTS) + sorted(k for k in model(example, region) if k.startswith("score_"))
        if dynamic_size:
            _check_other_size(model, cfg)
    axes = {"image": {0: "batch"}, "region": {0: "batch"}, **{name: {0: "batch"} for name in names}}
    if dynamic_size:
        for name in ("image", "region", "anomaly_map", "smoothed_map"):
            axes[name].update({2: "height", 3: "width"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic are expected
        try:
            torch.onnx.export(_inference_graph(model, names), (example, region), str(output),
                              input_names=["image", "region"], output_names=names, dynamic_axes=axes, opset_version=opset, dynamo=False)
        except Exception as error:  # the exporter raises many types, often with a whole graph dump
            raise ConfigError(f"{source}: ONNX export at opset {opset} failed ({_first_line(error)}); use the default "
                              f"--opset {DEFAULT_OPSET}") from None
    threshold = float(state.get("threshold", float("nan")))
    metadata = {
        "format": FORMAT,
        "config": json.dumps(cfg.to_dict()),
        "threshold": repr(threshold),
        "image_size": json.dumps(list(size)),
        "resize": cfg.data.resize,
        "channels": str(cfg.data.channels),
        "dynamic_size": json.dumps(dynamic_size),
        "outputs": json.dumps(names),
        "version": grdnet.__version__,
        "checkpoint_sha256": sha256_file(source),
    }
    _write_metadata(output, metadata)
    return model, cfg, metadata


def _inference_graph(model: nn.Module, names: list[str]) -> nn.Module:
    """The model's forward as a tuple of the named outputs, in order (what the exporter traces)."""
    from torch import nn

    class InferenceGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(x, region)
            return tuple(out[name] for name in names)

    # In eval mode: the exporter restores the wrapper's mode recursively after tracing, and a wrapper left in
    # training mode would put the model's BatchNorm layers back on batch statistics for everything after it.
    return InferenceGraph().eval()


def _check_other_size(model: nn.Module, cfg: RunConfig) -> None:
    import torch

    height, width = cfg.data.image_size
    try:
        model(torch.rand(1, cfg.data.channels, height + 64, width + 64))
    except Exception as error:
        raise ConfigError(
            f"--dynamic-size: model '{cfg.model.name}'{_bottleneck(cfg)} only runs at "
            f"{height}x{width} ({type(error).__name__}); export without --dynamic-size"
        ) from None


def _bottleneck(cfg: RunConfig) -> str:
    """" (bottleneck drae)" for methods with a bottleneck option (its dense latent fixes the size), else ""."""
    bottleneck = getattr(cfg.model, "bottleneck", None)
    return f" (bottleneck {bottleneck})" if bottleneck else ""


def _first_line(error: Exception) -> str:
    """An exporter's or converter's error as one short line: its first non-empty line (they often dump a whole
    graph), at most 200 characters, else the error's type name."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return first[:200]


def _write_metadata(path: Path, values: dict[str, str]) -> None:
    onnx = require("onnx")

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"grdnet.{key}", value
    onnx.save(proto, str(path))


def parity_inputs(cfg: RunConfig, count: int = PARITY_IMAGES) -> tuple[torch.Tensor, str]:
    """Up to `count` images of the stored dataset (test split, else train) resized into data.image_size as
    training read them (data.resize), and a description."""
    import torch

    from grdnet.data import index_dataset, read_image
    from grdnet.seeds import torch_generator

    try:
        index = index_dataset(cfg.data, check_images=False, splits="test")
        samples = (index.test or index.train)[:count]
        if samples:
            images = torch.stack([read_image(s.image, cfg.data.channels, cfg.data.image_size, cfg.data.resize) for s in samples])
            return images, f"{len(samples)} images from {cfg.data.root}"
        reason = "the dataset has no images"
    except (GrdnetError, OSError) as error:
        reason = str(error).split(";")[0]
    generator = torch_generator(cfg.train.seed, "export_inputs")
    return torch.rand(count, cfg.data.channels, *cfg.data.image_size, generator=generator), f"random inputs ({reason})"


def compare(model: nn.Module, run: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
            images: torch.Tensor) -> dict[str, float]:
    """For every output of the file: max |Δ| between PyTorch (fp32, CPU) and an exported file's runtime call
    `run` (an `ExportedPredictor.run`), relative to the output's scale (its largest |value|, at least 1): float32
    error grows with the values, and standardized maps (`grdnet.scoring.NormalStats`) run to tens."""
    import numpy as np
    import torch

    region = torch.ones(images.shape[0], 1, *images.shape[-2:])
    got = run(images.numpy().astype(np.float32), region.numpy())
    with torch.no_grad():
        expected = model.float().cpu().eval()(images.float(), region)
    deltas = {}
    for name in got:
        reference = expected[name].numpy()
        scale = max(1.0, float(np.abs(reference).max())) if reference.size else 1.0
        deltas[name] = float(np.abs(got[name] - reference).max()) / scale
    return deltas


def describe(result: ExportResult) -> str:
    """One-paragraph summary for the CLI."""
    lines = [f"exported {result.path} (dynamic batch{', height and width' if result.dynamic_size else ''})"]
    if result.parity:
        deltas = ", ".join(f"{name} {value:.2e}" for name, value in result.parity.items())
        worst = max(result.parity.values())
        verdict = "ok" if math.isfinite(worst) and worst < 1e-4 else "CHECK: above 1e-4"
        lines.append(f"parity vs PyTorch on {result.parity_inputs}: max |Δ| / scale {deltas} ({verdict})")
    return "\n".join(lines)


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(["onnx", "openvino"]), default="onnx", show_default=True,
              help="onnx: one .onnx file (ONNX Runtime); openvino: OpenVINO IR, .xml + .bin (pip install 'grdnet[openvino]').")
@click.option("--output", type=click.Path(path_type=Path),
              help="Output file (default: CHECKPOINT with suffix .onnx, or .xml for openvino).")
@click.option("--dynamic-size", is_flag=True, help="Also make height and width dynamic (models that allow it).")
@click.option("--opset", type=click.IntRange(*OPSETS), default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset version (openvino: of the ONNX graph it is converted from).")
@click.option("--no-parity", is_flag=True, help="Skip the runtime (ONNX Runtime / OpenVINO) vs PyTorch comparison.")
def export_command(checkpoint, format_, output, dynamic_size, opset, no_parity) -> None:
    """Export a checkpoint for deployment. Example: grdnet export runs/mtd/best.pt --format onnx"""
    export = export_openvino if format_ == "openvino" else export_onnx
    click.echo(describe(export(checkpoint, output, dynamic_size=dynamic_size, opset=opset, parity=not no_parity)))
