"""Run keys beyond a daily business date: scheduled slots (columns.run_key), attempt counters, queued runs,
durations instead of end times and column expressions, read from SQLite run tables through the exporter's
runs source and rerun-check; the scheduler's plan (schedule_table) and `--explain` as pure functions."""
from __future__ import annotations

import json
import math
import re
import shlex
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.app import build_sources, open_databases
from batch_exporter.config import Config, ConfigError, parse_config
from batch_exporter.database import open_database
from batch_exporter.explain import explain
from batch_exporter.presets import expand
from batch_exporter.rerun import Evidence, gather, judge
from batch_exporter.runsummary import Expected, parse_run_row
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.batchinfo import BatchInfo
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.run_table import RunTable
from batch_exporter.sources.runs import RunsSource
from batch_exporter.sources.schedule_table import ScheduleTableSource, planned_starts

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 11:00 on 2026-11-27 in Tokyo
STATUS = "{success: [OK], failed: [NG], running: [RUN]}"
WITH_QUEUED = "{success: [OK], failed: [NG], running: [RUN], queued: [WAIT]}"
MAPPING: dict[str, Sequence[str]] = {"success": ["OK"], "failed": ["NG"], "running": ["RUN"]}


@dataclass(frozen=True)
class Run:
    """One row of the `job_runs` table; times as SQLite keeps them (text or epoch numbers)."""

    run_id: int
    status: str
    started_at: object = None
    ended_at: object = None
    slot: object = None
    biz: object = None
    clear_number: int | None = None
    queued_at: object = None
    seconds: float | None = None
    created_at: object = None


COLUMN_TYPES = {"run_id": "INTEGER", "slot": "TIMESTAMP", "biz": "TEXT", "status": "TEXT",
                "clear_number": "INTEGER", "seconds": "REAL"}  # the others untyped: text stays text, numbers numbers


def tokyo(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TOKYO)


def wall(moment: datetime, tz: ZoneInfo = TOKYO) -> str:
    """`moment` as the naive wall time in `tz` that SQLite keeps as DATETIME text."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def write_runs(db: Path, runs: Sequence[Run], *, without: tuple[str, ...] = ()) -> None:
    """Add `runs` to `db`'s job_runs table, created (without the columns `without` names) when missing."""
    kept = [f.name for f in fields(Run) if f.name not in without]
    conn = sqlite3.connect(db)
    definitions = ", ".join(f"{name} {COLUMN_TYPES.get(name, '')}".strip() for name in kept)
    conn.execute(f"CREATE TABLE IF NOT EXISTS job_runs ({definitions})")
    marks = ", ".join("?" for _ in kept)
    conn.executemany(f"INSERT INTO job_runs ({', '.join(kept)}) VALUES ({marks})",
                     [tuple(getattr(run, name) for name in kept) for run in runs])
    conn.commit()
    conn.close()


def write_task_states(db: Path, states: Sequence[tuple[int, str, int]]) -> None:
    """(run id, state, how many) rows of a task_instance table, one per task."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE task_instance (run_id INTEGER, state TEXT)")
    for run_id, state, count in states:
        conn.executemany("INSERT INTO task_instance VALUES (?, ?)", [(run_id, state)] * count)
    conn.commit()
    conn.close()


def config_text(db: Path, columns: Mapping[str, str], *, status: str = STATUS, timezone: str = "Asia/Tokyo",
                lookback: str = "1d", batch_extra: str = "", where: str | None = None) -> str:
    return f"""databases:
  l:
    sqlite: '{db}'
batches:
  b:
    database: l
    runs:
      table: job_runs{f"{chr(10)}      where: {where}" if where else ""}
      columns: {json.dumps(dict(columns))}
      status: {status}
      lookback: {lookback}
      timezone: {timezone}{batch_extra}
"""


def load(text: str) -> Config:
    return parse_config(text, "config.yml")


def source(db: Path, text: str, now: datetime) -> RunsSource:
    """The runs source as the exporter builds it for a SQLite database, at the fixed instant `now`."""
    return RunsSource("b", load(text).batches["b"], open_database("l", sqlite=str(db)), text_timestamps=True,
                      clock=now.timestamp)


def value(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted({"batch": "b", **labels}.items()))
    return next((s.value for s in snapshot.samples if s.name == name and tuple(sorted(s.labels)) == wanted), None)


def business_dates(snapshot: Snapshot) -> list[str]:
    """The business_date labels of batch_run_business_date_info."""
    return [dict(s.labels)["business_date"] for s in snapshot.samples if s.name == "batch_run_business_date_info"]


def evidence(text: str, now: datetime) -> Evidence:
    return gather(load(text), "b", now=now)


# --- scheduled slots ---------------------------------------------------------------------------------


def test_a_fifteen_minute_schedule_counts_attempts_per_slot(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    slots = [tokyo(27, 9) + timedelta(minutes=15 * i) for i in range(8)]  # 09:00 ... 10:45
    write_runs(db, [Run(i, "NG" if i == 8 else "OK", wall(slot + timedelta(minutes=1)),
                        wall(slot + timedelta(minutes=6)), slot=wall(slot))
                    for i, slot in enumerate(slots, 1)])
    src = source(db, config_text(db, {"run_key": "slot"}), NOW)
    snapshot = src.poll()
    assert value(snapshot, "batch_run_attempts") == 1
    assert business_dates(snapshot) == ["2026-11-27T10:45:00+09:00"]
    assert value(snapshot, "batch_runs", status="success") == 7
    assert value(snapshot, "batch_runs", status="failed") == 1

    rerun_start = tokyo(27, 10, 52)
    write_runs(db, [Run(9, "OK", wall(rerun_start), wall(rerun_start + timedelta(minutes=4)), slot=wall(slots[-1]))])
    snapshot = src.poll()
    assert value(snapshot, "batch_run_attempts") == 2
    assert business_dates(snapshot) == ["2026-11-27T10:45:00+09:00"]
    assert value(snapshot, "batch_run_last_status", status="success") == 1
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == rerun_start.timestamp()


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("first_slot", "keys"), [
    # fall back: 01:00-01:59 happens twice, EDT (-04:00) then EST (-05:00)
    (datetime(2026, 11, 1, 5, 0, tzinfo=UTC),
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:15:00-04:00", "2026-11-01T01:30:00-04:00",
      "2026-11-01T01:45:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00",
      "2026-11-01T01:30:00-05:00"]),
    # spring forward: 02:00-02:59 does not happen
    (datetime(2026, 3, 8, 6, 30, tzinfo=UTC),
     ["2026-03-08T01:30:00-05:00", "2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00",
      "2026-03-08T03:15:00-04:00"]),
], ids=["fall-back", "spring-forward"])
def test_slots_stored_as_utc_instants_across_daylight_saving_changes(
        tmp_path: Path, first_slot: datetime, keys: list[str]) -> None:
    db = tmp_path / "runs.db"
    slots = [first_slot + timedelta(minutes=15 * i) for i in range(len(keys))]
    write_runs(db, [Run(i, "OK", (slot + timedelta(minutes=1)).timestamp(), (slot + timedelta(minutes=5)).timestamp(),
                        slot=utc_text(slot)) for i, slot in enumerate(slots, 1)])
    now = slots[-1] + timedelta(minutes=10)
    text = config_text(db, {"run_key": "slot"}, timezone="America/New_York")
    snapshot = source(db, text, now).poll()
    # the latest slot by instant, not by its local spelling (01:45-04:00 sorts after 01:30-05:00 as text)
    assert business_dates(snapshot) == [keys[-1]]
    assert value(snapshot, "batch_run_attempts") == 1
    ev = evidence(text, now)
    assert ev.business_date == keys[-1] and [a.run_id for a in ev.attempts] == [str(len(keys))]
    # one attempt for each slot, the twice-lived 01:30 included: newest first
    assert ev.recent_dates == [(key, 1) for key in reversed(keys)]


# --- a business date from a timestamp ------------------------------------------------------------


def test_an_aware_business_date_is_cut_to_its_date_in_the_run_timezone(tmp_path: Path) -> None:
    # 23:30 UTC on the 26th is 08:30 on the 27th in Tokyo
    aware = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    raw = (1, aware, "OK", aware, aware + timedelta(minutes=5))
    assert parse_run_row(raw, MAPPING, TOKYO)[0].business_date == "2026-11-27"
    naive = (1, aware.replace(tzinfo=None), "OK", aware, aware + timedelta(minutes=5))
    assert parse_run_row(naive, MAPPING, TOKYO)[0].business_date == "2026-11-26"  # a naive one is read in Tokyo

    db = tmp_path / "runs.db"
    start = tokyo(27, 8, 31)
    write_runs(db, [Run(1, "OK", wall(start), wall(start + timedelta(minutes=5)), biz="2026-11-26T23:30:00+00:00")])
    text = config_text(db, {"business_date": "biz"})
    assert business_dates(source(db, text, NOW).poll()) == ["2026-11-27"]
    assert evidence(text, NOW).business_date == "2026-11-27"


# --- attempt counters ------------------------------------------------------------------------------


@pytest.mark.parametrize(("clear_numbers", "attempts"), [
    ([2], 3),  # one row, cleared twice
    ([0, 3], 4),  # the counter says more than the rows
    ([0, 0, 0], 3),  # the rows say more than the counter
    ([None, None], 2),  # no counter kept: the rows
])
def test_an_attempt_counter_on_the_row(tmp_path: Path, clear_numbers: list[int | None], attempts: int) -> None:
    db = tmp_path / "runs.db"
    starts = [tokyo(27, 9) + timedelta(minutes=20 * i) for i in range(len(clear_numbers))]
    write_runs(db, [Run(i, "NG", wall(start), wall(start + timedelta(minutes=5)), biz="2026-11-27", clear_number=n)
                    for i, (start, n) in enumerate(zip(starts, clear_numbers, strict=True), 1)])
    text = config_text(db, {"business_date": "biz", "attempt": "clear_number + 1"})
    assert value(source(db, text, NOW).poll(), "batch_run_attempts") == attempts
    found = [r for r in judge(evidence(text, NOW)).rules if r.rule == "run_found"]
    assert [r.result for r in found] == ["ok"]
    assert found[0].message.startswith(f"{attempts} attempts for business date 2026-11-27")


# --- queued runs -----------------------------------------------------------------------------------


def test_a_queued_run_in_the_window_is_seen_and_an_older_one_is_not(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    done, waiting, stale = tokyo(27, 10, 30), tokyo(27, 10, 45), tokyo(25, 10)
    write_runs(db, [
        Run(1, "OK", wall(done + timedelta(minutes=1)), wall(done + timedelta(minutes=6)), slot=wall(done)),
        Run(2, "WAIT", None, None, slot=wall(waiting), queued_at=wall(waiting + timedelta(seconds=2))),
        Run(3, "WAIT", None, None, slot=wall(stale), queued_at=wall(stale + timedelta(seconds=2))),  # 2 days ago
    ])
    text = config_text(db, {"run_key": "slot", "queued_at": "queued_at"}, status=WITH_QUEUED)
    snapshot = source(db, text, NOW).poll()
    assert value(snapshot, "batch_run_queued") == 1
    assert value(snapshot, "batch_runs", status="queued") == 1
    assert value(snapshot, "batch_run_last_status", status="queued") == 1
    assert value(snapshot, "batch_run_last_status", status="success") == 0
    assert business_dates(snapshot) == ["2026-11-27T10:45:00+09:00"]
    assert value(snapshot, "batch_run_running") == 0
    # the queued run has no start: the latest start is still the finished run's
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == (done + timedelta(minutes=1)).timestamp()


def test_rerun_check_is_unsafe_while_a_cleared_run_of_the_key_is_queued(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    slot = tokyo(27, 10, 30)
    write_runs(db, [
        Run(1, "NG", wall(slot + timedelta(minutes=1)), wall(slot + timedelta(minutes=9)), slot=wall(slot)),
        Run(2, "WAIT", None, None, slot=wall(slot), queued_at=wall(tokyo(27, 10, 55))),  # cleared: queued again
    ])
    text = config_text(db, {"run_key": "slot", "queued_at": "queued_at"}, status=WITH_QUEUED)
    ev = evidence(text, NOW)
    assert ev.run_table_error is None and [a.run_id for a in ev.attempts] == ["1", "2"]
    j = judge(ev)
    assert j.verdict == "unsafe"
    blocking = [r for r in j.rules if r.rule == "nothing_running"]
    assert [r.result for r in blocking] == ["unsafe"]
    assert "run 2" in blocking[0].message and "waiting to start" in blocking[0].message


# --- the latest run is that of the latest key -------------------------------------------------------


def test_rerunning_an_old_business_date_does_not_hide_a_missed_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    yesterday = tokyo(26, 1)
    write_runs(db, [
        Run(1, "OK", wall(tokyo(25, 1)), wall(tokyo(25, 1, 30)), biz="2026-11-25"),
        Run(2, "OK", wall(yesterday), wall(yesterday + timedelta(minutes=30)), biz="2026-11-26"),
        # today's 01:00 run never started; an operator re-runs the 25th now
        Run(3, "RUN", wall(NOW - timedelta(minutes=5)), None, biz="2026-11-25"),
        # a key more than a day ahead (a mistyped date) is passed over as the latest key
        Run(4, "NG", wall(NOW - timedelta(minutes=30)), wall(NOW - timedelta(minutes=20)), biz="2026-11-29"),
    ])
    snapshot = source(db, config_text(db, {"business_date": "biz"}, lookback="3d"), NOW).poll()
    assert business_dates(snapshot) == ["2026-11-26"]
    assert value(snapshot, "batch_run_attempts") == 1
    # the latest start is that of the latest key's run or a later key's (the mistyped one did start, so no
    # missed run is claimed), never the re-run of the 25th
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == (NOW - timedelta(minutes=30)).timestamp()
    without_future = source(db, config_text(db, {"business_date": "biz"}, lookback="3d",
                                            where="run_id <> 4"), NOW).poll()
    assert value(without_future, "batch_run_last_start_timestamp_seconds") == yesterday.timestamp()
    assert value(snapshot, "batch_run_last_status", status="success") == 1
    assert value(snapshot, "batch_run_last_status", status="running") == 0
    assert value(snapshot, "batch_run_running") == 1  # the re-run is still counted as running


def test_rerunning_an_old_slot_does_not_make_it_the_latest(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    newest = tokyo(27, 10, 30)
    write_runs(db, [
        Run(1, "NG", wall(tokyo(27, 9, 1)), wall(tokyo(27, 9, 5)), slot=wall(tokyo(27, 9))),
        Run(2, "OK", wall(newest + timedelta(minutes=1)), wall(newest + timedelta(minutes=4)), slot=wall(newest)),
        Run(3, "RUN", wall(NOW - timedelta(minutes=2)), None, slot=wall(tokyo(27, 9))),
        Run(4, "OK", wall(NOW - timedelta(minutes=10)), wall(NOW - timedelta(minutes=9)),
            slot=wall(NOW + timedelta(hours=25))),
    ])
    snapshot = source(db, config_text(db, {"run_key": "slot"}), NOW).poll()
    assert business_dates(snapshot) == ["2026-11-27T10:30:00+09:00"]
    assert value(snapshot, "batch_run_attempts") == 1
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == (NOW - timedelta(minutes=10)).timestamp()
    without_future = source(db, config_text(db, {"run_key": "slot"}, where="run_id <> 4"), NOW).poll()
    assert value(without_future, "batch_run_last_start_timestamp_seconds") == \
        (newest + timedelta(minutes=1)).timestamp()
    assert value(snapshot, "batch_run_last_status", status="success") == 1


# --- a duration instead of an end ---------------------------------------------------------------------


def test_a_duration_column_gives_the_end(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    old, failed = tokyo(25, 9), tokyo(27, 10)  # the success is outside the 1-day window
    write_runs(db, [Run(1, "OK", wall(old), seconds=600.0), Run(2, "NG", wall(failed), seconds=120.0)],
               without=("ended_at",))
    src = source(db, config_text(db, {"duration": "seconds"}), NOW)
    snapshot = src.poll()
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == old.timestamp() + 600
    assert value(snapshot, "batch_run_last_end_timestamp_seconds") == failed.timestamp() + 120
    assert value(snapshot, "batch_run_last_duration_seconds") == 120
    assert value(snapshot, "batch_runs", status="failed") == 1

    success = tokyo(27, 10, 30)
    write_runs(db, [Run(3, "OK", wall(success), seconds=90.5)], without=("ended_at",))
    snapshot = src.poll()
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == success.timestamp() + 90.5
    assert value(snapshot, "batch_run_last_duration_seconds") == 90.5


# --- column expressions ------------------------------------------------------------------------------


def test_a_column_expression_is_read(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    created = tokyo(27, 10)
    write_runs(db, [Run(1, "OK", None, wall(created + timedelta(minutes=5)), created_at=wall(created))])
    snapshot = source(db, config_text(db, {"started_at": "COALESCE(started_at, created_at)"}), NOW).poll()
    assert value(snapshot, "batch_runs", status="success") == 1
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == created.timestamp()
    assert value(snapshot, "batch_run_last_duration_seconds") == 300


def columns_line(text: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("columns:"))


@pytest.mark.parametrize(("expression", "problem"), [
    ("status; DELETE FROM job_runs", "contains a ';' (one statement only)"),
    ("status -- the code", "contains a '--' comment"),
    ("status /* the code */", "contains a '/*' comment"),
    ("COALESCE(status, ?)", "contains a '?' (the placeholders are the exporter's)"),
    ("COALESCE(status, 'NG'", "has unbalanced parentheses"),
    ("status)", "has unbalanced parentheses"),
    (")status(", "has unbalanced parentheses"),
    ("status # the code", "contains a '#' (a comment in MySQL and MariaDB)"),
    ("COALESCE(status, :x)", "contains ':x'"),
    ("COALESCE(status, @x)", "contains '@x'"),
    ("COALESCE(status, $1)", "contains '$'"),
])
def test_a_column_expression_that_is_not_one_expression_is_refused(
        tmp_path: Path, expression: str, problem: str) -> None:
    text = config_text(tmp_path / "runs.db", {"status": expression})
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert re.search(rf"^config\.yml:{columns_line(text)}: batches\.b\.runs\.columns\.status: .*{re.escape(problem)}",
                     str(caught.value), re.MULTILINE), str(caught.value)


@pytest.mark.parametrize("expression", [
    "(SELECT 1) UNION SELECT status INTO stolen_runs",
    "(WITH gone AS (DELETE FROM job_runs RETURNING status) SELECT status FROM gone)",
    "(SELECT 1) UNION SELECT lo_import('/etc/passwd')",
    "pg_advisory_lock(1)",
])
def test_a_column_expression_that_writes_is_refused_at_load(tmp_path: Path, expression: str) -> None:
    text = config_text(tmp_path / "runs.db", {"status": expression})
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert re.search(r"^config\.yml:\d+: batches\.b\.runs: only a single read-only SELECT is allowed in the "
                     r"statement sent to the database", str(caught.value), re.MULTILINE), str(caught.value)


# --- work already done, and the re-run that leaves it alone --------------------------------------------

AIRFLOW_CLEAR = "airflow tasks clear --only-failed --start-date {key} --end-date {key} etl"


@pytest.mark.parametrize("rerun_unfinished", [True, False])
def test_done_rows_of_a_failed_attempt_with_and_without_a_partial_rerun(tmp_path: Path,
                                                                       rerun_unfinished: bool) -> None:
    db = tmp_path / "runs.db"
    slot = tokyo(27, 10, 30)
    write_runs(db, [Run(1, "NG", wall(slot + timedelta(minutes=1)), wall(slot + timedelta(minutes=9)),
                        slot=wall(slot))])
    write_task_states(db, [(1, "success", 2), (1, "failed", 1)])
    command = f'\n      rerun_unfinished: "{AIRFLOW_CLEAR}"' if rerun_unfinished else ""
    records = f"""
    records:
      query: "SELECT state, COUNT(*) FROM task_instance WHERE run_id = ? GROUP BY state"
      pending_states: [running, queued]
      done_states: [success]{command}"""
    ev = evidence(config_text(db, {"run_key": "slot"}, batch_extra=records), NOW)
    assert ev.latest is not None and ev.latest.records == {"success": 2, "failed": 1}
    j = judge(ev)
    changed = [r for r in j.rules if r.rule == "no_data_changed"]
    key = "2026-11-27T10:30:00+09:00"
    if rerun_unfinished:
        # one finding, not also an "ok: no failed attempt changed data" beside it
        assert [r.result for r in changed] == ["info"], changed
        assert AIRFLOW_CLEAR.replace("{key}", key) in changed[0].message
        assert "2 rows" in changed[0].message  # the failed task is not work done
        assert j.verdict != "unsafe", j.rules
    else:
        assert [r.result for r in changed] == ["unsafe"] and "2 rows" in changed[0].message
        assert j.verdict == "unsafe"


# --- the scheduler's own plan ----------------------------------------------------------------------


def test_planned_starts_from_a_schedule_query_row() -> None:
    def naive(hour: int) -> datetime:
        return datetime(2026, 11, 27, hour, 0)  # read in Tokyo

    at = tokyo(27, 0)
    assert planned_starts((naive(9), naive(12), 0), NOW, TOKYO) == (at.replace(hour=9), at.replace(hour=12), False)
    # the next start is already past (11:00 now): overdue, it is the last expected start
    assert planned_starts((naive(9), naive(10)), NOW, TOKYO) == (at.replace(hour=10), None, False)
    assert planned_starts((None, naive(10), None), NOW, TOKYO) == (at.replace(hour=10), None, False)
    assert planned_starts(("2026-11-27 00:00:00Z", None, 1), NOW, TOKYO) == (at.replace(hour=9), None, True)
    assert planned_starts((None, None, 0), NOW, TOKYO) == (None, None, False)


@pytest.mark.parametrize(("row", "named"), [
    (("soon", None), "column 1 (latest planned start)"),
    ((None, b"\x00"), "column 2 (next planned start)"),
    ((None, None, "paused"), "column 3 (paused)"),
    ((None,), "expected at least 2 columns"),
])
def test_planned_starts_name_the_column_they_cannot_read(row: tuple[object, ...], named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        planned_starts(row, NOW, TOKYO)


# --- --explain -------------------------------------------------------------------------------------


def test_explain_shows_the_window_query_with_both_placeholders(tmp_path: Path) -> None:
    config = load(config_text(tmp_path / "runs.db", {"run_key": "slot", "queued_at": "queued_at"},
                              status=WITH_QUEUED))
    text = explain(config)
    window = next(line for line in text.splitlines() if line.startswith("SELECT") and ">= ?" in line)
    assert window.count("?") == 2
    assert window.endswith("WHERE (started_at >= ? OR (started_at IS NULL AND queued_at >= ?));")
    lines = text.splitlines()
    assert lines[lines.index(window) - 1] == ("-- every poll: the lookback window; parameters: now - lookback, twice "
                                              "(started, or queued and not started)")
    assert "columns.run_key (a scheduled slot)" in text


# --- the last success is the latest key's -------------------------------------------------------------


def test_an_older_key_rerun_that_succeeds_now_is_not_the_last_success(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    yesterday_end = tokyo(26, 1, 30)
    write_runs(db, [
        Run(1, "OK", wall(tokyo(26, 1)), wall(yesterday_end), biz="2026-11-26"),
        Run(2, "NG", wall(tokyo(27, 1)), wall(tokyo(27, 1, 20)), biz="2026-11-27"),
        # the 20th cleared and re-run this morning, after the 27th failed: not the success the 27th waits for
        Run(3, "OK", wall(tokyo(27, 10)), wall(tokyo(27, 10, 10)), biz="2026-11-20"),
    ])
    src = source(db, config_text(db, {"business_date": "biz"}, lookback="3d"), NOW)
    snapshot = src.poll()
    assert business_dates(snapshot) == ["2026-11-27"]
    assert value(snapshot, "batch_run_last_status", status="failed") == 1
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == yesterday_end.timestamp()

    fixed_end = tokyo(27, 10, 40)
    write_runs(db, [Run(4, "OK", wall(tokyo(27, 10, 30)), wall(fixed_end), biz="2026-11-27")])
    snapshot = src.poll()
    assert value(snapshot, "batch_run_attempts") == 2
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == fixed_end.timestamp()


def test_the_search_beyond_the_window_does_not_bring_back_an_older_key_rerun(tmp_path: Path) -> None:
    """With a one-day window, the only success in it is the 20th's re-run: it is passed over, and the
    search of the whole table for a success (which reads no keys) is not sent, or it would answer with
    that same re-run."""
    db = tmp_path / "runs.db"
    write_runs(db, [
        Run(1, "OK", wall(tokyo(24, 1)), wall(tokyo(24, 1, 30)), biz="2026-11-24"),
        Run(2, "NG", wall(tokyo(27, 1)), wall(tokyo(27, 1, 20)), biz="2026-11-27"),
        Run(3, "OK", wall(tokyo(27, 10)), wall(tokyo(27, 10, 10)), biz="2026-11-20"),
    ])
    snapshot = source(db, config_text(db, {"business_date": "biz"}, lookback="1d"), NOW).poll()
    assert business_dates(snapshot) == ["2026-11-27"]
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") is None


def test_an_older_slot_rerun_that_succeeds_now_is_not_the_last_success(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    before_latest = tokyo(27, 10, 20)
    write_runs(db, [
        Run(1, "OK", wall(tokyo(27, 10, 16)), wall(before_latest), slot=wall(tokyo(27, 10, 15))),
        Run(2, "NG", wall(tokyo(27, 10, 31)), wall(tokyo(27, 10, 35)), slot=wall(tokyo(27, 10, 30))),
        Run(3, "OK", wall(tokyo(27, 10, 50)), wall(tokyo(27, 10, 55)), slot=wall(tokyo(27, 9))),  # re-run
    ])
    snapshot = source(db, config_text(db, {"run_key": "slot"}), NOW).poll()
    assert business_dates(snapshot) == ["2026-11-27T10:30:00+09:00"]
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == before_latest.timestamp()


# --- a naive business date under key_timezone ---------------------------------------------------------


def test_a_naive_business_date_at_midnight_keeps_its_date_under_key_timezone(tmp_path: Path) -> None:
    # times kept as UTC (timezone), keys in New York (key_timezone): a date kept as its midnight is that
    # date, not the evening before in New York
    utc = ZoneInfo("UTC")
    start = NOW - timedelta(hours=1)
    for stored in ("2026-11-27 00:00:00", datetime(2026, 11, 27)):
        raw = (1, stored, "OK", start, NOW)
        assert parse_run_row(raw, MAPPING, utc, key_tz=NEW_YORK)[0].business_date == "2026-11-27", stored
    # an aware one is an instant: 03:00 UTC on the 27th is the 26th in New York
    for aware in ("2026-11-27T03:00:00+00:00", "2026-11-27T03:00:00Z", datetime(2026, 11, 27, 3, tzinfo=UTC)):
        raw = (1, aware, "OK", start, NOW)
        assert parse_run_row(raw, MAPPING, utc, key_tz=NEW_YORK)[0].business_date == "2026-11-26", aware

    db = tmp_path / "runs.db"
    write_runs(db, [Run(1, "OK", wall(start, utc), wall(NOW, utc), biz="2026-11-27 00:00:00")])
    text = config_text(db, {"business_date": "biz"}, timezone="UTC",
                       batch_extra="\n      key_timezone: America/New_York")
    assert business_dates(source(db, text, NOW).poll()) == ["2026-11-27"]
    assert evidence(text, NOW).business_date == "2026-11-27"


# --- one slot in two spellings, slots as epoch numbers ----------------------------------------------------


def test_a_slot_written_as_a_date_and_as_its_midnight_is_one_key(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [
        Run(1, "NG", wall(tokyo(27, 0, 1)), wall(tokyo(27, 0, 20)), slot="2026-11-27"),  # the scheduler's
        Run(2, "OK", wall(tokyo(27, 10)), wall(tokyo(27, 10, 20)), slot="2026-11-27 00:00:00"),  # a re-run script's
    ])
    text = config_text(db, {"run_key": "slot"})
    snapshot = source(db, text, NOW).poll()
    assert business_dates(snapshot) == ["2026-11-27T00:00:00+09:00"]
    assert value(snapshot, "batch_run_attempts") == 2
    ev = evidence(text, NOW)
    assert ev.business_date == "2026-11-27T00:00:00+09:00" and [a.run_id for a in ev.attempts] == ["1", "2"]


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def test_slots_stored_as_epoch_seconds_are_read_as_instants(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE job_runs (run_id INTEGER, status TEXT, started_at INTEGER, ended_at INTEGER, "
                 "slot INTEGER, biz TEXT, clear_number INTEGER, queued_at INTEGER, seconds REAL, created_at TEXT)")
    conn.commit()
    conn.close()
    slots = [tokyo(27, 10), tokyo(27, 10, 15), tokyo(27, 10, 30)]
    write_runs(db, [Run(i, "OK", epoch(slot + timedelta(minutes=1)), epoch(slot + timedelta(minutes=5)),
                        slot=epoch(slot)) for i, slot in enumerate(slots, 1)])
    # the 10:00 slot cleared and re-run after the 10:30 one: an older slot, not the latest
    write_runs(db, [Run(4, "NG", epoch(tokyo(27, 10, 50)), epoch(tokyo(27, 10, 55)), slot=epoch(slots[0]))])
    text = config_text(db, {"run_key": "slot"}, batch_extra="\n      timestamps: epoch_seconds")
    snapshot = source(db, text, NOW).poll()
    assert business_dates(snapshot) == ["2026-11-27T10:30:00+09:00"]
    assert value(snapshot, "batch_run_attempts") == 1
    assert value(snapshot, "batch_run_last_status", status="success") == 1
    ev = evidence(text, NOW)
    assert ev.business_date == "2026-11-27T10:30:00+09:00"
    assert ev.recent_dates == [("2026-11-27T10:30:00+09:00", 1), ("2026-11-27T10:15:00+09:00", 1),
                               ("2026-11-27T10:00:00+09:00", 2)]


# --- a section next to a preset -------------------------------------------------------------------------

AIRFLOW_PRESET = {"name": "airflow", "dag_id": "etl"}


def test_a_nested_mapping_next_to_a_preset_is_merged_key_by_key() -> None:
    generated = expand({"preset": AIRFLOW_PRESET})["runs"]
    runs = expand({"preset": AIRFLOW_PRESET, "runs": {"columns": {"queued_at": "q"}}})["runs"]
    assert runs["columns"] == {**generated["columns"], "queued_at": "q"}
    assert runs["columns"]["run_key"] == "run_key" and runs["columns"]["attempt"] == "attempt"
    assert {k: v for k, v in runs.items() if k != "columns"} == {k: v for k, v in generated.items() if k != "columns"}
    assert expand({"preset": AIRFLOW_PRESET, "runs": {"lookback": "3d"}})["runs"] == {**generated, "lookback": "3d"}

    loaded = load("""databases:
  a:
    odbc: 'Driver={PostgreSQL Unicode};Server=127.0.0.1;Database=test;UID=postgres'
batches:
  etl:
    database: a
    max_duration: 1h
    preset: {name: airflow, dag_id: etl}
    runs:
      columns: {queued_at: "COALESCE(queued_at, started_at)"}
      lookback: 3d
""").batches["etl"].runs
    assert loaded is not None
    assert loaded.columns.run_key == "run_key" and loaded.columns.attempt == "attempt"
    assert loaded.columns.queued_at == "COALESCE(queued_at, started_at)"
    assert loaded.lookback == 3 * 86400


# --- rerun-check: which key, and the command it offers ------------------------------------------------

PENDING_RECORDS = """
    records:
      query: "SELECT state, COUNT(*) FROM task_instance WHERE run_id = ? GROUP BY state"
      pending_states: [running]
    idempotent: true"""


def test_rerun_check_for_a_date_holding_several_slots_names_them(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [
        Run(1, "NG", wall(tokyo(27, 10, 1)), wall(tokyo(27, 10, 5)), slot=wall(tokyo(27, 10))),
        Run(2, "OK", wall(tokyo(27, 10, 46)), wall(tokyo(27, 10, 50)), slot=wall(tokyo(27, 10, 45))),
    ])
    write_task_states(db, [(1, "running", 5)])  # the failed 10:00 slot left rows pending
    config = load(config_text(db, {"run_key": "slot"}, batch_extra=PENDING_RECORDS))
    j = judge(gather(config, "b", business_date="2026-11-27", now=NOW))
    assert j.verdict == "unknown"
    [unknown] = [r for r in j.rules if r.result == "unknown"]
    assert "2026-11-27T10:00:00+09:00" in unknown.message and "2026-11-27T10:45:00+09:00" in unknown.message

    # a slot time names its slot: the 10:00 one's pending rows are judged, the 10:45 one's success
    for asked, key, run_id, rule in [("2026-11-27T10:00:00+09:00", "2026-11-27T10:00:00+09:00", "1", "no_pending_rows"),
                                     ("2026-11-27 10:45", "2026-11-27T10:45:00+09:00", "2", "not_succeeded")]:
        ev = gather(config, "b", business_date=asked, now=NOW)
        assert ev.run_table_error is None
        assert ev.business_date == key and [a.run_id for a in ev.attempts] == [run_id]
        j = judge(ev)
        assert j.verdict != "unknown"
        assert [r.result for r in j.rules if r.rule == rule] == ["warning"], j.rules


@pytest.mark.parametrize(("columns", "stored", "key"), [
    ({"run_key": "slot"}, Run(1, "NG", slot=wall(tokyo(27, 10, 30))), "2026-11-27T10:30:00+09:00"),
    ({"business_date": "biz"}, Run(1, "NG", biz="2026-11-27"), "2026-11-27"),
    ({"run_key": "slot"}, Run(1, "NG", slot="x$(touch pwned) 'y'"), None),
    ({"business_date": "biz"}, Run(1, "NG", biz="nightly; reboot"), None),
], ids=["slot", "date", "slot-text", "date-text"])
def test_rerun_unfinished_is_offered_with_a_quoted_date_or_slot_only(
        tmp_path: Path, columns: dict[str, str], stored: Run, key: str | None) -> None:
    db = tmp_path / "runs.db"
    start = tokyo(27, 10, 31)
    write_runs(db, [Run(1, "NG", wall(start), wall(start + timedelta(minutes=8)), slot=stored.slot, biz=stored.biz)])
    write_task_states(db, [(1, "success", 2), (1, "failed", 1)])
    records = f"""
    records:
      query: "SELECT state, COUNT(*) FROM task_instance WHERE run_id = ? GROUP BY state"
      pending_states: [running, queued]
      done_states: [success]
      rerun_unfinished: "{AIRFLOW_CLEAR}\""""
    ev = evidence(config_text(db, columns, batch_extra=records), NOW)
    j = judge(ev)
    changed = [r for r in j.rules if r.rule == "no_data_changed"]
    if key is None:
        assert ev.business_date == (stored.slot or stored.biz)  # the only key, though not a date or slot
        assert ev.rerun_unfinished is None
        assert [r.result for r in changed] == ["unsafe"]
        assert not any("airflow tasks clear" in r.message for r in j.rules)
    else:
        assert ev.business_date == key and ev.rerun_unfinished is not None
        assert shlex.split(ev.rerun_unfinished) == ["airflow", "tasks", "clear", "--only-failed", "--start-date", key,
                                                    "--end-date", key, "etl"]
        assert [r.result for r in changed] == ["info"] and ev.rerun_unfinished in changed[0].message


# --- an out-of-range duration -----------------------------------------------------------------------------

HUGE_DURATIONS = pytest.mark.parametrize("seconds", [1e300, math.inf], ids=["1e300", "infinity"])


@HUGE_DURATIONS
def test_an_out_of_range_duration_in_the_window_is_a_data_error(tmp_path: Path, seconds: float) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [Run(1, "NG", wall(tokyo(27, 9)), seconds=seconds)], without=("ended_at",))
    text = config_text(db, {"duration": "seconds"})
    with pytest.raises(SourceError) as caught:
        source(db, text, NOW).poll()
    assert caught.value.reason == "data" and "column duration" in str(caught.value), caught.value
    ev = evidence(text, NOW)
    assert ev.run_table_error is not None and "column duration" in ev.run_table_error


@HUGE_DURATIONS
def test_an_out_of_range_duration_of_the_last_success_before_the_window_is_a_data_error(
        tmp_path: Path, seconds: float) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [Run(1, "OK", wall(tokyo(25, 9)), seconds=seconds),  # before the 1-day window
                    Run(2, "NG", wall(tokyo(27, 10)), seconds=60.0)], without=("ended_at",))
    text = config_text(db, {"duration": "seconds"})
    with pytest.raises(SourceError) as caught:
        source(db, text, NOW).poll()
    assert caught.value.reason == "data" and "column duration" in str(caught.value), caught.value
    runs = load(text).batches["b"].runs
    assert runs is not None
    database = open_database("l", sqlite=str(db))
    try:
        with pytest.raises(ValueError, match="column duration"):
            RunTable("b", runs, None, database.query, text_timestamps=True).last_success()
    finally:
        database.close()




def test_a_cast_and_a_containment_operator_are_column_expressions(tmp_path: Path) -> None:
    columns = {"started_at": "started_at::timestamptz", "status": "CASE WHEN a @> b THEN status END"}
    runs = load(config_text(tmp_path / "runs.db", columns)).batches["b"].runs
    assert runs is not None
    assert runs.columns.started_at == columns["started_at"] and runs.columns.status == columns["status"]


@pytest.mark.parametrize(("preset", "expected"), [
    ("{name: airflow, dag_id: 'bad id; drop'}",
     "batches.b: preset airflow: dag_id: expected an Airflow DAG id (letters, digits, '_', '.', '-'), "
     "got 'bad id; drop'"),
    ("{name: airflw, dag_id: x}", "batches.b: preset.name: unknown preset 'airflw' (known: airflow, sqlserver-agent)"),
    ("{name: airflow, dag_id: x, versoin: 3}", "batches.b: preset airflow: unknown parameter 'versoin'"),
    ("{name: airflow, dag_id: x, version: 4}", "batches.b: preset airflow: version: expected 2 or 3, got 4"),
    ("{name: sqlserver-agent, job_name: x, key: slot}", "preset sqlserver-agent: key: expected date or start"),
    ("airflow", "batches.b: preset: expected a mapping with a 'name'"),
])
def test_a_wrong_preset_is_a_located_error(preset: str, expected: str) -> None:
    text = f"""databases:
  a:
    odbc: 'Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Database=test;UID=postgres'
batches:
  b:
    database: a
    preset: {preset}
    max_duration: 2h
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("config.yml:")


# --- the latest expected start's run, never a re-run of an earlier key ------------------------------------
# NOW is 11:00 on the 27th in Tokyo; the batch is expected at 01:00 (grace 15 minutes), finish_by 06:00.

DAILY_AT_ONE = """    schedule: {cron: "0 1 * * *", timezone: Asia/Tokyo, grace: 15m, finish_by: "06:00"}
    max_duration: 3h
"""


def scheduled(db: Path, text: str, now: datetime) -> RunsSource:
    """The runs source wired to the batch's cron as app.build_sources wires it."""
    batch = load(text).batches["b"]
    return RunsSource("b", batch, open_database("l", sqlite=str(db)), text_timestamps=True, clock=now.timestamp,
                      expected=BatchInfo(batch).expected)


def rerun_of_the_26th(db: Path, *, key_column: str = "biz", today: bool = False) -> None:
    """The 25th succeeded; the 26th failed and is re-run at 08:00 on the 27th; the 27th ran if `today`."""
    keys = {"biz": ("2026-11-25", "2026-11-26", "2026-11-27"),
            "slot": ("2026-11-25 01:00:00", "2026-11-26 01:00:00", "2026-11-27 01:00:00")}[key_column]
    rows = [Run(1, "OK", wall(tokyo(25, 1, 5)), wall(tokyo(25, 1, 50)), **{key_column: keys[0]}),
            Run(2, "NG", wall(tokyo(26, 1, 5)), wall(tokyo(26, 1, 30)), **{key_column: keys[1]}),
            Run(3, "OK", wall(tokyo(27, 8)), wall(tokyo(27, 8, 40)), **{key_column: keys[1]})]
    if today:
        rows.append(Run(4, "OK", wall(tokyo(27, 1, 5)), wall(tokyo(27, 1, 50)), **{key_column: keys[2]}))
    write_runs(db, rows)


@pytest.mark.parametrize("key_column", ["biz", "slot"])
def test_a_rerun_of_yesterdays_key_this_morning_is_not_todays_run(tmp_path: Path, key_column: str) -> None:
    db = tmp_path / "runs.db"
    rerun_of_the_26th(db, key_column=key_column)
    column = {"biz": "business_date", "slot": "run_key"}[key_column]
    text = config_text(db, {column: key_column}, lookback="3d") + DAILY_AT_ONE
    snapshot = scheduled(db, text, NOW).poll()
    # BatchRunMissed and BatchFinishDeadlineMissed read these: before 00:45, today's start less its grace
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == tokyo(26, 1, 5).timestamp()
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == tokyo(25, 1, 50).timestamp()
    # the re-run is the 26th's second run, its latest, a success
    assert value(snapshot, "batch_run_attempts") == 2
    assert value(snapshot, "batch_run_last_status", status="success") == 1
    assert value(snapshot, "batch_run_key_work_seconds") == 25 * 60 + 40 * 60
    # the same table read by a source that does not know the schedule (a batch without one): every run counts
    blind = source(db, text, NOW).poll()
    assert value(blind, "batch_run_last_start_timestamp_seconds") == tokyo(27, 8).timestamp()


def test_with_todays_run_there_a_rerun_of_yesterday_changes_nothing_of_today(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rerun_of_the_26th(db, today=True)
    text = config_text(db, {"business_date": "biz"}, lookback="3d") + DAILY_AT_ONE
    snapshot = scheduled(db, text, NOW).poll()
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == tokyo(27, 1, 5).timestamp()
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == tokyo(27, 1, 50).timestamp()
    assert business_dates(snapshot) == ["2026-11-27"] and value(snapshot, "batch_run_attempts") == 1
    assert value(snapshot, "batch_run_earlier_key_attempts", business_date="2026-11-26") == 2


def test_business_dates_kept_as_instants_and_shown_in_another_zone(tmp_path: Path) -> None:
    # the business date is stored as its Tokyo midnight with an offset, and keys are shown in UTC
    # (runs.key_timezone): the 26th is the key 2026-11-25, the 27th 2026-11-26
    db = tmp_path / "runs.db"
    write_runs(db, [Run(1, "OK", wall(tokyo(25, 1, 5)), wall(tokyo(25, 1, 50)), biz="2026-11-25T00:00:00+09:00"),
                    Run(2, "NG", wall(tokyo(26, 1, 5)), wall(tokyo(26, 1, 30)), biz="2026-11-26T00:00:00+09:00"),
                    Run(3, "OK", wall(tokyo(27, 8)), wall(tokyo(27, 8, 40)), biz="2026-11-26T00:00:00+09:00")])
    text = config_text(db, {"business_date": "biz"}, lookback="3d",
                       batch_extra="\n      key_timezone: UTC") + DAILY_AT_ONE
    snapshot = scheduled(db, text, NOW).poll()
    assert business_dates(snapshot) == ["2026-11-25"]
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == tokyo(26, 1, 5).timestamp()
    assert value(snapshot, "batch_run_last_success_timestamp_seconds") == tokyo(25, 1, 50).timestamp()


def test_a_schedule_query_tells_the_runs_source_which_start_is_due(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rerun_of_the_26th(db)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE plan (latest TEXT, following TEXT, paused INTEGER)")
    conn.execute("INSERT INTO plan VALUES ('2026-11-27 01:00:00', '2026-11-28 01:00:00', 0)")
    conn.commit()
    conn.close()
    text = config_text(db, {"business_date": "biz"}, lookback="3d") + """    schedule:
      query: SELECT latest, following, paused FROM plan
      timezone: Asia/Tokyo
    max_duration: 3h
"""
    batch = load(text).batches["b"]
    assert batch.schedule is not None
    database = open_database("l", sqlite=str(db))
    plan = ScheduleTableSource("b", batch.schedule, database, clock=NOW.timestamp)
    runs = RunsSource("b", batch, database, text_timestamps=True, clock=NOW.timestamp, expected=plan.expected)
    assert value(runs.poll(), "batch_run_last_start_timestamp_seconds") == tokyo(27, 8).timestamp()  # no plan yet
    plan.poll()
    assert plan.expected(NOW) == Expected(tokyo(27, 1).astimezone(UTC), timedelta(minutes=15))
    assert value(runs.poll(), "batch_run_last_start_timestamp_seconds") == tokyo(26, 1, 5).timestamp()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE plan SET paused = 1")
    conn.commit()
    conn.close()
    plan.poll()
    assert plan.expected(NOW) is None  # paused: no start is expected, and none is paged


@pytest.mark.clock
def test_the_exporter_wires_the_runs_source_to_the_schedule(tmp_path: Path) -> None:
    # app.build_sources, as `run` builds it: a daily cron two hours ago (UTC), yesterday's date failed and is
    # re-run now, today's date never started; the runs source reads the wall clock, so the rows follow it
    now = datetime.fromtimestamp(time.time(), tz=UTC).replace(microsecond=0)
    fire = (now - timedelta(hours=2)).replace(second=0)
    yesterday, utc = fire - timedelta(days=1), ZoneInfo("UTC")
    db = tmp_path / "runs.db"
    key = yesterday.date().isoformat()
    first = yesterday + timedelta(minutes=1)
    write_runs(db, [Run(1, "NG", wall(first, utc), wall(first + timedelta(minutes=8), utc), biz=key),
                    Run(2, "RUN", wall(now - timedelta(seconds=1), utc), None, biz=key)])
    text = config_text(db, {"business_date": "biz"}, timezone="UTC", lookback="3d") + f"""    schedule:
      cron: "{fire.minute} {fire.hour} * * *"
      timezone: UTC
    max_duration: 3h
"""
    config = load(text)
    [runs] = [s.source for s in build_sources(config, open_databases(config)) if s.source.name == "runs:b"]
    assert isinstance(runs, RunsSource)
    snapshot = runs.poll()
    assert value(snapshot, "batch_run_last_start_timestamp_seconds") == first.timestamp()
    assert value(snapshot, "batch_run_running") == 1 and value(snapshot, "batch_run_attempts") == 2
