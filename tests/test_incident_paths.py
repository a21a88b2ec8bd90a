"""The incident's own paths, on timelines built around a fixed instant: a business date read from the
query, a crashed run and its blind re-run, an unmapped status, a missing max_duration, a batch that never
ran. The exporter is driven through its sources with an injected clock, and as a process."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import ConfigError, parse_config
from batch_exporter.database import open_database
from batch_exporter.rerun import MAX_ATTEMPTS_READ, gather, judge
from batch_exporter.runsummary import MAX_ATTEMPTS_WITH_RECORDS, RunRow, attempts_worth_reading
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.batchinfo import BatchInfoSource
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.runs import RunsSource

TOKYO = ZoneInfo("Asia/Tokyo")
# 00:40 in Tokyo on 2026-12-03: the re-run of business date 2026-12-02 started after midnight
NOW = datetime(2026, 12, 2, 15, 40, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def tokyo(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def write_runs(db: Path, runs: list[tuple[int, str, str, datetime, datetime | None]],
               records: list[tuple[int, str, int]] = ()) -> None:  # type: ignore[assignment]
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE job_run (id INTEGER, biz TEXT, st TEXT, t0 TEXT, t1 TEXT)")
    conn.execute("CREATE TABLE auth (run_id INTEGER, state TEXT)")
    conn.executemany("INSERT INTO job_run VALUES (?, ?, ?, ?, ?)",
                     [(i, biz, st, tokyo(t0), tokyo(t1)) for i, biz, st, t0, t1 in runs])
    conn.executemany("INSERT INTO auth VALUES (?, ?)", [(r, s) for r, s, n in records for _ in range(n)])
    conn.commit()
    conn.close()


ALIASED = ("SELECT id AS run_id, biz AS business_date, st AS status, t0 AS started_at, t1 AS ended_at "
           "FROM job_run")


def config_text(db: Path, runs_block: str, extra: str = "") -> str:
    return f"""
databases:
  main: {{sqlite: {db}}}
batches:
  card-auth:
    database: main
    runs:
{runs_block}
      status: {{success: [OK], failed: [NG], running: [RUN]}}
      timezone: Asia/Tokyo
      lookback: 7d
    max_duration: 90m
    records:
      query: "SELECT state, COUNT(*) FROM auth WHERE run_id = ? GROUP BY state"
      pending_states: [AUTHORIZING]{extra}
"""


def runs_source(db: Path, runs_block: str, now: datetime, extra: str = "") -> RunsSource:
    config = parse_config(config_text(db, runs_block, extra), str(db.parent / "c.yml"))
    return RunsSource("card-auth", config.batches["card-auth"], open_database("main", sqlite=str(db)),
                      text_timestamps=True, clock=lambda: now.timestamp(), locate=config.locate)


def value(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted({"batch": "card-auth", **labels}.items()))
    return next((s.value for s in snapshot.samples if s.name == name and tuple(sorted(s.labels)) == wanted), None)


QUERY_BLOCK = f'      query: "{ALIASED}"'


# --- item 2: a business_date column returned by the query ----------------------------------------------


def test_business_date_returned_by_the_query_counts_a_rerun_after_midnight(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    # business date 2026-12-02 fails at 23:30 Tokyo; its re-run starts at 00:20 on the next calendar day
    failed = NOW - timedelta(minutes=70)
    write_runs(db, [(1, "2026-12-01", "OK", NOW - timedelta(days=1, minutes=60), NOW - timedelta(days=1)),
                    (2, "2026-12-02", "NG", failed, failed + 10 * MINUTE),
                    (3, "2026-12-02", "RUN", NOW - 20 * MINUTE, None)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_attempts") == 2
    # the date the attempts belong to, which the re-run alerts carry as a label
    assert value(snapshot, "batch_run_business_date_info", business_date="2026-12-02") == 1


def test_a_mapped_column_the_query_does_not_return_is_a_located_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [])
    block = QUERY_BLOCK + "\n      columns: {ended_at: finished_at}"
    with pytest.raises(SourceError) as caught:
        runs_source(db, block, NOW).poll()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'c.yml'}:")
    assert "batches.card-auth.runs.columns.ended_at" in message and "'finished_at'" in message


def test_a_table_without_a_business_date_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [(1, "2026-12-02", "OK", NOW - 3 * MINUTE, NOW - 2 * MINUTE)])
    block = "      table: job_run\n      columns: {run_id: id, status: st, started_at: t0, ended_at: t1}"
    runs_source(db, block, NOW).poll()
    assert "has no business date column: attempts are counted by the local start date" in caplog.text


def test_check_config_reports_missing_columns_and_a_missing_business_date(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [])
    ok = tmp_path / "ok.yml"
    ok.write_text(config_text(db, "      table: job_run\n      columns: {run_id: id, status: st, started_at: t0, "
                                  "ended_at: t1}"))
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "check-config", "-c", str(ok)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "card-auth: the run table job_run has no business date column" in result.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text(config_text(db, "      table: job_run\n      columns: {run_id: id, status: state, started_at: t0, "
                                   "ended_at: t1}"))
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "check-config", "-c", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{bad}:" in result.stderr and "batches.card-auth.runs.columns.status" in result.stderr
    assert "'state'" in result.stderr


# --- item 3: a crashed run hides its own damage ---------------------------------------------------------


def test_a_crashed_run_is_presumed_dead_and_its_rows_are_left_behind(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    crashed = NOW - 100 * MINUTE  # still marked RUN, past max_duration (90m)
    write_runs(db, [(1, "2026-12-02", "RUN", crashed, None)], [(1, "AUTHORIZING", 4), (1, "APPROVED", 6)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_presumed_dead") == 1
    assert value(snapshot, "batch_run_pending_records") == 4
    assert value(snapshot, "batch_run_left_pending_records") == 4
    # the same run 30 minutes in is alive: its pending rows are work in progress
    snapshot = runs_source(db, QUERY_BLOCK, crashed + 30 * MINUTE).poll()
    assert value(snapshot, "batch_run_presumed_dead") == 0
    assert value(snapshot, "batch_run_left_pending_records") == 0


def test_a_blind_rerun_does_not_hide_the_crashed_runs_rows(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    crashed = NOW - 200 * MINUTE
    rerun = NOW - 30 * MINUTE
    write_runs(db, [(1, "2026-12-02", "RUN", crashed, None), (2, "2026-12-02", "NG", rerun, rerun + 10 * MINUTE)],
               [(1, "AUTHORIZING", 4), (2, "AUTHORIZING", 3), (2, "APPROVED", 1)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_attempts") == 2
    assert value(snapshot, "batch_run_pending_records") == 7
    assert value(snapshot, "batch_run_left_pending_records") == 7
    assert value(snapshot, "batch_run_records", state="AUTHORIZING") == 3  # the latest attempt's own rows


# --- item 4: an unmapped status on a finished run ------------------------------------------------------


def test_a_finished_run_with_an_unmapped_status_is_failed_and_names_its_code(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [(1, "2026-12-02", "ABORTED", NOW - 60 * MINUTE, NOW - 50 * MINUTE),
                    (2, "2026-12-01", "HELD", NOW - timedelta(days=1), None)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_last_status", status="failed") == 1
    assert value(snapshot, "batch_run_last_status", status="unknown") == 0
    assert value(snapshot, "batch_run_last_status_code", code="ABORTED") == 1
    assert value(snapshot, "batch_runs", status="unknown") == 1  # HELD has no end: it may still be running


# --- item 5: no max_duration ------------------------------------------------------------------------------


def test_a_schedule_on_a_run_table_requires_max_duration(tmp_path: Path) -> None:
    text = config_text(tmp_path / "r.db", QUERY_BLOCK, "\n    schedule: {cron: '0 2 * * *', timezone: Asia/Tokyo}")
    parse_config(text, "c.yml")
    without = text.replace("    max_duration: 90m\n", "")
    with pytest.raises(ConfigError) as caught:
        parse_config(without, "c.yml")
    assert "c.yml:15: batches.card-auth.schedule: 'max_duration' is required" in str(caught.value)


# --- item 7: a batch that never ran -------------------------------------------------------------------------


def test_watching_since_is_exported_and_kept(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path / "r.db", QUERY_BLOCK, "\n    schedule: {cron: '0 2 * * *'}"), "c.yml")
    batch = config.batches["card-auth"]
    source = BatchInfoSource("card-auth", batch, clock=lambda: NOW.timestamp())
    snapshot = source.poll()
    assert value(snapshot, "batch_schedule_watched_since_timestamp_seconds") == NOW.timestamp()
    later = BatchInfoSource("card-auth", batch, clock=lambda: NOW.timestamp() + 3600,
                            watching_since=source.watching_since)
    assert value(later.poll(), "batch_schedule_watched_since_timestamp_seconds") == NOW.timestamp()


# --- the exporter and rerun-check agree on what a crashed attempt left behind ------------------------------


def verdict_of(db: Path, runs_block: str, now: datetime) -> tuple[str, list[str]]:
    config = parse_config(config_text(db, runs_block), str(db.parent / "c.yml"))
    judgement = judge(gather(config, "card-auth", now=now))
    return judgement.verdict, [f"{r.rule} {r.result}: {r.message}" for r in judgement.rules]


def test_a_crash_followed_by_many_clean_reruns_keeps_its_rows_in_view(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    crashed = NOW - 600 * MINUTE
    runs = [(1, "2026-12-02", "NG", crashed, crashed + 5 * MINUTE)]
    # then more re-runs than the records queries per poll, each failing at once without writing a row
    runs += [(i, "2026-12-02", "NG", crashed + i * 10 * MINUTE, crashed + (i * 10 + 1) * MINUTE)
             for i in range(2, MAX_ATTEMPTS_WITH_RECORDS + 6)]
    write_runs(db, runs, [(1, "AUTHORIZING", 4), (1, "APPROVED", 6)])
    source = runs_source(db, QUERY_BLOCK, NOW)
    source.poll()  # reads the newest attempts; the next poll those it has not read yet
    for _ in range(3):
        snapshot = source.poll()
        assert value(snapshot, "batch_run_attempts") == MAX_ATTEMPTS_WITH_RECORDS + 5
        assert value(snapshot, "batch_run_left_pending_records") == 4
    verdict, rules = verdict_of(db, QUERY_BLOCK, NOW)
    assert verdict == "unsafe"
    assert any(r.startswith("no_pending_rows unsafe: run 1 left 4 rows") for r in rules), rules


def test_many_successful_reruns_give_way_to_the_attempts_that_failed(tmp_path: Path) -> None:
    start = NOW - 900 * MINUTE
    runs = [(i, "2026-12-02", "OK", start + i * 10 * MINUTE, start + (i * 10 + 1) * MINUTE)
            for i in range(1, MAX_ATTEMPTS_WITH_RECORDS + 5)]
    runs[3] = (4, "2026-12-02", "NG", runs[3][3], runs[3][4])
    rows = [RunRow(str(i), b, {"OK": "success", "NG": "failed"}[s], t0, t1) for i, b, s, t0, t1 in runs]
    chosen = attempts_worth_reading(rows, NOW, 5400)
    assert len(chosen) == MAX_ATTEMPTS_WITH_RECORDS
    assert 3 in chosen and len(rows) - 1 in chosen  # the failure, and the latest attempt
    assert chosen == sorted(chosen)


def test_a_rerun_of_an_older_date_does_not_hide_todays_crash(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    crashed = NOW - 150 * MINUTE  # business date 2026-12-02 crashed, still marked RUN, past max_duration
    older = NOW - 20 * MINUTE  # then someone re-ran 2026-11-30, which succeeded
    write_runs(db, [(1, "2026-11-30", "OK", NOW - timedelta(days=2), NOW - timedelta(days=2) + 30 * MINUTE),
                    (2, "2026-12-01", "OK", NOW - timedelta(days=1), NOW - timedelta(days=1) + 30 * MINUTE),
                    (3, "2026-12-02", "RUN", crashed, None),
                    (4, "2026-11-30", "OK", older, older + 10 * MINUTE)],
               [(3, "AUTHORIZING", 4), (3, "APPROVED", 6), (4, "APPROVED", 2)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_attempts") == 1
    assert value(snapshot, "batch_run_left_pending_records") == 4
    assert value(snapshot, "batch_run_presumed_dead") == 1
    verdict, rules = verdict_of(db, QUERY_BLOCK, NOW)
    assert verdict == "unsafe"
    assert any(r.startswith("run_found ok: 1 attempt for business date 2026-12-02") for r in rules), rules


def test_an_unmapped_status_without_an_end_may_still_be_running(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    started = NOW - 30 * MINUTE
    write_runs(db, [(1, "2026-12-02", "LOADING", started, None)], [(1, "AUTHORIZING", 500)])
    snapshot = runs_source(db, QUERY_BLOCK, NOW).poll()
    assert value(snapshot, "batch_run_last_status", status="unknown") == 1
    assert value(snapshot, "batch_run_running") == 1
    assert value(snapshot, "batch_run_running_seconds") == 30 * 60
    assert value(snapshot, "batch_run_left_pending_records") == 0  # work under way, not a page
    verdict, rules = verdict_of(db, QUERY_BLOCK, NOW)
    assert verdict == "unknown"
    assert any(r.startswith("nothing_running unknown: run 1") and "may still be running" in r for r in rules), rules
    assert not any(" unsafe:" in r for r in rules), rules
    # stuck in it past max_duration (90m): presumed dead, and its rows were left behind
    later = started + 100 * MINUTE
    snapshot = runs_source(db, QUERY_BLOCK, later).poll()
    assert value(snapshot, "batch_run_presumed_dead") == 1
    assert value(snapshot, "batch_run_left_pending_records") == 500
    verdict, rules = verdict_of(db, QUERY_BLOCK, later)
    assert verdict == "unsafe"
    assert any(r.startswith("nothing_running unsafe: run 1") and "presumed dead" in r for r in rules), rules


def test_rerun_check_does_not_call_safe_what_it_did_not_read(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    start = NOW - timedelta(days=1)
    runs = [(i, "2026-12-02", "NG", start + i * MINUTE, start + i * MINUTE + timedelta(seconds=20))
            for i in range(1, MAX_ATTEMPTS_READ + 4)]
    write_runs(db, runs)  # clean failures, none of them wrote a row: only the unread ones are in doubt
    verdict, rules = verdict_of(db, QUERY_BLOCK, NOW)
    assert verdict == "unknown"
    assert any(r.startswith("no_pending_rows unknown: rows of 3 attempts were not read") for r in rules), rules


# --- timelines from the hostile review of the above ----------------------------------------------------------


def poll_and_verdict(db: Path, now: datetime = NOW, config: str | None = None) -> tuple[Snapshot, str]:
    text = config or config_text(db, QUERY_BLOCK)
    parsed = parse_config(text, str(db.parent / "c.yml"))
    source = RunsSource("card-auth", parsed.batches["card-auth"], open_database("main", sqlite=str(db)),
                        text_timestamps=True, clock=lambda: now.timestamp(), locate=parsed.locate)
    return source.poll(), judge(gather(parsed, "card-auth", now=now)).verdict


def crash_and_blind_rerun(extra: list[tuple[int, str | None, str, datetime, datetime | None]]) -> tuple[
        list[tuple[int, str | None, str, datetime, datetime | None]], list[tuple[int, str, int]]]:
    crashed, rerun = NOW - 150 * MINUTE, NOW - 10 * MINUTE
    runs = [*extra, (11, "2026-12-02", "NG", crashed, crashed + 20 * MINUTE),
            (12, "2026-12-02", "NG", rerun, rerun + 2 * MINUTE)]
    return runs, [(11, "AUTHORIZING", 4), (11, "APPROVED", 6)]


@pytest.mark.parametrize("stray", ["2062-11-29", None, "2026/11/27", "2026-11-27 00:00:00"],
                         ids=["mistyped-year", "no-business-date", "slashes", "datetime-text"])
def test_one_stray_business_date_does_not_take_over(tmp_path: Path, stray: str | None) -> None:
    db = tmp_path / "runs.db"
    # a manual run three days ago (or a reconcile run just after midnight without a business date)
    at = NOW - (timedelta(minutes=20) if stray is None else timedelta(days=3))
    runs, records = crash_and_blind_rerun([(1, stray, "OK", at, at + MINUTE)])
    write_runs(db, runs, records)  # type: ignore[arg-type]
    snapshot, verdict = poll_and_verdict(db)
    assert value(snapshot, "batch_run_attempts") == 2
    assert value(snapshot, "batch_run_left_pending_records") == 4
    assert verdict == "unsafe"


def test_an_unmapped_run_without_max_duration_still_shows_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [(1, "2026-12-02", "ABORTED", NOW - 60 * MINUTE, None)], [(1, "AUTHORIZING", 500)])
    without = config_text(db, QUERY_BLOCK).replace("    max_duration: 90m\n", "")
    snapshot, verdict = poll_and_verdict(db, config=without)
    assert value(snapshot, "batch_run_running") == 0  # it could never be presumed dead: not counted
    assert value(snapshot, "batch_run_left_pending_records") == 500
    assert verdict == "unsafe"  # running or crashed: either way not a time to re-run


def test_an_old_unmapped_row_without_an_end_is_not_tonights_long_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    write_runs(db, [(1, "2026-12-01", "HELD", NOW - timedelta(days=1), None),
                    (2, "2026-12-02", "OK", NOW - 60 * MINUTE, NOW - 30 * MINUTE)])
    snapshot, _ = poll_and_verdict(db)
    assert value(snapshot, "batch_run_running") == 0
    assert value(snapshot, "batch_run_presumed_dead") == 0
    assert value(snapshot, "batch_run_running_seconds") == 0


def test_an_attempt_read_while_running_is_read_again_once_it_ends(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    start = NOW - 600 * MINUTE
    runs: list[tuple[int, str, str, datetime, datetime | None]] = [
        (i, "2026-12-02", "OK", start + i * 10 * MINUTE, start + (i * 10 + 1) * MINUTE) for i in range(1, 39)]
    runs += [(39, "2026-12-02", "RUN", NOW - 30 * MINUTE, None), (40, "2026-12-02", "NG", NOW - 5 * MINUTE, NOW)]
    write_runs(db, runs, [(39, "AUTHORIZING", 500)])
    source = runs_source(db, QUERY_BLOCK, NOW)
    assert value(source.poll(), "batch_run_pending_records") == 500
    conn = sqlite3.connect(db)
    conn.execute("UPDATE job_run SET st = 'OK', t1 = ? WHERE id = 39", (tokyo(NOW),))
    conn.execute("UPDATE auth SET state = 'APPROVED' WHERE run_id = 39")
    conn.commit()
    conn.close()
    for _ in range(3):
        snapshot = source.poll()
        assert value(snapshot, "batch_run_left_pending_records") == 0
        assert value(snapshot, "batch_run_pending_records") == 0
