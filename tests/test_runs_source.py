"""The runs source against SQLite run tables of unusual shapes, and across polls."""
from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.runs import RunsSource

pytestmark = pytest.mark.clock

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def source(tmp_path: Path, rows: list[tuple[object, ...]], runs_yaml: str, clock: list[float]) -> RunsSource:
    db = tmp_path / "runs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE batch_run (run_id INTEGER, status TEXT, started_at, ended_at)")
    conn.executemany("INSERT INTO batch_run VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    text = f"databases: {{l: {{sqlite: {db}}}}}\nbatches:\n  b:\n    database: l\n    runs: {runs_yaml}\n"
    config = parse_config(text, "x.yml")
    return RunsSource("b", config.batches["b"], open_database("l", sqlite=str(db)), text_timestamps=True,
                      clock=lambda: clock[0])


def value(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted({"batch": "b", **labels}.items()))
    return next((s.value for s in snapshot.samples if s.name == name and tuple(sorted(s.labels)) == wanted), None)


RUNS = "{table: batch_run, status: {success: [OK], failed: [NG]}, lookback: 1d}"


def test_epoch_number_timestamps_are_found_in_the_window(tmp_path: Path) -> None:
    start = (NOW - timedelta(hours=1)).timestamp()
    src = source(tmp_path, [(1, "OK", start, start + 1800)], RUNS, [NOW.timestamp()])
    snapshot = src.poll()
    assert value(snapshot, "batch_runs", status="success") == 1
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == start


@pytest.mark.parametrize("separator", [" ", "T"])
def test_iso_text_timestamps_either_separator_respect_the_window(tmp_path: Path, separator: str) -> None:
    def text(moment: datetime) -> str:
        return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")

    inside, outside = NOW - timedelta(hours=23), NOW - timedelta(hours=25)  # lookback is 1 day (UTC table)
    rows = [(1, "OK", text(outside), text(outside)), (2, "NG", text(inside), text(inside))]
    snapshot = source(tmp_path, rows, RUNS, [NOW.timestamp()]).poll()
    assert value(snapshot, "batch_runs", status="failed") == 1
    assert value(snapshot, "batch_runs", status="success") == 0  # the run 25 hours ago is outside


def test_last_success_never_goes_back_when_it_leaves_the_window(tmp_path: Path) -> None:
    old = NOW - timedelta(days=3)  # outside the 1-day window: found by the fallback query
    clock = [NOW.timestamp()]
    src = source(tmp_path, [(1, "OK", old.timestamp(), old.timestamp() + 60)], RUNS, clock)
    assert value(src.poll(), "batch_run_last_success_timestamp_seconds") == old.timestamp() + 60
    recent = NOW + timedelta(hours=1)
    conn = sqlite3.connect(tmp_path / "runs.db")
    conn.execute("INSERT INTO batch_run VALUES (2, 'OK', ?, ?)", (recent.timestamp(), recent.timestamp() + 60))
    conn.commit()
    conn.close()
    clock[0] = (recent + timedelta(hours=1)).timestamp()
    assert value(src.poll(), "batch_run_last_success_timestamp_seconds") == recent.timestamp() + 60
    clock[0] += 2 * 86400  # the new success has left the window too
    assert value(src.poll(), "batch_run_last_success_timestamp_seconds") == recent.timestamp() + 60


def test_a_user_query_ending_in_a_line_comment(tmp_path: Path) -> None:
    start = (NOW - timedelta(hours=1)).timestamp()
    runs = ('{query: "SELECT run_id, status, started_at, ended_at FROM batch_run -- every job", '
            "status: {success: [OK], failed: [NG]}, lookback: 1d}")
    snapshot = source(tmp_path, [(1, "NG", start, start + 60)], runs, [NOW.timestamp()]).poll()
    assert value(snapshot, "batch_run_last_status", status="failed") == 1
