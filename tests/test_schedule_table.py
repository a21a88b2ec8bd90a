"""The scheduler's own plan (schedule.query) read by ScheduleTableSource from a SQLite `plan` table that the
tests change between polls, at an injected clock: a query with no row, a next start seen and then moved on
by the scheduler, a paused job and an overdue next start."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import ConfigError, parse_config
from batch_exporter.database import Database, open_database
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.schedule_table import ScheduleTableSource

TOKYO = ZoneInfo("Asia/Tokyo")
DUE = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # a planned start: 11:00 in Tokyo
LAST = "batch_schedule_last_expected_timestamp_seconds"
NEXT = "batch_schedule_next_expected_timestamp_seconds"
PAUSED = "batch_schedule_paused"


class Clock:
    """The source's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


def wall(moment: datetime | None) -> str | None:
    """`moment` as the naive Tokyo wall time the plan table keeps."""
    return moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else None


@dataclass
class Plan:
    """The plan table of a scheduler, holding at most one row for job 'etl', and the source reading it."""

    path: Path
    clock: Clock
    source: ScheduleTableSource

    def set(self, latest: datetime | None, following: datetime | None, *, paused: bool = False) -> None:
        """The scheduler's row now: its latest planned start, its next one and whether the job is paused."""
        conn = sqlite3.connect(self.path)
        conn.execute("DELETE FROM plan")
        conn.execute("INSERT INTO plan VALUES ('etl', ?, ?, ?)", (wall(latest), wall(following), int(paused)))
        conn.commit()
        conn.close()

    def poll(self, at: datetime) -> Snapshot:
        self.clock.now = at
        return self.source.poll()


@pytest.fixture
def plan(tmp_path: Path) -> Iterator[Plan]:
    path = tmp_path / "plan.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE plan (job TEXT, latest TEXT, next_start TEXT, paused INTEGER)")
    conn.commit()
    conn.close()
    config = parse_config(f"""databases:
  l:
    sqlite: '{path}'
batches:
  etl:
    database: l
    schedule:
      query: "SELECT latest, next_start, paused FROM plan WHERE job = 'etl'"
      timezone: Asia/Tokyo
""", "config.yml")
    schedule = config.batches["etl"].schedule
    assert schedule is not None
    db: Database = open_database("l", sqlite=str(path))
    clock = Clock(DUE)
    try:
        yield Plan(path, clock, ScheduleTableSource("etl", schedule, db, clock=clock))
    finally:
        db.close()


def value(snapshot: Snapshot, name: str) -> float | None:
    return next((s.value for s in snapshot.samples if s.name == name and s.labels == (("batch", "etl"),)), None)


def test_a_query_returning_no_row_fails_the_source(plan: Plan) -> None:
    # a misspelt job name or id: the query runs and finds nothing
    with pytest.raises(SourceError) as caught:
        plan.poll(DUE)
    assert caught.value.reason == "data"
    assert "schedule query: returned no row" in str(caught.value), caught.value


def test_a_next_start_seen_and_then_moved_on_stays_the_last_expected_start(plan: Plan) -> None:
    # the row keeps no latest planned start (SQL Server Agent's next_run only), and the scheduler moves
    # the next start on once it has acted on it
    plan.set(None, DUE)
    snapshot = plan.poll(DUE - timedelta(minutes=10))
    assert value(snapshot, LAST) is None
    assert value(snapshot, NEXT) == DUE.timestamp()

    plan.set(None, DUE + timedelta(days=1))
    snapshot = plan.poll(DUE + timedelta(minutes=30))
    assert value(snapshot, LAST) == DUE.timestamp()
    assert value(snapshot, NEXT) == (DUE + timedelta(days=1)).timestamp()
    assert value(plan.poll(DUE + timedelta(hours=5)), LAST) == DUE.timestamp()

    # a later planned start the row does show wins over the one remembered
    plan.set(DUE + timedelta(hours=6), DUE + timedelta(days=1))
    assert value(plan.poll(DUE + timedelta(hours=7)), LAST) == (DUE + timedelta(hours=6)).timestamp()

    # the next day's start, seen before it passed, becomes the last expected one in its turn
    plan.set(None, DUE + timedelta(days=2))
    snapshot = plan.poll(DUE + timedelta(days=1, minutes=20))
    assert value(snapshot, LAST) == (DUE + timedelta(days=1)).timestamp()
    assert value(snapshot, PAUSED) == 0


def test_a_paused_job_exports_no_expected_start(plan: Plan) -> None:
    plan.set(DUE - timedelta(days=1), DUE + timedelta(hours=1), paused=True)
    snapshot = plan.poll(DUE)
    assert value(snapshot, PAUSED) == 1
    assert value(snapshot, LAST) is None and value(snapshot, NEXT) is None


def test_an_overdue_next_start_is_the_last_expected_start(plan: Plan) -> None:
    plan.set(DUE - timedelta(days=1), DUE - timedelta(minutes=30))
    snapshot = plan.poll(DUE)
    assert value(snapshot, LAST) == (DUE - timedelta(minutes=30)).timestamp()
    assert value(snapshot, NEXT) is None
    assert value(snapshot, PAUSED) == 0


def test_a_schedule_query_without_a_database_is_one_located_error() -> None:
    text = """databases: {}
batches:
  b:
    schedule: {query: "SELECT NULL, NULL, 0"}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yml")
    assert str(caught.value) == ("config.yml:4: batches.b: 'database' is required when 'runs', 'checks' or "
                                 "'schedule.query' are configured")
