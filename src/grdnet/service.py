"""HTTP inspection service (`grdnet serve`): FastAPI app with a micro-batcher in front of a `Predictor`.

`POST /inspect` takes one image (raw body or multipart `file`, optional multipart `roi`) and answers
{score, decision, threshold, regions, model, checkpoint_sha256, image_sha256, latency_ms} (+ `heatmap_png`,
base64, with `?heatmap=true`). Requests that arrive together run as one model batch. `GET /health` and
`GET /metrics` (JSON, or Prometheus text with `?format=prometheus`) report state. Bad input gets a 4xx with
a one-line `{"detail": ...}`; the service keeps serving. The review page at `/` and its `/api/...` routes
come from `grdnet.review`. FastAPI and torch are imported only when serving.
"""

import asyncio
import base64
import io
import socket
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import click
import numpy as np

from grdnet.checkpoint import sha256_file
from grdnet.errors import ConfigError
from grdnet.extras import require
from grdnet.records import InspectionLog, InspectionRecord, sha256_bytes

RAW_TYPES = {"image/png", "image/jpeg", "image/jpg", "image/bmp", "image/x-ms-bmp", "image/tiff", "image/webp",
             "application/octet-stream"}
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "WEBP"]  # the same formats as train and predict (pixels.IMAGE_EXTENSIONS)
RETRY_AFTER_S = 1


class InputError(Exception):
    """A request the client must fix; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


class Admission:
    """Bounds the work in flight: at most `max_requests` requests between arrival and answer, and at most
    `max_pixels` decoded pixels (image + ROI, read from the headers) among them. Over either limit a request
    is refused at once with 503 and Retry-After, so memory stays bounded however many clients send at once.
    An image within the per-request limit is never refused for its size alone: it is admitted when nothing
    else is in flight. Used from the event loop only (no lock needed).
    """

    def __init__(self, max_requests: int, max_pixels: int) -> None:
        self.max_requests = max_requests
        self.max_pixels = max_pixels
        self.requests = 0
        self.pixels = 0
        self.refused = 0

    def _busy(self, what: str) -> InputError:
        self.refused += 1
        return InputError(503, f"server busy ({what} in flight); retry after {RETRY_AFTER_S} s",
                          headers={"Retry-After": str(RETRY_AFTER_S)})

    def enter(self) -> None:
        if self.requests >= self.max_requests:
            raise self._busy(f"{self.requests} requests")
        self.requests += 1

    def leave(self) -> None:
        self.requests -= 1

    def take_pixels(self, count: int) -> None:
        if self.pixels and self.pixels + count > self.max_pixels:
            raise self._busy(f"{self.pixels} decoded pixels")
        self.pixels += count

    def give_pixels(self, count: int) -> None:
        self.pixels -= count


# --------------------------------------------------------------------------- micro-batching
class MicroBatcher:
    """Collects submitted items into batches of up to `max_batch`, waiting at most `max_wait_ms` after the first.

    `run_batch(items) -> results` (same length) runs in a worker thread, one batch at a time; `submit` awaits
    the item's own result (or its exception). `batches`, `batched_items` and `largest_batch` count what ran.
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int = 16, max_wait_ms: float = 5.0) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.batches = 0
        self.batched_items = 0
        self.largest_batch = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    batch.append(self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            live = [(item, future) for item, future in batch if not future.done()]  # skip cancelled requests
            if not live:
                continue
            self.batches += 1
            self.batched_items += len(live)
            self.largest_batch = max(self.largest_batch, len(live))
            try:
                results = await asyncio.to_thread(self.run_batch, [item for item, _ in live])
            except Exception as error:  # one bad batch fails its requests, not the service
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(live, results):
                if not future.done():
                    future.set_result(result)


# --------------------------------------------------------------------------- decoding
def header_pixels(data: bytes, max_pixels: int, what: str = "image") -> int:
    """width × height of image bytes, read from the header without decoding; InputError when bad or over `max_pixels`."""
    with _opened(data, max_pixels, what) as img:
        return img.size[0] * img.size[1]


def decode_image(data: bytes, max_pixels: int, what: str = "image") -> np.ndarray:
    """Image bytes → pixels (H,W) or (H,W,3) float32 in [0,1] (`grdnet.pixels.image_pixels`, as for files);
    InputError when bad."""
    from grdnet.pixels import image_pixels

    with _opened(data, max_pixels, what) as img:
        img.load()
        return image_pixels(img)


@contextmanager
def _opened(data: bytes, max_pixels: int, what: str):
    """The Pillow image of `data` (header read, pixels not yet decoded), refused over `max_pixels`; Pillow's
    errors inside the block become InputError."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(400, f"empty {what}; send the image bytes as the body or as the multipart 'file' field")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(413, f"{what} is {width}x{height} pixels, over the limit of {max_pixels}; send a smaller image")
            yield img
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(415, f"{what} is not a PNG, JPEG, BMP, TIFF or WebP image") from None
    except Image.DecompressionBombError:
        raise InputError(413, f"{what} has too many pixels; send a smaller image") from None
    except Exception as error:  # Pillow raises many types for truncated or corrupt data
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(422, f"{what} cannot be decoded ({reason}); it may be truncated or corrupt") from None


@dataclass
class Job:
    """One request inside a batch: the prepared image (1,C,H,W), where it lies in it (`valid` (1,H,W), 0 on
    "fit" padding), its ROI (H,W) or None, and its hash."""

    image: Any
    valid: np.ndarray
    roi: np.ndarray | None
    sha256: str


@dataclass
class Outcome:
    score: float
    decision: str
    regions: list[dict]
    smoothed_map: np.ndarray


# --------------------------------------------------------------------------- app
class Stats:
    """Counters and recent latencies for `/metrics`."""

    def __init__(self) -> None:
        self.status_counts: Counter = Counter()
        self.inspections = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=10000)

    def percentiles(self) -> dict[str, float | None]:
        if not self.latencies_ms:
            return {"p50": None, "p95": None, "p99": None}
        values = np.percentile(np.fromiter(self.latencies_ms, dtype=float), [50, 95, 99])
        return {name: round(float(v), 3) for name, v in zip(("p50", "p95", "p99"), values)}


def create_app(predictor, checkpoint_sha256: str, max_batch: int = 16, max_wait_ms: float = 5.0,
               max_image_mb: float = 20.0, max_pixels: int = 40_000_000, log: InspectionLog | None = None,
               max_in_flight: int = 32, max_pixels_in_flight: int = 80_000_000):
    """The FastAPI app serving `predictor` (a `grdnet.inference.Predictor`); `max_in_flight` and
    `max_pixels_in_flight` bound the requests and decoded pixels being worked on at once (see `Admission`)."""
    from contextlib import asynccontextmanager

    import torch
    require("fastapi")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from grdnet.pixels import binarize, resize_mask_array
    from grdnet.predictions_io import inspection_record
    from grdnet.visualize import heatmap_scale, overlay

    model_name = predictor.cfg.model.name
    threshold = predictor.threshold
    max_bytes = int(max_image_mb * 1024 * 1024)
    height, width = predictor.image_size
    stats = Stats()
    admission = Admission(max_in_flight, max_pixels_in_flight)

    def run_batch(jobs: list[Job]) -> list[Outcome]:
        rois = np.stack([np.ones((height, width), np.float32) if job.roi is None else job.roi for job in jobs])
        pred = predictor.predict(torch.cat([job.image for job in jobs]), np.concatenate([job.valid for job in jobs]), rois)
        outcomes = []
        for j, job in enumerate(jobs):
            smoothed, score = pred.smoothed_map[j], float(pred.score[j])
            record = inspection_record("", score, threshold, smoothed, job.roi)
            outcomes.append(Outcome(score, record["decision"], record["regions"], smoothed))
        if log is not None:
            log.add([InspectionRecord(image_sha256=job.sha256, model=model_name, checkpoint_sha256=checkpoint_sha256,
                                      score=o.score, decision=o.decision, threshold=threshold, regions=o.regions)
                     for job, o in zip(jobs, outcomes)])
        return outcomes

    def prepare(data: bytes, roi_data: bytes | None) -> Job:
        image, valid = predictor.prepare(decode_image(data, max_pixels))
        roi = None
        if roi_data is not None:  # the training rule (`grdnet.data.read_mask`): any channel above zero is inside
            mask = binarize(decode_image(roi_data, max_pixels, what="roi"))
            roi = resize_mask_array(mask, (height, width), predictor.cfg.data.resize)[0]
        return Job(image, valid, roi, sha256_bytes(data))

    def heatmap_png(job: Job, outcome: Outcome) -> str:
        from PIL import Image

        buffer = io.BytesIO()
        scale = heatmap_scale(threshold, outcome.smoothed_map)
        Image.fromarray(overlay(job.image[0].numpy(), outcome.smoothed_map, roi=job.roi, vmax=scale)).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    batcher = MicroBatcher(run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="grdnet inspection service", lifespan=lifespan)

    @app.middleware("http")
    async def count_statuses(request: Request, call_next: Callable[[Request], Awaitable[Any]]):
        response = await call_next(request)
        stats.status_counts[response.status_code] += 1
        if request.url.path == "/inspect" and response.status_code >= 400:
            stats.errors += 1
        return response

    @app.exception_handler(InputError)
    async def input_error(_request: Request, error: InputError):
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException):
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise InputError(413, f"request body is {int(declared)} bytes, over the limit of {max_bytes}; send a smaller image")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise InputError(413, f"request body is over the limit of {max_bytes} bytes; send a smaller image")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_upload(request: Request) -> tuple[bytes, bytes | None]:
        """(image bytes, ROI bytes or None) from a raw or multipart body."""
        content_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        if content_type != "multipart/form-data" and content_type not in RAW_TYPES:
            raise InputError(415, f"content type '{content_type}' is not supported; send image/png, image/jpeg, image/bmp, "
                                  "image/tiff, application/octet-stream or multipart/form-data")
        body = await read_body(request)
        if content_type != "multipart/form-data":
            return body, None
        if not body:
            raise InputError(400, "empty body; send the image as the multipart 'file' field")

        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form()
        except Exception as error:
            raise InputError(400, f"malformed multipart body ({error})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InputError(400, "multipart body has no 'file' field; send the image as a file field named 'file'")
        roi = form.get("roi")
        if isinstance(roi, str):
            raise InputError(400, "multipart 'roi' must be a file field (a mask image)")
        return await upload.read(), (await roi.read() if roi is not None else None)

    @app.post("/inspect")
    async def inspect(request: Request, heatmap: bool = False) -> dict:
        start = time.perf_counter()
        admission.enter()
        try:
            data, roi_data = await read_upload(request)
            pixels = header_pixels(data, max_pixels) + (header_pixels(roi_data, max_pixels, "roi") if roi_data is not None else 0)
            admission.take_pixels(pixels)  # held while decoding: the prepared job is at the model's (small) size
            try:
                job = await run_in_threadpool(prepare, data, roi_data)
            finally:
                admission.give_pixels(pixels)
            try:
                outcome = await batcher.submit(job)
            except Exception as error:
                raise StarletteHTTPException(500, f"inspection failed ({type(error).__name__}: {error})") from None
            answer = {
                "score": outcome.score, "decision": outcome.decision, "threshold": threshold if np.isfinite(threshold) else None,
                "regions": outcome.regions, "model": model_name, "checkpoint_sha256": checkpoint_sha256, "image_sha256": job.sha256,
            }
            if heatmap:
                answer["heatmap_png"] = await run_in_threadpool(heatmap_png, job, outcome)
        finally:
            admission.leave()
        answer["latency_ms"] = round((time.perf_counter() - start) * 1000.0, 3)
        stats.inspections += 1
        stats.latencies_ms.append(answer["latency_ms"])
        return answer

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "device": str(predictor.device),
                "threshold": threshold if np.isfinite(threshold) else None, "checkpoint_sha256": checkpoint_sha256}

    @app.get("/metrics")
    async def metrics(format: str = "json"):
        batches = batcher.batches
        report = {
            "requests": {str(code): count for code, count in sorted(stats.status_counts.items())},
            "errors": stats.errors, "inspections": stats.inspections, "batches": batches,
            "mean_batch_size": round(batcher.batched_items / batches, 3) if batches else None,
            "max_batch_size": batcher.largest_batch or None, "latency_ms": stats.percentiles(),
            "in_flight": {"requests": admission.requests, "pixels": admission.pixels, "refused": admission.refused},
        }
        if format != "prometheus":
            return report
        lines = [f'grdnet_requests_total{{code="{code}"}} {count}' for code, count in report["requests"].items()]
        lines += [f"grdnet_errors_total {stats.errors}", f"grdnet_inspections_total {stats.inspections}",
                  f"grdnet_batches_total {batches}", f"grdnet_batched_items_total {batcher.batched_items}",
                  f"grdnet_in_flight_requests {admission.requests}", f"grdnet_refused_busy_total {admission.refused}"]
        lines += [f'grdnet_latency_ms{{quantile="{q}"}} {v}' for q, v in zip(("0.5", "0.95", "0.99"), report["latency_ms"].values())
                  if v is not None]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    from grdnet.review import add_review_routes

    add_review_routes(app, predictor, log, InputError)
    app.state.batcher = batcher
    app.state.stats = stats
    app.state.admission = admission
    return app


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 exposes it to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=16, show_default=True, help="Largest model batch.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True, help="How long a batch waits for more requests.")
@click.option("--max-image-mb", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True, help="Largest request body.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True,
              help="Largest image (width × height, read from its header before decoding).")
@click.option("--max-in-flight", type=click.IntRange(min=1), default=32, show_default=True,
              help="Requests worked on at once; more are answered 503 with Retry-After.")
@click.option("--max-pixels-in-flight", type=click.IntRange(min=1), default=80_000_000, show_default=True,
              help="Decoded pixels (images + ROIs) at once; more are answered 503 with Retry-After (about 30 bytes a pixel).")
@click.option("--record", "record_url", help="Log every inspection to this database URL, e.g. sqlite:///inspections.db.")
@click.option("--device", default="auto", show_default=True)
def serve(checkpoint, host, port, max_batch, max_wait_ms, max_image_mb, max_pixels, max_in_flight, max_pixels_in_flight,
          record_url, device) -> None:
    """Serve a checkpoint over HTTP. Example: grdnet serve runs/mtd/best.pt --port 8000 --record sqlite:///inspections.db"""
    uvicorn = require("uvicorn")

    from grdnet.inference import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    log = InspectionLog(record_url) if record_url else None
    app = create_app(predictor, sha256_file(checkpoint), max_batch=max_batch, max_wait_ms=max_wait_ms,
                     max_image_mb=max_image_mb, max_pixels=max_pixels, log=log, max_in_flight=max_in_flight,
                     max_pixels_in_flight=max_pixels_in_flight)
    listening = bind_socket(host, port)  # before saying "serving": a busy port is a one-line error
    click.echo(f"serving {predictor.cfg.model.name} from {checkpoint} on http://{host}:{port} (device {predictor.device})")
    # On SIGTERM / Ctrl-C uvicorn stops accepting, lets the requests in flight finish, then stops the batcher.
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ConfigError (one line) when the address is taken or not ours."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=2048)
    except OSError as error:
        raise ConfigError(f"{host}:{port}: cannot listen ({error.strerror or error}); choose another --port or --host, "
                          "or stop the process using it") from None
