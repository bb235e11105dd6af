"""One self-contained HTML test report (`grdnet test --report DIR`): every image is an embedded base64 PNG."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from grdnet.reports.plots import curve_pngs
from grdnet.scoring import regions
from grdnet.visualize import heatmap_scale, overlay, to_rgb_uint8

if TYPE_CHECKING:
    from grdnet.config import RunConfig
    from grdnet.evaluation import Evaluation

TILE = 128  # panel tiles are at most this many pixels on a side
BOX = (0, 255, 0)
OUTCOME_COLOURS = {"FN": "#c62828", "FP": "#ef6c00", "TP": "#2e7d32", "TN": "#546e7a"}

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 8px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.curves img{width:420px;height:auto;border:1px solid #ddd}
.panels{display:grid;grid-template-columns:repeat(auto-fill,minmax(410px,1fr));gap:12px}
.panel{border:1px solid #ddd;padding:6px;font-size:13px}
.panel img{height:128px;width:auto;image-rendering:pixelated;display:block}
.badge{color:#fff;padding:0 6px;border-radius:3px;font-weight:bold}
.path{color:#666;word-break:break-all;font-size:11px}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _panel_png(array: np.ndarray) -> bytes:
    """PNG with an adaptive 256-colour palette: about 40% smaller, which matters on 600-image pages."""
    buffer = io.BytesIO()
    Image.fromarray(array).quantize(256).save(buffer, format="PNG")
    return buffer.getvalue()


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    return "—" if not math.isfinite(value) else f"{value:.4f}"


def outcome(record: dict[str, Any]) -> str:
    """TP / FP / TN / FN of one evaluation record (counted label against the decision)."""
    defect, flagged = bool(record["counted_label"]), bool(record["decision"])
    return ("T" if defect == flagged else "F") + ("P" if flagged else "N")


def report_order(records: list[dict[str, Any]], threshold: float) -> list[int]:
    """Indices of `records`, worst errors first: false negatives and false positives by how far their score
    is on the wrong side of the threshold; then correct decisions, closest to the threshold first."""
    cut = threshold if math.isfinite(threshold) else 0.0

    def key(i: int) -> tuple[int, float]:
        record = records[i]
        distance = record["score"] - cut
        kind = outcome(record)
        if kind == "FN":
            return 0, distance  # lowest score first
        if kind == "FP":
            return 0, -distance  # highest score first
        return 1, abs(distance)

    return sorted(range(len(records)), key=key)


def _tile(array: np.ndarray) -> Image.Image:
    image = Image.fromarray(array)
    scale = TILE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    return image


def panel_image(image: np.ndarray, smoothed: np.ndarray, mask: np.ndarray, roi: np.ndarray | None,
                threshold: float) -> tuple[np.ndarray, list[dict]]:
    """Image | ground-truth mask | heatmap overlay with the ROI outline and predicted-region boxes, side by
    side as one `(h, 3w+8, 3)` uint8 array (each tile at most TILE pixels), plus the regions found."""
    found = regions(smoothed, threshold, roi) if math.isfinite(threshold) else []
    heat = Image.fromarray(overlay(image, smoothed, roi=roi, vmax=heatmap_scale(threshold, smoothed)))
    draw = ImageDraw.Draw(heat)
    width = max(1, round(max(heat.size) / TILE))
    for region in found:
        draw.rectangle(region["bbox"], outline=BOX, width=width)
    truth = overlay(mask, mask, alpha=0.0, roi=roi)  # the mask in white, with the same ROI outline
    tiles = [_tile(to_rgb_uint8(image)), _tile(truth), _tile(np.asarray(heat))]
    gap = 4
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * 2, tiles[0].height), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + gap
    return np.asarray(sheet), found


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "image"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_number(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
                         else f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _defect_type_rows(records: list[dict[str, Any]], metrics: dict[str, Any]) -> list[list[Any]]:
    per_type = metrics.get("per_defect_type") or {}
    rows = []
    for name in sorted({r["defect_type"] for r in records}, key=lambda n: (n != "good", n)):
        chosen = [r for r in records if r["defect_type"] == name]
        auroc = per_type.get(name, {}).get("image_AUROC")
        rows.append([name, len(chosen), sum(r["counted_label"] for r in chosen), sum(r["decision"] for r in chosen),
                     auroc if isinstance(auroc, (int, float)) else "—"])
    return rows


def write_report(evaluation: Evaluation, out_dir: str | Path, cfg: RunConfig, threshold: float,
                 checkpoint: str | Path) -> Path:
    """Write `out_dir/report.html` plus `roc.png`, `pr.png` and `panels/NNN_<type>_<name>.png`; returns the page.

    Panels follow `report_order` (worst errors first); NNN is the position in the page.
    """
    out = Path(out_dir)
    (out / "panels").mkdir(parents=True, exist_ok=True)
    records = evaluation.records
    scores = np.array([r["score"] for r in records], dtype=np.float64)
    labels = np.array([r["counted_label"] for r in records], dtype=int)
    curves = curve_pngs(scores, labels, threshold)
    for name, png in curves.items():
        (out / f"{name}.png").write_bytes(png)

    digits = max(3, len(str(len(records))))
    panels = []
    for rank, i in enumerate(report_order(records, threshold)):
        record = records[i]
        roi = None if evaluation.rois is None else evaluation.rois[i]
        sheet, found = panel_image(evaluation.images[i], evaluation.maps[i], evaluation.masks[i], roi, threshold)
        png = _panel_png(sheet)
        stem = _safe_name(f"{record['defect_type']}_{Path(record['path']).stem}")
        (out / "panels" / f"{rank:0{digits}d}_{stem}.png").write_bytes(png)
        kind = outcome(record)
        panels.append(
            f'<div class="panel" data-outcome="{kind}" data-score="{record["score"]:.6g}">'
            f'<img class="panel-image" alt="{html.escape(stem)}" src="{_data_uri(png)}">'
            f'<div><span class="badge" style="background:{OUTCOME_COLOURS[kind]}">{kind}</span> '
            f'score <b>{record["score"]:.4f}</b> · decision <b>{"defect" if record["decision"] else "ok"}</b> · '
            f'label <b>{"defect" if record["counted_label"] else "normal"}</b> ({html.escape(record["defect_type"])}) · '
            f'{len(found)} region{"s" if len(found) != 1 else ""}</div>'
            f'<div class="path">{html.escape(record["path"])}</div></div>'
        )

    metrics = evaluation.metrics
    metric_rows = [[k, v] for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    config_rows = [
        ["model", cfg.model.name], ["checkpoint", str(checkpoint)], ["data root", str(cfg.data.root)],
        ["category", cfg.data.category or "—"], ["layout", cfg.data.layout],
        ["image size (H×W)", "×".join(map(str, cfg.data.image_size))], ["resize", cfg.data.resize],
        ["tiles (H×W)", "×".join(map(str, cfg.data.tile_size)) if cfg.data.tile_size else "none (whole image)"],
        ["channels", cfg.data.channels],
        ["test ROI", str(cfg.data.test_roi) if evaluation.rois is not None else "none (whole image)"],
        ["threshold", threshold], ["smoothing kernel", cfg.scoring.smoothing_kernel],
        ["training epochs", cfg.train.epochs], ["seed", cfg.train.seed],
    ]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>grdnet test report — {html.escape(cfg.model.name)}</title>
<style>{STYLE}</style></head><body>
<h1>grdnet test report</h1>
<p>{len(records)} test images · threshold {_number(float(threshold))} · "defect" means score ≥ threshold</p>
<h2>Summary</h2>
{f"<p>Note: {html.escape(metrics['pixel_note'])}.</p>" if "pixel_note" in metrics else ""}
<div class="row"><div>{_table(["metric", "value"], metric_rows)}</div><div>{_table(["setting", "value"], config_rows)}</div></div>
<h2>Curves</h2>
<div class="row curves"><img class="curve" id="roc" alt="ROC curve" src="{_data_uri(curves["roc"])}">
<img class="curve" id="pr" alt="precision-recall curve" src="{_data_uri(curves["pr"])}"></div>
<h2>Per defect type</h2>
{_table(["defect type", "images", "counted as defect (touching the ROI)", "flagged at threshold", "image AUROC"],
        _defect_type_rows(records, metrics))}
<h2>Images ({len(records)}, worst errors first)</h2>
<p>Each panel: image · ground-truth mask · heatmap with the ROI outline (cyan) and predicted regions (green boxes).</p>
<div class="panels">
{chr(10).join(panels)}
</div></body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
