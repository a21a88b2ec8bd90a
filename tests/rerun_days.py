"""promtool tests of the shipped rules on nights when an earlier run key is re-run: every series is the exporter's.

Each scenario is a set of batches (a schedule, and how the run table keys a run: its business date or its
scheduled slot) whose runs are written by hand: when each starts and ends, its status, its key. The
exporter's own sources read them once a minute over the hour before each check: the config source
(BatchInfoSource) for the schedule series, and the runs source (RunsSource, wired to the schedule as
app.build_sources wires it) on a SQLite run table that holds, at each minute, the rows as they stood
then (a run is `RUN` from its start until its end). So are the expectations written by hand: which of
the schedule alerts fire at each check. An exporter that took a re-run of yesterday's key for today's
run would keep BatchRunMissed and BatchFinishDeadlineMissed quiet on a night whose run never started.

promtool evaluates from the instant 0, so every timestamp is written relative to that hour's start.
`python tests/rerun_days.py > alerts/tests/reruns.test.yml` writes the committed file;
tests/test_rerun_rules.py checks that it is this module's output, and tests/test_alert_rules.py runs it.
"""
from __future__ import annotations

import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from batch_exporter.config import Config, parse_config
from batch_exporter.database import open_database
from batch_exporter.sources.batchinfo import BatchInfo, BatchInfoSource
from batch_exporter.sources.runs import RunsSource
from calendar_days import (
    SCHEDULE_ALERTS,
    STEP,
    WINDOW,
    Check,
    firing_expr,
    firing_samples,
    input_series,
    promtool_document,
)

EXPORTED = {
    "config": ("batch_schedule_last_expected_timestamp_seconds", "batch_schedule_finish_deadline_timestamp_seconds",
               "batch_schedule_grace_seconds", "batch_schedule_watched_since_timestamp_seconds",
               "batch_run_max_duration_seconds"),
    "runs": ("batch_run_last_start_timestamp_seconds", "batch_run_last_success_timestamp_seconds",
             "batch_run_running", "batch_run_attempts"),
}
TIMESTAMPS = {"batch_schedule_last_expected_timestamp_seconds", "batch_schedule_finish_deadline_timestamp_seconds",
              "batch_schedule_watched_since_timestamp_seconds", "batch_run_last_start_timestamp_seconds",
              "batch_run_last_success_timestamp_seconds"}


@dataclass(frozen=True)
class Run:
    key: str  # a business date YYYY-MM-DD, or a slot as local YYYY-MM-DD HH:MM (see Batch.slots)
    start: str  # local YYYY-MM-DD HH:MM; `fold` 1: the second of a wall time a DST change repeats
    end: str
    status: str = "OK"  # NG: failed
    fold: int = 0


@dataclass(frozen=True)
class Batch:
    name: str
    schedule: str  # the `schedule` mapping as YAML flow text (timezone and grace added)
    runs: tuple[Run, ...]
    slots: bool = False  # keys are scheduled slots (columns.run_key), not business dates
    max_duration: str = "3h"


@dataclass(frozen=True)
class Scenario:
    title: str
    timezone: str
    grace: str
    batches: tuple[Batch, ...]
    checks: tuple[Check, ...]


def _firing(*pairs: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairs)


def _all(batch: str) -> frozenset[tuple[str, str]]:
    return _firing(*((alert, batch) for alert in SCHEDULE_ALERTS))


def _not_done(batch: str) -> frozenset[tuple[str, str]]:
    """The latest expected start's run started, but did not succeed by its deadline (nor by its max_duration)."""
    return _firing(("BatchNoRecentSuccess", batch), ("BatchFinishDeadlineMissed", batch))


def _missed_and_late(batch: str) -> frozenset[tuple[str, str]]:
    """No run started, and the deadline passed (the batch has no success in view: no BatchNoRecentSuccess)."""
    return _firing(("BatchRunMissed", batch), ("BatchFinishDeadlineMissed", batch))


DAILY = '{cron: "0 2 * * *", finish_by: "06:00"}'
EARLIER_NIGHTS = (Run("2026-06-08", "2026-06-08 02:05", "2026-06-08 02:50"),
                  Run("2026-06-09", "2026-06-09 02:05", "2026-06-09 02:30", "NG"))
RERUN_AFTER_MIDNIGHT = Run("2026-06-09", "2026-06-10 03:00", "2026-06-10 03:40")
TODAY = Run("2026-06-10", "2026-06-10 02:05", "2026-06-10 02:50")


def _dst_night(name: str, cron: str, yesterday: str, today: str, rerun: Run, today_start: str,
               finish_by: str) -> tuple[Batch, Batch]:
    """A night across a DST change: yesterday failed, its key re-run after today's start; today's run
    missing (`name`) or there (`name`-ok)."""
    schedule = f'{{cron: "{cron}", finish_by: "{finish_by}"}}'
    runs = (Run(yesterday[:10], yesterday, yesterday[:11] + "03:20", "NG"), rerun)
    return (Batch(name, schedule, runs),
            Batch(f"{name}-ok", schedule, (*runs, Run(today, today_start, today_start[:11] + "03:59"))))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "Yesterday's business date re-run after midnight (Asia/Tokyo, 10 June 2026)",
        "Asia/Tokyo", "15m",
        (
            # the reviewer's night: the 9th failed, was re-run at 03:00 and succeeded; the 10th never started
            Batch("masked", DAILY, (*EARLIER_NIGHTS, RERUN_AFTER_MIDNIGHT)),
            # the same re-run with today's run there: a normal night
            Batch("both", DAILY, (*EARLIER_NIGHTS, TODAY, RERUN_AFTER_MIDNIGHT)),
            # the 9th re-run at 01:00, before today's start: it finishes yesterday's work; today's run comes
            Batch("early", DAILY, (*EARLIER_NIGHTS, Run("2026-06-09", "2026-06-10 01:00", "2026-06-10 01:40"), TODAY)),
        ),
        (
            Check("2026-06-09 02:20", _firing(), "the 9th's run is under way"),
            Check("2026-06-10 01:55", _not_done("masked") | _not_done("both"),
                  "yesterday's work is not done until its re-run; the early re-run has done it"),
            Check("2026-06-10 02:50", _firing(("BatchRunMissed", "masked")), "today's run did not start"),
            Check("2026-06-10 03:50", _firing(("BatchRunMissed", "masked")),
                  "the 9th's re-run succeeded at 03:40: it is not today's run"),
            Check("2026-06-10 06:10", _all("masked"), "today's finish deadline (06:00) passed without today's run"),
        ),
    ),
    Scenario(
        "A holiday morning's re-run of the last business day (Asia/Tokyo, Showa Day 2026)",
        "Asia/Tokyo", "15m",
        (
            Batch("holiday", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}', (
                Run("2026-04-27", "2026-04-27 02:05", "2026-04-27 02:50"),
                Run("2026-04-28", "2026-04-28 02:05", "2026-04-28 02:30", "NG"),
                Run("2026-04-28", "2026-04-29 03:00", "2026-04-29 03:40"),  # on the holiday: the 28th's work
            )),
        ),
        (
            Check("2026-04-29 02:50", _not_done("holiday"), "the 28th's work is still not done"),
            Check("2026-04-29 06:10", _firing(), "the holiday expects no run; the re-run did the 28th's work"),
            Check("2026-04-30 02:30", _firing(("BatchRunMissed", "holiday")),
                  "the next business day's run did not start: the holiday's re-run was not it"),
        ),
    ),
    Scenario(
        "A re-run of the previous 15-minute slot (Asia/Tokyo, columns.run_key)",
        "Asia/Tokyo", "5m",
        (
            Batch("slot-masked", '{cron: "0,15,30,45 * * * *"}', (
                Run("2026-06-10 09:45", "2026-06-10 09:46", "2026-06-10 09:50"),
                Run("2026-06-10 10:00", "2026-06-10 10:01", "2026-06-10 10:05", "NG"),
                Run("2026-06-10 10:00", "2026-06-10 10:16", "2026-06-10 10:20"),  # the 10:15 slot never ran
                Run("2026-06-10 10:30", "2026-06-10 10:31", "2026-06-10 10:35"),
            ), slots=True, max_duration="10m"),
            Batch("slot-ok", '{cron: "0,15,30,45 * * * *"}', (
                Run("2026-06-10 09:45", "2026-06-10 09:46", "2026-06-10 09:50"),
                Run("2026-06-10 10:00", "2026-06-10 10:01", "2026-06-10 10:05", "NG"),
                Run("2026-06-10 10:15", "2026-06-10 10:15", "2026-06-10 10:19"),
                Run("2026-06-10 10:00", "2026-06-10 10:16", "2026-06-10 10:20"),
                Run("2026-06-10 10:30", "2026-06-10 10:31", "2026-06-10 10:35"),
            ), slots=True, max_duration="10m"),
        ),
        (
            Check("2026-06-10 10:14", _firing(), "the 10:00 slot failed; nothing is due yet"),
            Check("2026-06-10 10:28", _firing(("BatchRunMissed", "slot-masked")),
                  "the 10:15 slot did not run: re-running the 10:00 one is not it"),
            Check("2026-06-10 10:44", _firing(), "the 10:30 slot ran"),
        ),
    ),
    Scenario(
        "Spring forward in Europe/Berlin (29 March 2026): the 02:30 cron fires at 03:00 CEST",
        "Europe/Berlin", "15m",
        _dst_night("berlin-spring", "30 2 * * *", "2026-03-28 02:35", "2026-03-29",
                   Run("2026-03-28", "2026-03-29 03:10", "2026-03-29 03:40"), "2026-03-29 03:05", "05:00"),
        (
            Check("2026-03-29 03:12", _firing(), "within the grace of the 03:00 start"),
            Check("2026-03-29 03:50", _firing(("BatchRunMissed", "berlin-spring")), "today's run did not start"),
            Check("2026-03-29 05:10", _missed_and_late("berlin-spring"), "nor succeed by 05:00"),
        ),
    ),
    Scenario(
        "Fall back in Europe/Berlin (25 October 2026): the re-run in the second 02:40 (CET)",
        "Europe/Berlin", "15m",
        _dst_night("berlin-fall", "30 2 * * *", "2026-10-24 02:35", "2026-10-25",
                   Run("2026-10-24", "2026-10-25 02:40", "2026-10-25 03:10", fold=1), "2026-10-25 02:35", "05:00"),
        (
            Check("2026-10-25 02:40", _firing(), "the first 02:40 (CEST): within the grace"),
            Check("2026-10-25 03:30", _firing(("BatchRunMissed", "berlin-fall")), "today's run did not start"),
            Check("2026-10-25 05:10", _missed_and_late("berlin-fall"), "nor succeed by 05:00"),
        ),
    ),
    Scenario(
        "Spring forward in America/New_York (8 March 2026): the 02:30 cron fires at 03:00 EDT",
        "America/New_York", "15m",
        _dst_night("ny-spring", "30 2 * * *", "2026-03-07 02:35", "2026-03-08",
                   Run("2026-03-07", "2026-03-08 03:10", "2026-03-08 03:40"), "2026-03-08 03:05", "05:00"),
        (
            Check("2026-03-08 03:12", _firing(), "within the grace of the 03:00 start"),
            Check("2026-03-08 03:50", _firing(("BatchRunMissed", "ny-spring")), "today's run did not start"),
            Check("2026-03-08 05:10", _missed_and_late("ny-spring"), "nor succeed by 05:00"),
        ),
    ),
    Scenario(
        "Fall back in America/New_York (1 November 2026): the 01:30 cron, the re-run in the second 01:40 (EST)",
        "America/New_York", "15m",
        _dst_night("ny-fall", "30 1 * * *", "2026-10-31 01:35", "2026-11-01",
                   Run("2026-10-31", "2026-11-01 01:40", "2026-11-01 02:10", fold=1), "2026-11-01 01:35", "04:00"),
        (
            Check("2026-11-01 01:40", _firing(), "the first 01:40 (EDT): within the grace"),
            Check("2026-11-01 02:30", _firing(("BatchRunMissed", "ny-fall")), "today's run did not start"),
            Check("2026-11-01 04:10", _missed_and_late("ny-fall"), "nor succeed by 04:00"),
        ),
    ),
)

CALENDARS = "calendars:\n  jp: {country: JP}\n"


def _local(text: str, tz: ZoneInfo, fold: int = 0) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=tz, fold=fold).timestamp()


def _key(run: Run, batch: Batch, tz: ZoneInfo) -> str:
    if not batch.slots:
        return run.key
    return datetime.strptime(run.key, "%Y-%m-%d %H:%M").replace(tzinfo=tz).isoformat(timespec="seconds")


def _config_text(scenario: Scenario, db: Path) -> str:
    lines = [f"databases:\n  l: {{sqlite: '{db}'}}", CALENDARS, "batches:"]
    for batch in scenario.batches:
        schedule = yaml.safe_load(batch.schedule)
        schedule.update(timezone=scenario.timezone, grace=scenario.grace)
        column = "run_key" if batch.slots else "business_date"
        runs = {"table": f"runs_{batch.name.replace('-', '_')}", "lookback": "3d", "timezone": scenario.timezone,
                "timestamps": "epoch_seconds", "status": {"success": ["OK"], "failed": ["NG"], "running": ["RUN"]},
                "columns": {column: "run_key"}}
        lines.append(f"  {batch.name}:")
        lines.append("    database: l")
        lines.append(f"    schedule: {yaml.safe_dump(schedule, default_flow_style=True).strip()}")
        lines.append(f"    runs: {yaml.safe_dump(runs, default_flow_style=True, width=10_000).strip()}")
        lines.append(f"    max_duration: {batch.max_duration}")
    return "\n".join(lines) + "\n"


def _write_rows(db: Path, table: str, batch: Batch, tz: ZoneInfo, now: float) -> None:
    """The batch's runs as the run table holds them at `now`."""
    rows = []
    for number, run in enumerate(batch.runs, 1):
        start, end = _local(run.start, tz, run.fold), _local(run.end, tz, run.fold)
        if start > now:
            continue
        done = end <= now
        rows.append((number, _key(run, batch, tz), run.status if done else "RUN", start, end if done else None))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (run_id INTEGER, run_key TEXT, status TEXT, "
                 "started_at REAL, ended_at REAL)")
    conn.execute(f"DELETE FROM {table}")
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def _exported(config: Config, db: Path, scenario: Scenario, batch: Batch, t0: float, t1: float
              ) -> dict[str, list[float]]:
    """What the exporter's config and runs sources, new at t0, export for the batch once a minute until t1."""
    tz = ZoneInfo(scenario.timezone)
    settings = config.batches[batch.name]
    assert settings.runs is not None and settings.runs.table is not None
    now = [t0]
    info = BatchInfoSource(batch.name, settings, clock=lambda: now[0], watching_since=t0 - 30 * 86400,
                           calendars=config.calendars)
    database = open_database("l", sqlite=str(db))
    runs = RunsSource(batch.name, settings, database, text_timestamps=True, clock=lambda: now[0],
                      expected=BatchInfo(settings, config.calendars).expected)
    series: dict[str, list[float]] = {name: [] for names in EXPORTED.values() for name in names}
    try:
        while now[0] <= t1:
            _write_rows(db, settings.runs.table, batch, tz, now[0])
            values = {s.name: s.value for source in (info, runs) for s in source.poll().samples
                      if dict(s.labels).get("status") is None}
            for name, points in series.items():
                points.append(values.get(name, float("nan")))
            now[0] += STEP
    finally:
        database.close()
    return series


def scenario_tests(scenario: Scenario) -> Iterator[dict[str, object]]:
    """One promtool test per check, on the hour that ends at it."""
    tz = ZoneInfo(scenario.timezone)
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "runs.db"
        config = parse_config(_config_text(scenario, db), "rerun_days.py")
        for check in scenario.checks:
            end = _local(check.at, tz)
            t0 = end - WINDOW
            inputs = [series for batch in scenario.batches
                      for series in input_series(batch.name, _exported(config, db, scenario, batch, t0, end),
                                                 t0, TIMESTAMPS)]
            yield {
                "interval": "1m",
                "name": f"{scenario.title}: {check.at} {scenario.timezone}, {check.why}",
                "input_series": inputs,
                "promql_expr_test": [{
                    "expr": firing_expr(),
                    "eval_time": f"{WINDOW // 60}m",
                    "exp_samples": firing_samples(check),
                }],
            }


def render() -> str:
    return promtool_document([
        "# Generated by tests/rerun_days.py: do not edit; change the scenarios there and run",
        "#   python tests/rerun_days.py > alerts/tests/reruns.test.yml",
        "# The schedule and runs series are the exporter's own (BatchInfoSource and RunsSource polled once a",
        "# minute, the runs from a SQLite run table as they stood at each minute); the checks, by local time:",
    ], SCENARIOS, scenario_tests)


if __name__ == "__main__":
    sys.stdout.write(render())
