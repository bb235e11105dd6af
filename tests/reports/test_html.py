"""The HTML test report: content, ordering, panels, the CLI option and a headless-Chromium rendering."""

import base64
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from grdnet.evaluation import Evaluation
from grdnet.reports.html import BOX, TILE, panel_image, report_order, write_report
from grdnet.training import Trainer

IMG = re.compile(r'<img class="([\w-]+)"[^>]*src="([^"]+)"')


@pytest.fixture(scope="module")
def report(builtin_category, tmp_path_factory):
    """A 1-epoch tiny model tested with `grdnet test --report`, as a user would."""
    from support import tiny_config

    cfg = tiny_config(builtin_category, tmp_path_factory.mktemp("run"), epochs=1)
    run = Trainer(cfg, show_progress=False).fit()
    out = tmp_path_factory.mktemp("report")
    done = subprocess.run([sys.executable, "-m", "grdnet", "test", run.best_checkpoint, "--device", "cpu",
                           "--report", out], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return run, out


def test_training_writes_its_curves(report):
    run, _ = report
    assert Image.open(run.run_dir / "training_curves.png").size[0] > 100


def test_cli_report_is_one_self_contained_page(report, builtin_category):
    _, out = report
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page and "url(" not in page
    images = IMG.findall(page)
    assert [c for c, _ in images if c == "curve"] == ["curve", "curve"]
    test_images = sorted(builtin_category.glob("test/*/*.png"))
    assert len([c for c, _ in images if c == "panel-image"]) == len(test_images)
    assert len(list((out / "panels").glob("*.png"))) == len(test_images)
    for kind, src in images:
        assert src.startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        if kind == "panel-image":
            assert max(picture.size) <= 3 * TILE + 8
    assert Image.open(out / "roc.png").size == Image.open(out / "pr.png").size
    for defect_type in {p.parent.name for p in test_images}:
        assert f"<td>{defect_type}</td>" in page
    assert "image_AUROC" in page and "grdnet" in page
    assert "<td>resize</td><td>stretch</td>" in page and "<td>tiles (H×W)</td><td>none (whole image)</td>" in page


def evaluation(scores, labels):
    n = len(scores)
    maps = np.zeros((n, 32, 32), dtype=np.float32)
    maps[:, 8:16, 10:20] = np.asarray(scores, dtype=np.float32)[:, None, None]
    records = [{"path": f"/data/{i}.png", "defect_type": "good" if l == 0 else "crack", "label": l, "counted_label": l,
                "score": s, "decision": s >= 0.5} for i, (s, l) in enumerate(zip(scores, labels))]
    return Evaluation({"image_AUROC": 0.5, "per_defect_type": {"crack": {"count": 3, "image_AUROC": 0.25}}}, records,
                      np.full((n, 3, 32, 32), 0.5, np.float32), maps, np.zeros((n, 32, 32), np.float32), None)


def test_worst_errors_come_first(make_config, tmp_path):
    # 0 TN, 1 FP (0.6), 2 FN (0.1), 3 TP, 4 FP (0.95), 5 FN (0.45), 6 TN near the threshold
    result = evaluation([0.2, 0.6, 0.1, 0.85, 0.95, 0.45, 0.49], [0, 0, 1, 1, 0, 1, 0])
    order = report_order(result.records, 0.5)
    assert order == [4, 2, 1, 5, 6, 0, 3]
    page = write_report(result, tmp_path, make_config(), 0.5, "ckpt.pt").read_text()
    assert re.findall(r'data-outcome="(\w+)"', page) == ["FP", "FN", "FP", "FN", "TN", "TN", "TP"]
    assert sorted(p.name for p in (tmp_path / "panels").iterdir())[0] == "000_good_4.png"
    assert "<td>crack</td>" in page and "0.2500" in page


def test_panel_draws_predicted_regions_and_the_roi():
    image = np.full((3, 64, 64), 0.5, np.float32)
    hot = np.zeros((64, 64), np.float32)
    hot[20:30, 30:40] = 0.9
    roi = np.zeros((64, 64), np.float32)
    roi[4:60, 4:60] = 1
    sheet, found = panel_image(image, hot, np.zeros((64, 64), np.float32), roi, threshold=0.5)
    assert found[0]["bbox"] == [30, 20, 39, 29]
    heat = sheet[:, -64:]
    assert (heat == BOX).all(-1).sum() == 4 * 9  # the box outline
    assert (heat == (0, 255, 255)).all(-1).sum() > 100  # the ROI outline
    quiet, none = panel_image(image, hot * 0.1, np.zeros((64, 64), np.float32), roi, threshold=0.5)
    assert none == [] and not (quiet[:, -64:] == BOX).all(-1).any()
    big, _ = panel_image(np.zeros((1, 256, 512), np.float32), np.zeros((256, 512)), np.zeros((256, 512)), None, 0.5)
    assert big.shape == (64, 3 * TILE + 8, 3)


# ------------------------------------------------------------------ rendering in headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1280, 2400
PROBE = ("<script>addEventListener('load', () => document.body.insertAdjacentHTML('beforeend', '<pre id=\"probe\">' + "
         "JSON.stringify([...document.images].map(i => ({cls: i.className, w: i.naturalWidth, "
         "r: i.getBoundingClientRect().toJSON()}))) + '</pre>'))</script>")


def chromium(page, tmp_path, *args):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={WIDTH},{HEIGHT}", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def rendering_problems(page, tmp_path, panels_expected):
    """What is wrong with the page as Chromium renders it (empty list: curves and panels are all there)."""
    shot = tmp_path / "shot.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    problems = []
    if pixels.std() < 5 or len(np.unique(pixels.reshape(-1, 3), axis=0)) < 50:
        problems.append("page is blank")
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(probed, tmp_path, "--dump-dom").stdout
    found = json.loads(re.search(r'<pre id="probe">(\[.*?\])</pre>', dom, re.S).group(1))
    for kind, expected in (("curve", 2), ("panel-image", panels_expected)):
        shown = [i for i in found if i["cls"] == kind]
        if len(shown) != expected or not all(i["w"] > 0 for i in shown):
            problems.append(f"{kind}: {len(shown)} images, {sum(i['w'] > 0 for i in shown)} decoded, {expected} expected")
        for i in shown:
            r = i["r"]
            if r["bottom"] > HEIGHT or r["width"] < 8:
                continue
            crop = pixels[round(r["top"]):round(r["bottom"]), round(r["left"]):round(r["right"])]
            if crop.std() < 10 or len(np.unique(crop.reshape(-1, 3), axis=0)) < 10:
                problems.append(f"{kind} at {r['left']:.0f},{r['top']:.0f} renders blank")
    return problems


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)")
def test_report_renders_in_chromium_with_curves_and_panels(report, builtin_category, tmp_path):
    _, out = report
    panels = len(list(builtin_category.glob("test/*/*.png")))
    assert rendering_problems(out / "report.html", tmp_path, panels) == []

    # The same check fails on a page whose curves are blank and whose panels are gone.
    white = io.BytesIO()
    Image.new("RGB", (420, 360), "white").save(white, format="PNG")
    blank = "data:image/png;base64," + base64.b64encode(white.getvalue()).decode()
    page = (out / "report.html").read_text()
    page = re.sub(r'(<img class="curve"[^>]*src=")[^"]+', lambda m: m.group(1) + blank, page)
    page = re.sub(r'<img class="panel-image"[^>]*>', "", page)
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    broken.write_text(page)
    problems = rendering_problems(broken, tmp_path, panels)
    assert any(p.startswith("curve at") for p in problems) and any(p.startswith("panel-image:") for p in problems)
