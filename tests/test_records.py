import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from grdnet.records import InspectionLog, InspectionRecord

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def record(i: int, decision: str = "ok", model: str = "grdnet") -> InspectionRecord:
    return InspectionRecord(image_sha256=f"{i:064x}", model=model, checkpoint_sha256="c" * 64, score=i / 10,
                            decision=decision, threshold=0.5, regions=[{"bbox": [0, 0, i, i], "area": i, "peak": i / 10}],
                            image_path=f"/images/{i}.png", time=T0 + timedelta(hours=i))


@pytest.fixture
def log(tmp_path):
    log = InspectionLog(f"sqlite:///{tmp_path / 'log.db'}")
    log.add([record(i, "defect" if i % 3 == 0 else "ok", "draem" if i == 4 else "grdnet") for i in range(10)])
    yield log
    log.close()


def test_add_and_query_round_trip(log):
    rows = log.query()
    assert [r.image_path for r in rows] == [f"/images/{i}.png" for i in range(10)]
    assert rows[2].regions == [{"bbox": [0, 0, 2, 2], "area": 2, "peak": 0.2}] and rows[2].time == T0 + timedelta(hours=2)
    assert [r.id for r in rows] == list(range(1, 11))
    assert log.add(record(10)) == [11]


def test_filters(log):
    assert [r.score for r in log.query(decision="defect")] == [0.0, 0.3, 0.6, 0.9]
    assert [r.model for r in log.query(model="draem")] == ["draem"]
    assert len(log.query(since=T0 + timedelta(hours=3), until="2024-05-01T17:00:00Z")) == 3
    assert len(log.query(since="2024-05-01T14:00:00+02:00")) == 10  # 12:00 UTC
    assert [r.score for r in log.query(limit=2)] == [0.8, 0.9]  # the newest


def test_score_range_pages_and_lookup(log):
    assert [r.score for r in log.query(min_score=0.25, max_score=0.55)] == [0.3, 0.4, 0.5]
    total, newest = log.page(offset=0, limit=3, decision="ok")
    assert total == 6 and [r.score for r in newest] == [0.8, 0.7, 0.5]  # newest first
    assert [r.score for r in log.page(offset=3, limit=3, decision="ok")[1]] == [0.4, 0.2, 0.1]
    assert log.get(newest[0].id).image_path == "/images/8.png" and log.get(12345) is None


def test_audit_entries_keep_who_what_when(log):
    log.add_audit("inspector A", "threshold", {"from": 0.5, "to": 0.4})
    (entry,) = log.audit_entries()
    assert entry["actor"] == "inspector A" and entry["action"] == "threshold" and entry["detail"] == {"from": 0.5, "to": 0.4}
    assert abs(datetime.fromisoformat(entry["time"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_export_csv(log, tmp_path):
    assert log.export_csv(tmp_path / "out.csv", decision="ok") == 6
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 6 and {r["decision"] for r in rows} == {"ok"}
    assert json.loads(rows[0]["regions"])[0]["bbox"] == [0, 0, 1, 1]


WRITER = """
import sys
from grdnet.records import InspectionLog, InspectionRecord
log = InspectionLog(sys.argv[1])
i = 0
while True:
    log.add([InspectionRecord(image_sha256=f"{i:064x}", model="grdnet", checkpoint_sha256="c" * 64, score=0.5,
                              decision="ok", threshold=0.5, regions=[{"bbox": [1, 2, 3, 4], "area": 9, "peak": 0.7}] * 20,
                              image_path="/x/" + str(i)) for _ in range(5)])
    i += 1
    print(i * 5, flush=True)
"""


def test_killed_writer_leaves_only_complete_records(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    child = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 40
    while committed < 100 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        committed = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert committed >= 20, "the writer never got going"
    rows = InspectionLog(url).query()
    assert len(rows) >= committed and len(rows) % 5 == 0  # whole batches only
    for r in rows:
        assert r.image_sha256 and r.model == "grdnet" and r.decision == "ok" and r.score == 0.5 and r.threshold == 0.5
        assert len(r.regions) == 20 and r.image_path.startswith("/x/") and r.time is not None


def test_history_cli(log, tmp_path):
    url = log.url
    run = lambda *args: subprocess.run([sys.executable, "-m", "grdnet", "history", "--db", url, *args],  # noqa: E731
                                       capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    listed = run("--decision", "defect")
    assert listed.returncode == 0, listed.stderr
    assert "inspections (4)" in listed.stdout and "/images/9.png" in listed.stdout and "/images/1.png" not in listed.stdout
    exported = run("--since", "2024-05-01T15:00:00", "--limit", "3", "--csv", str(tmp_path / "h.csv"))
    assert exported.returncode == 0 and "3 records" in exported.stdout
    assert [r["image_path"] for r in csv.DictReader((tmp_path / "h.csv").open())] == [f"/images/{i}.png" for i in (7, 8, 9)]
    bad = run("--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.startswith("error: 'yesterday' is not an ISO date")
    missing = subprocess.run([sys.executable, "-m", "grdnet", "history", "--db", f"sqlite:///{tmp_path / 'none.db'}"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no inspection database" in missing.stderr
