import asyncio
import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from grdnet.builtin_dataset import make_builtin_dataset
from grdnet.checkpoint import sha256_file
from grdnet.cli import main
from grdnet.config import RunConfig
from grdnet.inference import Predictor
from grdnet.records import InspectionLog
from grdnet.service import MicroBatcher, create_app
from grdnet.training import Trainer

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """1 epoch of the tiny GRD-Net on a small built-in data set (the full one takes too long here)."""
    from support import tiny_config

    category = make_builtin_dataset(tmp_path_factory.mktemp("small"), seed=0, n_train=12, n_test_good=4, n_test_defect_per_type=1)
    cfg = tiny_config(category, tmp_path_factory.mktemp("run"), epochs=1)
    return Trainer(cfg, show_progress=False).fit().best_checkpoint, category


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    checkpoint, _ = trained
    log = InspectionLog(f"sqlite:///{tmp_path_factory.mktemp('db') / 'inspections.db'}")
    app = create_app(Predictor.from_checkpoint(checkpoint, device="cpu"), sha256_file(checkpoint), max_batch=8,
                     max_wait_ms=50, max_image_mb=0.05, max_pixels=300 * 300, log=log)
    with TestClient(app) as client:
        yield client, log


@pytest.fixture(scope="module")
def png(trained):
    return (trained[1] / "test" / "crack" / "000.png").read_bytes()


def test_good_png_gets_every_field(served, png, trained):
    client, log = served
    before = len(log.query())
    response = client.post("/inspect?heatmap=true", content=png, headers={"content-type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"score", "decision", "threshold", "regions", "model", "checkpoint_sha256", "latency_ms"} <= set(body)
    assert body["decision"] in ("ok", "defect") and (body["decision"] == "defect") == (body["score"] >= body["threshold"])
    assert body["model"] == "grdnet" and body["checkpoint_sha256"] == sha256_file(trained[0]) and body["latency_ms"] > 0
    assert all(set(r) == {"bbox", "area", "peak"} for r in body["regions"])
    assert Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"]))).size == (64, 64)
    rows = log.query()
    assert len(rows) == before + 1 and rows[-1].score == pytest.approx(body["score"]) and rows[-1].decision == body["decision"]


def test_multipart_with_roi_restricts_regions(served, png):
    client, _ = served
    full = client.post("/inspect", files={"file": ("a.png", png, "image/png")}).json()
    empty_roi = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(empty_roi, format="PNG")
    body = client.post("/inspect", files={"file": ("a.png", png), "roi": ("r.png", empty_roi.getvalue())}).json()
    assert full["score"] > 0 and body["score"] == 0.0 and body["regions"] == [] and body["decision"] == "ok"


def truncated(png: bytes) -> bytes:
    return png[: len(png) // 2]


def large_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()  # ~120 kB, over the 0.05 MB limit


def big_pixels() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (400, 400)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("body, content_type, status", [
    (b"", "image/png", 400),
    (b"definitely not an image", "application/octet-stream", 415),
    ("truncated", "image/png", 422),
    ("large", "image/png", 413),
    ("pixels", "image/png", 413),
    ("png", "text/plain", 415),
])
def test_bad_input_is_a_one_line_4xx_and_service_keeps_serving(served, png, body, content_type, status):
    client, _ = served
    body = {"truncated": truncated(png), "large": large_png(), "pixels": big_pixels(), "png": png}.get(body, body)
    response = client.post("/inspect", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    assert client.post("/inspect", content=png, headers={"content-type": "image/png"}).status_code == 200


def test_health_and_metrics_count(served, png):
    client, _ = served
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "grdnet" and health["device"] == "cpu" and health["threshold"] > 0
    before = client.get("/metrics").json()
    client.post("/inspect", content=png)
    client.post("/inspect", content=b"", headers={"content-type": "image/png"})
    after = client.get("/metrics").json()
    assert after["inspections"] == before["inspections"] + 1 and after["errors"] == before["errors"] + 1
    assert after["requests"]["400"] == before["requests"].get("400", 0) + 1
    assert after["batches"] >= before["batches"] + 1 and after["latency_ms"]["p99"] >= after["latency_ms"]["p50"] > 0
    assert 'grdnet_requests_total{code="200"}' in client.get("/metrics?format=prometheus").text


def test_concurrent_requests_share_a_batch(served, png):
    client, _ = served
    batcher = client.app.state.batcher
    batches, items = batcher.batches, batcher.batched_items
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: client.post("/inspect", content=png).status_code, range(16)))
    assert statuses == [200] * 16 and batcher.batched_items - items == 16 and batcher.batches - batches < 16
    assert not hasattr(batcher, "batch_sizes")  # counters, not a list that grows with every batch


class GatedPredictor(Predictor):
    """`Darkness` behind a gate: `prepare` (decoding) or the model waits until `gate` is set."""

    def __init__(self, hold: str) -> None:
        cfg = RunConfig().updated({"data.image_size": [64, 64], "train.device": "cpu"})
        super().__init__(Darkness(), cfg, threshold=0.5, device=torch.device("cpu"), bf16=False)
        self.hold, self.gate, self.entered = hold, threading.Event(), threading.Event()

    def prepare(self, images):
        if self.hold == "prepare":
            self.entered.set()
            self.gate.wait(10)
        return super().prepare(images)

    def predict(self, *args, **kwargs):
        if self.hold == "model":
            self.entered.set()
            self.gate.wait(10)
        return super().predict(*args, **kwargs)


def gray_png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("hold, limits, busy", [
    ("model", {"max_in_flight": 1}, "1 requests in flight"),
    ("prepare", {"max_pixels_in_flight": 64 * 64 + 100}, "4096 decoded pixels in flight"),
])
def test_work_in_flight_is_bounded_with_503_and_retry_after(hold, limits, busy):
    predictor = GatedPredictor(hold)
    with TestClient(create_app(predictor, "sha", max_wait_ms=1, **limits)) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/inspect", content=gray_png())
        assert predictor.entered.wait(10)
        refused = client.post("/inspect", content=gray_png())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert busy in refused.json()["detail"]
        predictor.gate.set()
        assert first.result(10).status_code == 200
        assert client.post("/inspect", content=gray_png()).status_code == 200
        in_flight = client.get("/metrics").json()["in_flight"]
    assert in_flight == {"requests": 0, "pixels": 0, "refused": 1}


def test_one_image_within_the_size_limit_is_never_refused_for_its_size_alone():
    predictor = GatedPredictor("none")
    with TestClient(create_app(predictor, "sha", max_wait_ms=1, max_pixels_in_flight=10)) as client:
        assert client.post("/inspect", content=gray_png()).status_code == 200


def test_webp_is_accepted_like_train_and_predict():
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(buffer, format="WEBP", lossless=True)
    with TestClient(create_app(GatedPredictor("none"), "sha", max_wait_ms=1)) as client:
        response = client.post("/inspect", content=buffer.getvalue(), headers={"content-type": "image/webp"})
    assert response.status_code == 200, response.text


class Darkness(torch.nn.Module):
    """Stand-in model whose anomaly map is 1 − brightness: black "fit" padding looks fully anomalous."""

    def forward(self, x):
        return {"anomaly_map": 1 - x.mean(dim=1, keepdim=True)}


def test_fit_resize_leaves_the_padding_out_of_the_score():
    cfg = RunConfig().updated({"data.image_size": [64, 64], "data.resize": "fit", "train.device": "cpu",
                               "scoring.smoothing_kernel": 1})
    predictor = Predictor(Darkness(), cfg, threshold=0.5, device=torch.device("cpu"), bf16=False)
    white = io.BytesIO()
    Image.fromarray(np.full((32, 64), 255, np.uint8)).save(white, format="PNG")  # fits as the top half of 64×64
    with TestClient(create_app(predictor, "sha", max_wait_ms=1)) as client:
        plain = client.post("/inspect", content=white.getvalue(), headers={"content-type": "image/png"}).json()
        with_roi = client.post("/inspect", files={"file": ("a.png", white.getvalue()), "roi": ("r.png", white.getvalue())}).json()
    assert plain["score"] == 0.0 and plain["decision"] == "ok" and plain["regions"] == []
    assert with_roi["score"] == 0.0 and with_roi["regions"] == []


def test_micro_batcher_groups_and_isolates_failures():
    seen, gate = [], threading.Event()

    def run(items):
        gate.wait(5)
        seen.append(list(items))
        if "bad" in items:
            raise ValueError("boom")
        return [item * 2 for item in items]

    async def scenario():
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=20)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.1)  # first batch is running (blocked); the next 6 queue up
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        failed = await asyncio.gather(batcher.submit("bad"), return_exceptions=True)
        after = await batcher.submit(5)
        await batcher.stop()
        return results, failed, after

    results, failed, after = asyncio.run(scenario())
    assert results == [0, 2, 4, 6, 8, 10, 12] and isinstance(failed[0], ValueError) and after == 10
    assert [len(b) for b in seen[:3]] == [1, 4, 2]


def test_predict_cli_records(trained, tmp_path):
    checkpoint, category = trained
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = CliRunner().invoke(main, ["predict", str(checkpoint), str(category / "test"), "--output", str(tmp_path / "out"),
                                       "--no-overlays", "--device", "cpu", "--record", url])
    assert result.exit_code == 0, result.output
    rows = InspectionLog(url).query()
    assert len(rows) == len(list((category / "test").rglob("*.png"))) and "inspections recorded" in result.output
    assert all(r.image_path and r.checkpoint_sha256 == sha256_file(checkpoint) and r.model == "grdnet" for r in rows)


def test_serve_on_a_taken_port_is_one_line_before_saying_serving(trained):
    import socket
    import subprocess
    import sys

    checkpoint, _ = trained
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "grdnet", "serve", str(checkpoint), "--port", str(port), "--device", "cpu"],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "serving" not in done.stdout
    assert f"127.0.0.1:{port}: cannot listen" in done.stderr and "Traceback" not in done.stderr


def test_serve_port_out_of_range_is_refused(trained):
    result = CliRunner().invoke(main, ["serve", str(trained[0]), "--port", "70000"])
    assert result.exit_code == 2 and "70000 is not in the range 1<=x<=65535" in result.output


def test_shutdown_drains_requests_in_flight():
    """What SIGTERM does to `grdnet serve` (uvicorn's handler sets should_exit): stop accepting, finish what is in flight."""
    import urllib.request

    import uvicorn

    from grdnet.service import bind_socket

    predictor = GatedPredictor("model")
    listening = bind_socket("127.0.0.1", 0)
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, "sha", max_wait_ms=1), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})  # off the main thread: no signal handlers
    thread.start()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/inspect", data=gray_png(), headers={"content-type": "image/png"})
    with ThreadPoolExecutor(1) as pool:
        for _ in range(100):  # wait for the server to start
            if server.started:
                break
            threading.Event().wait(0.05)
        answer = pool.submit(lambda: urllib.request.urlopen(request, timeout=20))
        assert predictor.entered.wait(10)
        server.should_exit = True  # the request is inside the model now
        threading.Event().wait(0.3)
        predictor.gate.set()
        response = answer.result(20)
        assert response.status == 200 and "score" in response.read().decode()
    thread.join(20)
    assert not thread.is_alive()
