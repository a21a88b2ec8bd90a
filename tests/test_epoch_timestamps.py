"""Run tables that keep started_at/ended_at as epoch numbers, on SQLite, PostgreSQL and MariaDB (issue 9, item 9).

Each table holds the same runs at fixed instants, stored as whole epoch seconds, epoch milliseconds or
fractional seconds. The exporter, at an injected clock (or under faketime as a process), must export
exactly those instants, keep the lookback boundary to the unit, and refuse a declaration the stored
values contradict with an error naming the field and what to write.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import parse_config
from batch_exporter.database import Database, open_database
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.run_table import window_param
from batch_exporter.sources.runs import RunsSource
from db_servers import odbc_connection_string, requires_odbc, scratch_table
from exporter_process import parse_exposition

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOKBACK = timedelta(days=1)
TOKYO = ZoneInfo("Asia/Tokyo")
KINDS = [pytest.param("sqlite", id="sqlite"),
         pytest.param("postgresql", marks=requires_odbc("postgresql"), id="postgresql"),
         pytest.param("mariadb", marks=requires_odbc("mariadb"), id="mariadb")]


@dataclass(frozen=True)
class Storage:
    """How a table keeps its times: the `runs.timestamps` setting, the column type per database, and the
    finest step its values can express."""

    setting: str | None  # None: the key left out (auto)
    unit: str  # seconds, milliseconds or fraction (decimal seconds, 3 places)
    column_type: dict[str, str]

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=1) if self.unit == "seconds" else timedelta(milliseconds=1)

    def encode(self, moment: datetime | None) -> object:
        if moment is None:
            return None
        if self.unit == "milliseconds":
            return (moment - EPOCH) // timedelta(milliseconds=1)
        if self.unit == "seconds":
            assert moment.microsecond == 0
            return (moment - EPOCH) // timedelta(seconds=1)
        return Decimal((moment - EPOCH) // timedelta(milliseconds=1)) / 1000


BIGINT = {"sqlite": "INTEGER", "postgresql": "BIGINT", "mariadb": "BIGINT"}
MILLISECONDS = Storage("epoch_milliseconds", "milliseconds", BIGINT)
SECONDS_DECLARED = Storage("epoch_seconds", "seconds", BIGINT)
SECONDS_AUTO = Storage(None, "seconds", BIGINT)
FRACTION_AUTO = Storage(None, "fraction", {"sqlite": "REAL", "postgresql": "NUMERIC(16,3)", "mariadb": "DECIMAL(16,3)"})


@dataclass(frozen=True)
class Run:
    run_id: int
    status: str
    started_at: datetime
    ended_at: datetime | None


def history(storage: Storage) -> list[Run]:
    """A success outside the window (found by the fallback query), one run a step before the window's
    boundary, one exactly on it, a failed run and a running one; fractions where the storage keeps them."""
    fraction = timedelta(0) if storage.unit == "seconds" else timedelta(milliseconds=250)
    boundary = NOW - LOOKBACK
    return [
        Run(1, "OK", NOW - timedelta(days=3), NOW - timedelta(days=3) + timedelta(minutes=10)),
        Run(2, "NG", boundary - storage.step, boundary - storage.step + timedelta(minutes=1)),
        Run(3, "NG", boundary, boundary + timedelta(minutes=5)),
        Run(4, "NG", NOW - timedelta(hours=20) + fraction, NOW - timedelta(hours=19, minutes=31) - fraction),
        Run(5, "RUN", NOW - timedelta(minutes=90) + fraction, None),
    ]


@contextmanager
def run_table(kind: str, storage: Storage, tmp_path: Path, runs: list[Run]) -> Iterator[tuple[str, Database]]:
    """(table name, read-only Database) of a run table of `kind` holding `runs` in `storage`."""
    columns = f"run_id INT, status VARCHAR(8), started_at {storage.column_type[kind]}, " \
              f"ended_at {storage.column_type[kind]}"
    rows = [(r.run_id, r.status, storage.encode(r.started_at), storage.encode(r.ended_at)) for r in runs]
    if kind == "sqlite":
        path = tmp_path / "runs.db"
        with sqlite3.connect(path) as conn:
            conn.execute(f"CREATE TABLE batch_run ({columns})")
            conn.executemany("INSERT INTO batch_run VALUES (?, ?, ?, ?)",
                             [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in rows])
        conn.close()
        db = open_database("runs", sqlite=str(path))
        try:
            yield "batch_run", db
        finally:
            db.close()
        return
    with scratch_table(kind, columns, rows) as table:
        db = open_database("runs", odbc=odbc_connection_string(kind))
        try:
            yield table, db
        finally:
            db.close()


def source(table: str, db: Database, setting: str | None, kind: str) -> RunsSource:
    declared = f", timestamps: {setting}" if setting else ""
    database = "{sqlite: /unused.db}" if kind == "sqlite" else "{odbc: 'Driver={unused}'}"
    text = (f"databases: {{runs: {database}}}\nbatches:\n  b:\n    database: runs\n"
            f"    runs: {{table: {table}, status: {{success: [OK], failed: [NG], running: [RUN]}}, "
            f"lookback: 1d{declared}}}\n")
    config = parse_config(text, "epoch.yml")
    return RunsSource("b", config.batches["b"], db, text_timestamps=kind == "sqlite", clock=NOW.timestamp)


def metric(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted({"batch": "b", **labels}.items()))
    return next((s.value for s in snapshot.samples if s.name == name and tuple(sorted(s.labels)) == wanted), None)


def assert_history_exported(snapshot: Snapshot, runs: list[Run]) -> None:
    old_success, _, boundary, failed, running = runs
    assert failed.ended_at is not None and old_success.ended_at is not None
    assert metric(snapshot, "batch_run_last_start_timestamp_seconds") == running.started_at.timestamp()
    assert metric(snapshot, "batch_run_last_end_timestamp_seconds") == failed.ended_at.timestamp()
    assert metric(snapshot, "batch_run_last_duration_seconds") == (failed.ended_at - failed.started_at).total_seconds()
    assert metric(snapshot, "batch_run_last_success_timestamp_seconds") == old_success.ended_at.timestamp()
    assert metric(snapshot, "batch_run_running_seconds") == (NOW - running.started_at).total_seconds()
    assert metric(snapshot, "batch_run_last_status", status="running") == 1
    # the boundary run is in the window, the one a step earlier is not, nor the old success
    assert metric(snapshot, "batch_runs", status="failed") == 2
    assert metric(snapshot, "batch_runs", status="success") == 0
    assert boundary.started_at == NOW - LOOKBACK


# SQLite read whole and fractional epoch seconds before runs.timestamps existed (tests/test_runs_source.py)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("storage", [
    pytest.param(MILLISECONDS, id="epoch_milliseconds"),
    pytest.param(SECONDS_DECLARED, id="epoch_seconds"),
    pytest.param(SECONDS_AUTO, id="auto-bigint"),
    pytest.param(FRACTION_AUTO, id="auto-decimal"),
])
def test_epoch_columns_give_the_stored_instants(kind: str, storage: Storage, tmp_path: Path) -> None:
    if kind == "sqlite" and storage.setting is None:
        pytest.skip("SQLite numbers under auto are covered by tests/test_runs_source.py")
    runs = history(storage)
    with run_table(kind, storage, tmp_path, runs) as (table, db):
        snapshot = source(table, db, storage.setting, kind).poll()
    assert_history_exported(snapshot, runs)


@pytest.mark.parametrize("kind", KINDS[1:])  # SQLite sampled its stored type before runs.timestamps existed
def test_an_empty_epoch_table_is_up_and_its_first_run_is_seen(kind: str, tmp_path: Path) -> None:
    """Under auto nothing tells the column's type before the first run: the source must neither fail
    (PostgreSQL refused a timestamp boundary for a BIGINT column) nor stay blind once a run arrives
    (MariaDB compared the two without matching any row)."""
    storage = SECONDS_AUTO
    run = history(storage)[-1]
    with run_table(kind, storage, tmp_path, []) as (table, db):
        src = source(table, db, None, kind)
        assert metric(src.poll(), "batch_run_last_start_timestamp_seconds") is None
        insert(kind, tmp_path, table, (run.run_id, run.status, storage.encode(run.started_at), None))
        snapshot = src.poll()
    assert metric(snapshot, "batch_run_last_start_timestamp_seconds") == run.started_at.timestamp()
    assert metric(snapshot, "batch_run_running") == 1


def insert(kind: str, tmp_path: Path, table: str, row: tuple[object, ...]) -> None:
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "runs.db") as conn:
            conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", row)
        conn.close()
        return
    from db_servers import admin_connection

    conn = admin_connection(kind)
    try:
        conn.cursor().execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", *row)
    finally:
        conn.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stored, setting, fragments", [
    pytest.param(MILLISECONDS, None, ["13-digit numbers", "write `timestamps: epoch_milliseconds`"],
                 id="milliseconds-under-auto"),
    pytest.param(MILLISECONDS, "epoch_seconds", ["13-digit numbers", "write `timestamps: epoch_milliseconds`"],
                 id="milliseconds-declared-seconds"),
    pytest.param(SECONDS_DECLARED, "epoch_milliseconds", ["10-digit numbers", "write `timestamps: epoch_seconds`"],
                 id="seconds-declared-milliseconds"),
])
def test_a_contradicted_declaration_is_refused_with_what_to_write(
        kind: str, stored: Storage, setting: str | None, fragments: list[str], tmp_path: Path) -> None:
    """Milliseconds read as seconds would be the year 57000 (or a failed poll); seconds read as
    milliseconds would be January 1970: neither may pass silently."""
    with run_table(kind, stored, tmp_path, history(stored)) as (table, db), pytest.raises(SourceError) as caught:
        source(table, db, setting, kind).poll()
    message = str(caught.value)
    assert caught.value.reason == "data"
    assert message.startswith("batches.b.runs.timestamps: column started_at holds "), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("kind", KINDS)
def test_epoch_declared_for_a_timestamp_column_says_to_leave_it_out(kind: str, tmp_path: Path) -> None:
    column_type = {"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ", "mariadb": "DATETIME"}[kind]
    with run_table(kind, Storage(None, "seconds", {kind: column_type}), tmp_path, []) as (table, db):
        insert(kind, tmp_path, table, (1, "OK", "2026-11-28 01:30:04", "2026-11-28 01:58:47"))
        with pytest.raises(SourceError) as caught:
            source(table, db, "epoch_seconds", kind).poll()
    message = str(caught.value)
    assert message.startswith("batches.b.runs.timestamps: epoch_seconds declares epoch numbers, but column "
                              "started_at holds values of type "), message
    assert "leave timestamps out (auto)" in message


def test_window_boundary_is_an_integer_in_the_declared_unit() -> None:
    start = datetime(2026, 11, 27, 3, 0, 0, 999_999, tzinfo=UTC)  # rounded down, never up
    seconds = (datetime(2026, 11, 27, 3, tzinfo=UTC) - EPOCH) // timedelta(seconds=1)
    assert window_param(start, TOKYO, text=False, timestamps="epoch_seconds") == seconds
    assert window_param(start, TOKYO, text=True, timestamps="epoch_milliseconds") == seconds * 1000 + 999
    for sample in (seconds, float(seconds), Decimal(seconds) / 7):
        boundary = window_param(start, TOKYO, text=False, sample=sample)
        assert boundary == seconds and type(boundary) is int
    # a text sample over ODBC gets text in its own shape, a datetime one the naive wall time
    assert window_param(start, TOKYO, text=False, sample="2026-11-27T12:00:00") == "2026-11-27T12:00:00"
    assert window_param(start, TOKYO, text=False, sample=datetime(2026, 1, 1)) == datetime(2026, 11, 27, 12, 0, 0,
                                                                                            999_999)


# --- the exporter as a process, at a fixed time -----------------------------------------------------------

def faketime_once(config: Path) -> subprocess.CompletedProcess[str]:
    """`batch-exporter once` with its clock at NOW (faketime, in UTC whatever the machine's zone)."""
    faketime = shutil.which("faketime")
    assert faketime, "faketime fixes the exporter's clock (apt-get install faketime; make test installs it)"
    return subprocess.run([faketime, "-m", NOW.strftime("%Y-%m-%d %H:%M:%S"), sys.executable, "-m",
                           "batch_exporter.cli", "once", "-c", str(config)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": "UTC"})


@pytest.mark.parametrize("kind", KINDS)
def test_once_exports_epoch_millisecond_runs_and_refuses_them_under_auto(kind: str, tmp_path: Path) -> None:
    runs = history(MILLISECONDS)
    with run_table(kind, MILLISECONDS, tmp_path, runs) as (table, _):
        if kind == "sqlite":
            database = f"sqlite: '{tmp_path / 'runs.db'}'"
        else:
            database = f"odbc: \"{odbc_connection_string(kind)}\""
        config = tmp_path / "epoch.yml"
        results = []
        for declared in ("\n      timestamps: epoch_milliseconds", ""):
            config.write_text(
                f"databases:\n  runs:\n    {database}\nbatches:\n  card-auth:\n    database: runs\n    runs:\n"
                f"      table: {table}\n      status: {{success: [OK], failed: [NG], running: [RUN]}}\n"
                f"      lookback: 1d{declared}\n", encoding="utf-8")
            results.append(faketime_once(config))
    declared_run, auto_run = results
    assert declared_run.returncode == 0, declared_run.stderr
    series = parse_exposition(declared_run.stdout)
    old_success, _, _, failed, running = runs
    assert failed.ended_at is not None and old_success.ended_at is not None
    for name, moment in (("batch_run_last_start_timestamp_seconds", running.started_at),
                         ("batch_run_last_end_timestamp_seconds", failed.ended_at),
                         ("batch_run_last_success_timestamp_seconds", old_success.ended_at)):
        assert series[(name, (("batch", "card-auth"),))] == moment.timestamp(), name
    # faketime starts the clock at NOW and lets it run: the window's exact boundary is tested above
    assert series[("batch_run_running_seconds", (("batch", "card-auth"),))] >= 90 * 60
    assert auto_run.returncode == 1
    assert "batches.card-auth.runs.timestamps: column started_at holds 13-digit numbers" in auto_run.stderr
    assert "write `timestamps: epoch_milliseconds`" in auto_run.stderr


# --- every column type the guide lists, as the guide lists it ----------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "operators-guide.md"
GUIDE_KINDS = {"PostgreSQL": "postgresql", "MariaDB / MySQL": "mariadb", "SQLite": "sqlite"}
# MariaDB needs a length where the guide names the bare type
SIZED = {("mariadb", "VARCHAR"): "VARCHAR(32)", ("mariadb", "CHAR"): "CHAR(19)"}
START = datetime(2026, 11, 28, 1, 30, 4, tzinfo=TOKYO)  # 2026-11-27 16:30:04 UTC, inside the 1-day window


def documented_types() -> list[tuple[str, str, str]]:
    """(kind, category, column type) for each type in the guide's table of start and end column types."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("### Start and end times: column types per database"):]
    section = section[:section.index("\n#", 1)]
    found = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] not in GUIDE_KINDS:
            continue
        kind = GUIDE_KINDS[cells[0]]
        for category, cell in zip(("datetime", "text", "epoch"), cells[1:], strict=True):
            for column_type in re.findall(r"`([A-Z][A-Z0-9 ]*[A-Z0-9])`", cell):
                found.append((kind, category, column_type))
    found.append(("sqlite", "text", "TEXT"))  # the SQLite row describes the text, not a type
    return found


DOCUMENTED = documented_types()


def stored_form(kind: str, category: str, column_type: str, moment: datetime) -> tuple[object, str]:
    """(value to insert, runs.timezone) for `moment` in a column of that type."""
    wall = moment.astimezone(TOKYO).replace(tzinfo=None)
    if category == "epoch":
        seconds = (moment - EPOCH) // timedelta(seconds=1)
        return (float(seconds) if column_type in ("REAL", "DOUBLE", "DOUBLE PRECISION") else seconds), "UTC"
    if column_type == "DATE":
        return wall.date(), "Asia/Tokyo"
    if category == "text":
        return wall.isoformat(sep=" "), "Asia/Tokyo"
    if column_type == "TIMESTAMPTZ" or (kind == "mariadb" and column_type == "TIMESTAMP"):
        return moment.astimezone(UTC).replace(tzinfo=None), "UTC"  # inserted in a UTC session below
    return wall, "Asia/Tokyo"


@pytest.mark.parametrize("kind, category, column_type", [
    pytest.param(k, c, t, marks=[requires_odbc(k)] if k != "sqlite" else [], id=f"{k}-{t}") for k, c, t in DOCUMENTED
])
def test_every_documented_column_type_gives_the_stored_instant(kind: str, category: str, column_type: str,
                                                              tmp_path: Path) -> None:
    assert {k for k, _, _ in DOCUMENTED} == set(GUIDE_KINDS.values())
    start, end = START, START + timedelta(minutes=28, seconds=43)
    start_value, timezone = stored_form(kind, category, column_type, start)
    end_value, _ = stored_form(kind, category, column_type, end)
    if column_type == "DATE":  # a date is midnight of that day
        start = end = start.replace(hour=0, minute=0, second=0)
    sql_type = SIZED.get((kind, column_type), column_type)
    row = (1, "OK", start_value, end_value)
    with run_table(kind, Storage(None, "seconds", {kind: sql_type}), tmp_path, []) as (table, db):
        insert_in_utc_session(kind, tmp_path, table, row)
        text = (f"databases: {{runs: {{sqlite: /unused.db}}}}\nbatches:\n  b:\n    database: runs\n"
                f"    runs: {{table: {table}, status: {{success: [OK], failed: [NG]}}, lookback: 1d, "
                f"timezone: {timezone}}}\n")
        config = parse_config(text, "types.yml")
        snapshot = RunsSource("b", config.batches["b"], db, text_timestamps=kind == "sqlite",
                              clock=NOW.timestamp).poll()
    assert metric(snapshot, "batch_run_last_start_timestamp_seconds") == start.timestamp()
    assert metric(snapshot, "batch_run_last_success_timestamp_seconds") == end.timestamp()


def insert_in_utc_session(kind: str, tmp_path: Path, table: str, row: tuple[object, ...]) -> None:
    if kind == "sqlite":
        insert(kind, tmp_path, table, row)
        return
    from db_servers import admin_connection

    conn = admin_connection(kind)
    try:
        cursor = conn.cursor()
        cursor.execute("SET time_zone = '+00:00'" if kind == "mariadb" else "SET TIME ZONE 'UTC'")
        cursor.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", *row)
    finally:
        conn.close()
