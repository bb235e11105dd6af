"""The review page of `grdnet serve`: a web page at `/` (files in `grdnet/web`, no build step, nothing from
the network) and the JSON routes it reads.

- `GET /api/records` — the inspection record, newest first, filtered by `decision`, `since`, `until` (ISO
  dates, UTC), `min_score`, `max_score`, paged by `page` (from 1) and `page_size`: {total, page, page_size, rows}.
- `GET /api/records/{id}` — one stored record; `GET /api/records.csv` — the filtered rows as CSV.
- `GET /api/threshold` — the run's test result (RUN/test/scores.csv from `grdnet test`): every test image's
  score and counted label, and the serving threshold.
- `POST /api/threshold` {threshold, user} — writes a copy of the checkpoint with that threshold (the original
  is never overwritten) and records who/when in the copy and in the audit table of the record.
"""

import csv
import io
import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grdnet.checkpoint import checkpoint_file, sha256_file
from grdnet.records import InspectionLog, InspectionRecord, write_csv

WEB_DIR = Path(__file__).parent / "web"
NO_LOG = "this service keeps no inspection record; start it with --record sqlite:///inspections.db"


def load_test_result(checkpoint: Path | str) -> tuple[Path, list[float], list[int]]:
    """(scores.csv path, test scores, counted labels 0/1) of the run a checkpoint belongs to (RUN/test/scores.csv)."""
    scores_csv = checkpoint_file(checkpoint).parent / "test" / "scores.csv"
    if not scores_csv.is_file():
        raise FileNotFoundError(f"{scores_csv}: no test result for this run; run `grdnet test {checkpoint}` first")
    with scores_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    label = "counted_label" if rows and "counted_label" in rows[0] else "label"
    return scores_csv, [float(r["score"]) for r in rows], [int(r[label]) for r in rows]


def threshold_metrics(scores: list[float], labels: list[int], threshold: float) -> dict[str, float | None]:
    """Precision, recall, F1 and accuracy of "defect when score ≥ threshold" (None where undefined) — the
    numbers the page's slider shows, computed the same way."""
    tp = sum(1 for s, y in zip(scores, labels) if s >= threshold and y)
    fp = sum(1 for s, y in zip(scores, labels) if s >= threshold and not y)
    fn = sum(1 for s, y in zip(scores, labels) if s < threshold and y)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = (len(scores) - fp - fn) / len(scores) if scores else None
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def save_threshold_copy(checkpoint: Path | str, threshold: float, user: str, now: datetime | None = None) -> dict[str, Any]:
    """Write CHECKPOINT's copy `<stem>.threshold-<UTC time>.pt` (beside it, never over an existing file) with
    `threshold` and an `audit` entry {action, by, at, from, to, source, source_sha256}; returns the entry
    plus `checkpoint` (the copy's path)."""
    from grdnet.checkpoint import load_checkpoint, save_checkpoint

    source = checkpoint_file(checkpoint)
    state = load_checkpoint(source)
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    entry = {"action": "threshold", "by": user, "at": at.isoformat(), "from": float(state.get("threshold", math.nan)),
             "to": float(threshold), "source": str(source), "source_sha256": sha256_file(source)}
    state["threshold"] = float(threshold)
    state["audit"] = [*state.get("audit", []), entry]
    stamp = at.strftime("%Y%m%dT%H%M%SZ")
    target = source.with_name(f"{source.stem}.threshold-{stamp}.pt")
    counter = 1
    while target.exists():
        counter += 1
        target = source.with_name(f"{source.stem}.threshold-{stamp}-{counter}.pt")
    save_checkpoint(state, target)
    return {**entry, "checkpoint": str(target)}


def _record_json(record: InspectionRecord) -> dict[str, Any]:
    row = asdict(record)
    row["time"] = record.time.isoformat()
    row["threshold"] = record.threshold if math.isfinite(record.threshold) else None
    return row


def add_review_routes(app: Any, predictor: Any, log: InspectionLog | None, input_error: type) -> None:
    """Add the page and its routes to the service's FastAPI `app`; `input_error(status, detail)` is the
    exception the service answers with a one-line {"detail": ...}."""
    from fastapi import Request
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    from grdnet.errors import GrdnetError

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    def filters(decision: str | None, since: str | None, until: str | None, min_score: float | None,
                max_score: float | None) -> dict[str, Any]:
        if log is None:
            raise input_error(404, NO_LOG)
        if decision not in (None, "", "ok", "defect"):
            raise input_error(422, f"decision '{decision}' is not ok or defect; leave it empty for both")
        return {"decision": decision or None, "since": since or None, "until": until or None,
                "min_score": min_score, "max_score": max_score}

    async def read_log(method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await run_in_threadpool(method, *args, **kwargs)
        except GrdnetError as error:  # e.g. a date that is not ISO
            raise input_error(422, str(error)) from None

    @app.get("/api/records")
    async def records(decision: str | None = None, since: str | None = None, until: str | None = None,
                      min_score: float | None = None, max_score: float | None = None, page: int = 1,
                      page_size: int = 25) -> dict:
        chosen = filters(decision, since, until, min_score, max_score)
        page, page_size = max(1, page), min(max(1, page_size), 500)
        total, rows = await read_log(log.page, (page - 1) * page_size, page_size, **chosen)
        return {"total": total, "page": page, "page_size": page_size, "rows": [_record_json(r) for r in rows]}

    @app.get("/api/records.csv")
    async def records_csv(decision: str | None = None, since: str | None = None, until: str | None = None,
                          min_score: float | None = None, max_score: float | None = None) -> Response:
        chosen = filters(decision, since, until, min_score, max_score)
        buffer = io.StringIO()
        write_csv(await read_log(log.query, **chosen), buffer)
        return Response(buffer.getvalue(), media_type="text/csv",
                        headers={"content-disposition": 'attachment; filename="inspections.csv"'})

    @app.get("/api/records/{record_id}")
    async def record(record_id: int) -> dict:
        if log is None:
            raise input_error(404, NO_LOG)
        found = await run_in_threadpool(log.get, record_id)
        if found is None:
            raise input_error(404, f"no inspection record {record_id}; pick a row of the history")
        return _record_json(found)

    @app.get("/api/threshold")
    async def threshold_data() -> dict:
        try:
            scores_csv, scores, labels = await run_in_threadpool(load_test_result, predictor.source)
        except FileNotFoundError as error:
            raise input_error(404, str(error)) from None
        threshold = predictor.threshold
        return {"checkpoint": str(checkpoint_file(predictor.source)), "scores_csv": str(scores_csv),
                "threshold": threshold if math.isfinite(threshold) else None, "scores": scores, "labels": labels}

    @app.post("/api/threshold")
    async def save_threshold(request: Request) -> dict:
        try:
            body = await request.json()
            threshold, user = float(body["threshold"]), str(body["user"]).strip()
        except Exception:
            raise input_error(422, 'send JSON {"threshold": number, "user": "your name"}') from None
        if not math.isfinite(threshold):
            raise input_error(422, f"threshold {threshold} is not a finite number; pick one with the slider")
        if not user:
            raise input_error(422, "user is empty; enter your name so the audit record says who chose the threshold")
        if not predictor.source:
            raise input_error(404, "this service was not started from a checkpoint file; serve one with grdnet serve CHECKPOINT")
        try:
            entry = await run_in_threadpool(save_threshold_copy, predictor.source, threshold, user)
        except GrdnetError as error:
            raise input_error(409, str(error)) from None
        if log is not None:
            await run_in_threadpool(log.add_audit, user, "threshold", entry)
        return entry
