"""The review page of `grdnet serve`: its JSON routes, and the page itself driven in headless Chromium."""

import io
import shutil
import socket
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.cli import main
from grdnet.inference import Predictor
from grdnet.records import InspectionLog, InspectionRecord, sha256_file
from grdnet.review import WEB_DIR, load_test_result, save_threshold_copy, threshold_metrics
from grdnet.service import create_app
from grdnet.training import Trainer

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def tested_run(tmp_path_factory):
    """A 1-epoch tiny GRD-Net with a test result (RUN/test/scores.csv from `grdnet test`)."""
    from support import tiny_config

    category = make_builtin_dataset(tmp_path_factory.mktemp("small"), seed=0, n_train=12, n_test_good=4, n_test_defect_per_type=1)
    cfg = tiny_config(category, tmp_path_factory.mktemp("run"), epochs=1)
    checkpoint = Trainer(cfg, show_progress=False).fit().best_checkpoint
    result = CliRunner().invoke(main, ["test", str(checkpoint), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return checkpoint, category


@pytest.fixture(scope="module")
def served(tested_run, tmp_path_factory):
    checkpoint, _ = tested_run
    log = InspectionLog(f"sqlite:///{tmp_path_factory.mktemp('db') / 'inspections.db'}")
    app = create_app(Predictor.from_checkpoint(checkpoint, device="cpu"), sha256_file(checkpoint), log=log)
    with TestClient(app) as client:
        yield client, log


def test_page_and_its_files_are_served(served):
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("app.js", "style.css"):
        assert f"/static/{name}" in page.text
        assert client.get(f"/static/{name}").content == (WEB_DIR / name).read_bytes()
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from the network


def test_history_routes_filter_page_and_export(served):
    client, log = served
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    log.add([InspectionRecord(image_sha256=f"{i:064d}", model="grdnet", checkpoint_sha256="c" * 64, score=i / 10,
                              decision="defect" if i >= 5 else "ok", threshold=0.5, time=t0.replace(hour=i)) for i in range(10)])
    body = client.get("/api/records", params={"decision": "defect", "page_size": 2}).json()
    assert body["total"] == 5 and [r["score"] for r in body["rows"]] == [0.9, 0.8]  # newest first
    second = client.get("/api/records", params={"decision": "defect", "page_size": 2, "page": 2}).json()
    assert [r["score"] for r in second["rows"]] == [0.7, 0.6]
    ranged = client.get("/api/records", params={"min_score": 0.25, "max_score": 0.65, "until": "2024-05-01T23:59:59"}).json()
    assert sorted(r["score"] for r in ranged["rows"]) == [0.3, 0.4, 0.5, 0.6]
    one = client.get(f"/api/records/{body['rows'][0]['id']}").json()
    assert one["score"] == 0.9 and one["decision"] == "defect" and one["time"].startswith("2024-05-01T09:00")
    csv_text = client.get("/api/records.csv", params={"decision": "ok", "since": "2024-05-01T02:00:00Z"}).text
    assert len(csv_text.strip().splitlines()) == 1 + 3  # header + hours 2, 3, 4
    assert client.get("/api/records/999999").json()["detail"].startswith("no inspection record 999999")
    bad = client.get("/api/records", params={"since": "yesterday"})
    assert bad.status_code == 422 and "not an ISO date" in bad.json()["detail"]


def test_threshold_data_metrics_and_saved_copy(served, tested_run):
    client, log = served
    checkpoint, _ = tested_run
    data = client.get("/api/threshold").json()
    _, scores, labels = load_test_result(checkpoint)
    assert data["scores"] == scores and data["labels"] == labels and sum(labels) > 0 and 0 in labels
    everything = threshold_metrics(scores, labels, min(scores))
    assert everything["recall"] == 1.0 and everything["accuracy"] == sum(labels) / len(labels)
    assert threshold_metrics(scores, labels, max(scores) + 1)["precision"] is None

    original = sha256_file(checkpoint)
    saved = client.post("/api/threshold", json={"threshold": 0.123, "user": "inspector A"}).json()
    copy = torch.load(saved["checkpoint"], weights_only=True)
    assert saved["checkpoint"] != str(checkpoint) and sha256_file(checkpoint) == original
    assert copy["threshold"] == pytest.approx(0.123) and copy["audit"][-1]["by"] == "inspector A"
    assert Predictor.from_checkpoint(saved["checkpoint"], device="cpu").threshold == pytest.approx(0.123)
    entry = log.audit_entries()[-1]
    assert entry["actor"] == "inspector A" and entry["action"] == "threshold" and entry["detail"]["to"] == pytest.approx(0.123)
    again = client.post("/api/threshold", json={"threshold": 0.123, "user": "inspector A"}).json()
    assert again["checkpoint"] != saved["checkpoint"]  # a second save in the same second gets its own file
    nameless = client.post("/api/threshold", json={"threshold": 0.2, "user": " "})
    assert nameless.status_code == 422 and "enter your name" in nameless.json()["detail"]


def test_saved_copy_never_overwrites(tested_run, tmp_path):
    checkpoint, _ = tested_run
    source = tmp_path / "best.pt"
    shutil.copy(checkpoint, source)
    now = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    first = save_threshold_copy(source, 0.3, "a", now)["checkpoint"]
    second = save_threshold_copy(source, 0.4, "b", now)["checkpoint"]
    assert first != second and torch.load(first, weights_only=True)["threshold"] == pytest.approx(0.3)
    assert torch.load(source, weights_only=True)["threshold"] != pytest.approx(0.3)


def test_routes_without_a_record_say_how_to_get_one(tested_run):
    checkpoint, _ = tested_run
    app = create_app(Predictor.from_checkpoint(checkpoint, device="cpu"), sha256_file(checkpoint))
    with TestClient(app) as client:
        response = client.get("/api/records")
    assert response.status_code == 404 and "--record sqlite:///" in response.json()["detail"]


# --------------------------------------------------------------------------- the page in Chromium
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server(tested_run, tmp_path):
    import uvicorn

    checkpoint, _ = tested_run
    log = InspectionLog(f"sqlite:///{tmp_path / 'inspections.db'}")
    app = create_app(Predictor.from_checkpoint(checkpoint, device="cpu"), sha256_file(checkpoint), log=log)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{server.config.port}", log
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)")
def test_page_in_chromium_inspects_filters_and_moves_the_threshold(live_server, tested_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import httpx

    url, log = live_server
    _, category = tested_run
    image = category / "test" / "crack" / "000.png"
    expected = httpx.post(f"{url}/inspect", files={"file": ("000.png", image.read_bytes(), "image/png")}).json()
    rejected = httpx.post(f"{url}/inspect", files={"file": ("notes.png", b"not an image", "image/png")}).json()["detail"]
    _, scores, labels = load_test_result(tested_run[0])

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        page.set_input_files("#image-input", str(image))
        page.wait_for_selector(".result.done .heatmap[data-drawn=true]", timeout=30_000)
        shown = page.locator(".result.done .score").first
        assert float(shown.get_attribute("data-score")) == expected["score"]
        assert shown.text_content() == f"{expected['score']:.4f}"
        assert page.locator(".result.done .decision").first.text_content() == expected["decision"]
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
        assert shot.std() > 10 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # not blank

        page.set_input_files("#image-input", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
        page.wait_for_selector(".result.failed .error", timeout=30_000)
        assert page.locator(".result.failed .error").first.text_content() == rejected

        page.click("button[data-tab=history]")
        page.wait_for_selector("#history-table tbody tr")
        assert page.locator("#history-table tbody tr").count() == len(log.query()) == 2
        other = "ok" if expected["decision"] == "defect" else "defect"
        for decision, count in ((other, 0), (expected["decision"], 2)):
            page.select_option("#history-filters select[name=decision]", decision)
            page.click("#history-filters button[type=submit]")
            page.wait_for_function(f"document.querySelector('#history-status').textContent.startsWith('{count} record')")
        assert page.get_attribute("#csv-link", "href") == f"/api/records.csv?decision={expected['decision']}"
        page.locator("#history-table tbody tr").first.click()
        page.wait_for_selector("#record-detail table tr")
        assert str(expected["score"]) in page.text_content("#record-detail table")

        page.click("button[data-tab=threshold]")
        page.wait_for_selector("#threshold-body", state="visible")
        seen = []
        for value in (min(scores), max(scores)):
            page.eval_on_selector("#threshold-slider", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)
            at = float(page.input_value("#threshold-slider"))
            metrics = {name: page.text_content(f"#m-{name}") for name in ("precision", "recall", "f1", "accuracy")}
            wanted = threshold_metrics(scores, labels, at)
            assert metrics == {k: "—" if v is None else f"{v:.4f}" for k, v in wanted.items()}
            seen.append(metrics)
        assert seen[0] != seen[1]
        page.fill("#user-name", "inspector B")
        page.click("#save-threshold")
        page.wait_for_function("document.querySelector('#save-status').textContent.includes('saved by inspector B')")
        assert log.audit_entries()[-1]["actor"] == "inspector B"
        browser.close()
