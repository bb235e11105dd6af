"""Inspection records: one row per inspected image in a SQL table `inspections` (SQLite by default), and an
`audit` table of who changed what and when (e.g. a threshold saved from the review page).

Each `InspectionLog.add` call is one transaction, so a crash never leaves a half-written record and never
loses a committed one (SQLite runs in WAL mode with `synchronous=FULL`). SQLAlchemy is imported only when
a log is opened, so importing this module (and the `grdnet` CLI) stays fast.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import click

from grdnet.checkpoint import sha256_file
from grdnet.errors import ConfigError, DataError
from grdnet.extras import require

DEFAULT_URL = "sqlite:///inspections.db"
CSV_FIELDS = ("id", "time", "image_sha256", "image_path", "model", "checkpoint_sha256", "score", "decision",
              "threshold", "regions")


@dataclass
class InspectionRecord:
    """One inspected image. `time` is UTC; `regions` is a list of {bbox, area, peak}; `id` is set by the log."""

    image_sha256: str
    model: str
    checkpoint_sha256: str
    score: float
    decision: str
    threshold: float
    regions: list[dict] = field(default_factory=list)
    image_path: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    id: int | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _utc(value: datetime | str | None) -> datetime | None:
    """ISO string or datetime → naive UTC datetime (how the table stores times); naive input is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"'{value}' is not an ISO date/time; use e.g. 2024-05-01 or 2024-05-01T13:00:00Z") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class InspectionLog:
    """A table of `InspectionRecord`s at a SQLAlchemy URL; safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        sa = require("sqlalchemy")

        self.url = url
        is_sqlite = url.startswith("sqlite")
        try:
            self.engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if is_sqlite else {})
        except (sa.exc.ArgumentError, ImportError) as error:
            raise ConfigError(f"{url}: not a usable database URL ({error}); use e.g. sqlite:///inspections.db") from None
        if is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata = sa.MetaData()
        self.table = sa.Table(
            "inspections", metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("time", sa.DateTime, nullable=False, index=True),
            sa.Column("image_sha256", sa.String(64), nullable=False),
            sa.Column("image_path", sa.Text, nullable=True),
            sa.Column("model", sa.String(64), nullable=False),
            sa.Column("checkpoint_sha256", sa.String(64), nullable=False),
            sa.Column("score", sa.Float, nullable=False),
            sa.Column("decision", sa.String(8), nullable=False),
            sa.Column("threshold", sa.Float, nullable=True),
            sa.Column("regions", sa.JSON, nullable=False),
        )
        self.audit = sa.Table(
            "audit", metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("time", sa.DateTime, nullable=False),
            sa.Column("actor", sa.Text, nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("detail", sa.JSON, nullable=False),
        )
        try:
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as error:
            raise DataError(f"{url}: cannot open the inspection database ({type(error).__name__}); check the path and permissions") from None

    def add(self, records: InspectionRecord | Iterable[InspectionRecord]) -> list[int]:
        """Insert one record or a batch in a single transaction; returns the new ids (also set on the records)."""
        batch = [records] if isinstance(records, InspectionRecord) else list(records)
        ids = []
        with self.engine.begin() as connection:
            for record in batch:
                row = asdict(record)
                row.pop("id")
                row["time"] = _utc(record.time)
                row["threshold"] = record.threshold if record.threshold == record.threshold else None  # NaN → NULL
                record.id = connection.execute(self.table.insert().values(**row)).inserted_primary_key[0]
                ids.append(record.id)
        return ids

    def _filtered(self, statement, since=None, until=None, decision=None, model=None, min_score=None, max_score=None):
        t = self.table
        if since is not None:
            statement = statement.where(t.c.time >= _utc(since))
        if until is not None:
            statement = statement.where(t.c.time <= _utc(until))
        if decision is not None:
            statement = statement.where(t.c.decision == decision)
        if model is not None:
            statement = statement.where(t.c.model == model)
        if min_score is not None:
            statement = statement.where(t.c.score >= min_score)
        if max_score is not None:
            statement = statement.where(t.c.score <= max_score)
        return statement

    def _records(self, statement) -> list[InspectionRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(statement).mappings().all()
        return [InspectionRecord(**{**row, "time": row["time"].replace(tzinfo=timezone.utc),
                                    "threshold": float("nan") if row["threshold"] is None else row["threshold"]})
                for row in rows]

    def query(self, since: datetime | str | None = None, until: datetime | str | None = None,
              decision: str | None = None, model: str | None = None, limit: int | None = None,
              min_score: float | None = None, max_score: float | None = None) -> list[InspectionRecord]:
        """Records in time order, filtered by time range [since, until], decision, model and score range
        [min_score, max_score]; `limit` keeps the newest N."""
        import sqlalchemy as sa

        t = self.table
        statement = self._filtered(sa.select(t), since, until, decision, model, min_score, max_score)
        statement = statement.order_by(t.c.time.desc(), t.c.id.desc())
        if limit is not None:
            statement = statement.limit(limit)
        return self._records(statement)[::-1]

    def page(self, offset: int = 0, limit: int = 25, **filters: Any) -> tuple[int, list[InspectionRecord]]:
        """(how many records match `filters` (as for `query`), the `limit` of them after the `offset` newest)."""
        import sqlalchemy as sa

        t = self.table
        counted = self._filtered(sa.select(sa.func.count()).select_from(t), **filters)
        with self.engine.connect() as connection:
            total = int(connection.execute(counted).scalar_one())
        statement = self._filtered(sa.select(t), **filters).order_by(t.c.time.desc(), t.c.id.desc())
        return total, self._records(statement.offset(offset).limit(limit))

    def get(self, record_id: int) -> InspectionRecord | None:
        """The record with this id, or None."""
        import sqlalchemy as sa

        found = self._records(sa.select(self.table).where(self.table.c.id == record_id))
        return found[0] if found else None

    def add_audit(self, actor: str, action: str, detail: dict[str, Any]) -> int:
        """Record that `actor` did `action` (now, UTC) with JSON-safe `detail`; returns the entry's id."""
        with self.engine.begin() as connection:
            row = {"time": _utc(datetime.now(timezone.utc)), "actor": actor, "action": action, "detail": detail}
            return connection.execute(self.audit.insert().values(**row)).inserted_primary_key[0]

    def audit_entries(self) -> list[dict[str, Any]]:
        """Every audit entry, oldest first: {id, time (UTC ISO string), actor, action, detail}."""
        import sqlalchemy as sa

        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(self.audit).order_by(self.audit.c.id)).mappings().all()
        return [{**row, "time": row["time"].replace(tzinfo=timezone.utc).isoformat()} for row in rows]

    def export_csv(self, path: Path | str, **filters: Any) -> int:
        """Write the records matching `filters` (as for `query`) to a CSV file; returns the row count."""
        records = self.query(**filters)
        with Path(path).open("w", newline="") as handle:
            write_csv(records, handle)
        return len(records)

    def close(self) -> None:
        self.engine.dispose()


def write_csv(records: Iterable[InspectionRecord], handle: Any) -> None:
    """Write `records` as CSV (header `CSV_FIELDS`; regions as JSON) to an open text handle."""
    writer = csv.writer(handle)
    writer.writerow(CSV_FIELDS)
    for r in records:
        writer.writerow([r.id, r.time.isoformat(), r.image_sha256, r.image_path or "", r.model, r.checkpoint_sha256,
                         f"{r.score:.6f}", r.decision, f"{r.threshold:.6f}", json.dumps(r.regions)])


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class PredictionRecorder:
    """Logs `grdnet predict` results to the database at `url` batch by batch, as they are scored (one
    transaction per batch: a crash keeps every batch done). Opening it checks the URL before any scoring.

    Call it with `inspection_record` dicts (`write_predictions`' `on_records`); `count` is how many were added.
    """

    def __init__(self, url: str, model: str, checkpoint: Path | str) -> None:
        self.log = InspectionLog(url)
        self.model = model
        self.checkpoint_sha256 = sha256_file(checkpoint)
        self.count = 0

    def __call__(self, records: list[dict]) -> None:
        self.log.add([
            InspectionRecord(image_sha256=sha256_file(r["path"]), image_path=str(Path(r["path"]).resolve()), model=self.model,
                             checkpoint_sha256=self.checkpoint_sha256, score=r["score"], decision=r["decision"],
                             threshold=float("nan") if r["threshold"] is None else r["threshold"], regions=r["regions"])
            for r in records
        ])
        self.count += len(records)

    def close(self) -> None:
        self.log.close()


@click.command()
@click.option("--db", "url", default=DEFAULT_URL, show_default=True, help="Database URL of the inspection log.")
@click.option("--since", help="Only records at or after this ISO date/time (UTC unless it has an offset).")
@click.option("--until", help="Only records at or before this ISO date/time.")
@click.option("--decision", type=click.Choice(["defect", "ok"]))
@click.option("--model", help="Only records of this model name.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N records.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write the records to this CSV file instead of a table.")
def history(url, since, until, decision, model, limit, csv_path) -> None:
    """List or export recorded inspections. Example: grdnet history --decision defect --since 2024-05-01"""
    from rich.console import Console
    from rich.table import Table

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise DataError(f"{url[len('sqlite:///'):]}: no inspection database here; pass --db URL of one written by serve/predict --record")
    log = InspectionLog(url)
    filters = {"since": since, "until": until, "decision": decision, "model": model, "limit": limit}
    if csv_path:
        count = log.export_csv(csv_path, **filters)
        click.echo(f"{count} records written to {csv_path}")
        return
    records = log.query(**filters)
    table = Table(title=f"inspections ({len(records)})")
    for column in ("id", "time (UTC)", "decision", "score", "threshold", "regions", "model", "image"):
        table.add_column(column, justify="right" if column in ("id", "score", "threshold", "regions") else "left")
    for r in records:
        table.add_row(str(r.id), r.time.strftime("%Y-%m-%d %H:%M:%S"), r.decision, f"{r.score:.4f}", f"{r.threshold:.4f}",
                      str(len(r.regions)), r.model, r.image_path or r.image_sha256[:12])
    Console().print(table)
