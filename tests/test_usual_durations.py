"""The usual duration of a successful run: the pure function, and what the runs source exports of it."""
from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.runsummary import RunRow, UsualDuration, summarize, usual_duration
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.runs import RunsSource

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def run(day: int, status: str = "success", minutes: float | None = 40.0, *, start: bool = True,
        run_id: str | None = None) -> RunRow:
    """A run of business date 2026-11-`day`, started at 01:00 UTC that day, lasting `minutes`."""
    began = datetime(2026, 11, day, 1, 0, tzinfo=UTC)
    return RunRow(run_id=run_id or f"r{day}-{status}", business_date=f"2026-11-{day:02d}", status=status,
                  started_at=began if start else None,
                  ended_at=None if minutes is None else began + minutes * MINUTE)


def test_count_median_and_the_inclusive_0_9_quantile() -> None:
    rows = [run(day, minutes=10.0 * day) for day in range(1, 11)]  # 10..100 minutes
    got = usual_duration(rows, UTC_ZONE, latest_key="2026-11-28")
    assert got.runs == 10
    assert got.median == 55 * 60
    # inclusive: 0.9 of the way from the lowest to the highest, (10 - 1) * 0.9 = 8.1: past the 9th by 0.1
    assert got.high == pytest.approx((90 + 0.1 * 10) * 60)


def test_the_latest_run_key_is_left_out_of_its_own_yardstick() -> None:
    rows = [run(day) for day in range(20, 27)] + [run(27, minutes=0.05), run(27, "success", 500, run_id="again")]
    got = usual_duration(rows, UTC_ZONE, latest_key="2026-11-27")
    assert (got.runs, got.median, got.high) == (7, 2400, 2400)


@pytest.mark.parametrize("left_out", [
    run(10, "failed"), run(10, "queued", None, start=False), run(10, "running", None), run(10, "unknown", None),
    run(10, "success", None),  # a success without an end
    run(10, "success", start=False),  # ... or without a start
], ids=["failed", "queued", "running", "unknown", "no-end", "no-start"])
def test_only_successes_with_a_start_and_an_end_count(left_out: RunRow) -> None:
    rows = [run(day, minutes=30.0 + day) for day in range(1, 6)]
    assert usual_duration([*rows, left_out], UTC_ZONE, "2026-11-28") == usual_duration(rows, UTC_ZONE, "2026-11-28")
    assert usual_duration([*rows, left_out], UTC_ZONE, "2026-11-28").runs == 5


def test_a_success_ending_before_its_start_is_left_out_not_counted_as_no_time() -> None:
    rows = [run(day) for day in range(1, 6)]
    defects = [run(day, minutes=-10.0) for day in range(10, 14)]  # a clock or time zone defect of the table
    assert usual_duration([*rows, *defects], UTC_ZONE, "2026-11-28") == UsualDuration(5, 2400.0, 2400.0)
    instant = run(20, minutes=0.0)  # an end at the very start is a run that took no time: it counts
    assert usual_duration([*rows, instant], UTC_ZONE, "2026-11-28").runs == 6


def test_a_latest_success_ending_before_its_start_has_no_duration() -> None:
    history = [run(day) for day in range(20, 27)]
    summary = summarize([*history, run(27, minutes=-1.0)], NOW, UTC_ZONE)
    assert summary.last_duration is None  # not 0: BatchRunSuspiciouslyFast must not fire on a defect
    assert summary.last_end == datetime(2026, 11, 27, 0, 59, tzinfo=UTC)
    assert summarize([*history, run(27, minutes=0.0)], NOW, UTC_ZONE).last_duration == 0


def test_too_few_runs_give_a_count_but_no_quantiles() -> None:
    assert usual_duration([], UTC_ZONE, None) == UsualDuration(0)
    assert usual_duration([run(1)], UTC_ZONE, None) == UsualDuration(1)
    four = usual_duration([run(day) for day in range(1, 5)], UTC_ZONE, None)
    assert four.runs == 4 and four.quantiles(5) is None
    assert four.quantiles(4) == (2400.0, 2400.0)


def test_a_three_second_success_of_a_forty_minute_batch_leaves_the_usual_duration_at_forty_minutes() -> None:
    history = [run(day, minutes=40.0 + (day % 3)) for day in range(14, 27)]  # 40-42 minutes a night
    fast = RunRow("fast", "2026-11-27", "success", datetime(2026, 11, 27, 1, 0, tzinfo=UTC),
                  datetime(2026, 11, 27, 1, 0, 3, tzinfo=UTC))
    summary = summarize([*history, fast], NOW, UTC_ZONE)
    assert summary.last_duration == 3
    quantiles = summary.usual.quantiles(5)
    assert quantiles is not None
    assert 40 * 60 <= quantiles[0] <= 42 * 60 and 40 * 60 <= quantiles[1] <= 42 * 60
    # the next night it is history: one odd run among 14 moves neither quantile far
    next_night = run(28, minutes=41.0)
    quantiles = summarize([*history, fast, next_night], NOW + timedelta(days=1), UTC_ZONE).usual.quantiles(5)
    assert quantiles is not None
    assert 40 * 60 <= quantiles[0] <= 42 * 60 and 40 * 60 <= quantiles[1] <= 42 * 60


# --- what the runs source exports ---------------------------------------------------------------


def source(tmp_path: Path, rows: list[tuple[object, ...]], min_history: int | None = None) -> RunsSource:
    db = tmp_path / "runs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE batch_run (run_id INTEGER, biz_date TEXT, status TEXT, started_at, ended_at)")
    conn.executemany("INSERT INTO batch_run VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    extra = f", min_history: {min_history}" if min_history is not None else ""
    text = (f"databases: {{l: {{sqlite: {db}}}}}\nbatches:\n  b:\n    database: l\n    runs: {{table: batch_run, "
            f"columns: {{business_date: biz_date}}, status: {{success: [OK], failed: [NG], running: [RUN]}}, "
            f"lookback: 30d{extra}}}\n")
    config = parse_config(text, "x.yml")
    return RunsSource("b", config.batches["b"], open_database("l", sqlite=str(db)), text_timestamps=True,
                      clock=lambda: NOW.timestamp())


def nightly(days: int, minutes: float = 40.0) -> list[tuple[object, ...]]:
    """`days` nights of successes before NOW's date, each at 01:00 UTC, as epoch seconds."""
    rows: list[tuple[object, ...]] = []
    for back in range(1, days + 1):
        start = datetime(2026, 11, 28, 1, 0, tzinfo=UTC) - timedelta(days=back)
        rows.append((back, start.date().isoformat(), "OK", start.timestamp(), (start + minutes * MINUTE).timestamp()))
    return rows


def usual(snapshot: Snapshot) -> dict[str, float]:
    return {dict(s.labels).get("quantile", s.name): s.value for s in snapshot.samples
            if s.name.startswith("batch_run_usual_duration")}


def test_the_source_exports_the_count_and_the_threshold_but_no_quantile_below_min_history(tmp_path: Path) -> None:
    # five nights, the latest of them the run judged: four in the yardstick, one short of the default 5
    got = usual(source(tmp_path, nightly(5)).poll())
    assert got == {"batch_run_usual_duration_runs": 4, "batch_run_usual_duration_min_runs": 5}


def test_the_source_exports_both_quantiles_once_min_history_is_reached(tmp_path: Path) -> None:
    started = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    tonight = (99, "2026-11-28", "OK", started.timestamp(), started.timestamp() + 3)  # 3 seconds: judged
    got = usual(source(tmp_path, [*nightly(3), tonight], min_history=3).poll())
    assert got == {"batch_run_usual_duration_runs": 3, "batch_run_usual_duration_min_runs": 3,
                   "0.5": 2400, "0.9": 2400}


def test_a_batch_that_never_succeeded_still_says_how_far_it_is_from_a_usual_duration(tmp_path: Path) -> None:
    start = (NOW - timedelta(hours=2)).timestamp()
    got = usual(source(tmp_path, [(1, "2026-11-28", "NG", start, start + 60)]).poll())
    assert got == {"batch_run_usual_duration_runs": 0, "batch_run_usual_duration_min_runs": 5}


def test_the_latest_run_accessor_gives_the_last_successful_polls_latest_run(tmp_path: Path) -> None:
    started = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    src = source(tmp_path, [*nightly(2), (7, "2026-11-28", "RUN", started.timestamp(), None)])
    assert src.latest_run() is None  # before any poll
    src.poll()
    latest = src.latest_run()
    assert latest is not None
    run = latest.run
    assert (run.run_id, run.status, run.started_at, run.ended_at) == ("7", "running", started, None)
    assert latest.previous_end == datetime(2026, 11, 27, 1, 40, tzinfo=UTC)  # last night's run's end


def test_the_previous_end_is_of_any_run_key_and_at_or_before_the_latest_start(tmp_path: Path) -> None:
    started = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    retry = (9, "2026-11-28", "RUN", started.timestamp(), None)
    failed = (8, "2026-11-28", "NG", (started - 600 * SECOND).timestamp(), (started - SECOND).timestamp())
    rerun = (5, "2026-11-20", "OK", (started - 1200 * SECOND).timestamp(), started.timestamp())  # an older key
    overlapping = (6, "2026-11-21", "OK", (started - 300 * SECOND).timestamp(), (started + SECOND).timestamp())

    def latest_of(rows: list[tuple[object, ...]], folder: str) -> tuple[str, datetime | None]:
        (tmp_path / folder).mkdir()
        src = source(tmp_path / folder, rows)
        src.poll()
        latest = src.latest_run()
        assert latest is not None
        return latest.run.run_id, latest.previous_end

    assert latest_of([*nightly(2), failed, retry], "failed") == ("9", started - SECOND)
    # the re-run of an older key ended as the retry started; the one that ended after it is no previous run
    assert latest_of([*nightly(2), failed, rerun, overlapping, retry], "rerun") == ("9", started)
    assert latest_of([retry], "alone") == ("9", None)
