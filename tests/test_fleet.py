"""Fleets (docs/fleet.md): a scheduler's run table read with one statement per poll, each job exported as
the batch it stands for, filters, overrides, shards, the command line, and the configuration's errors.

Run tables hold instants relative to NOW; every source gets its clock, and the exporter as a process
runs under faketime at NOW, in UTC whatever the machine's zone."""
from __future__ import annotations

import hashlib
import logging
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.app import Exporter
from batch_exporter.cli import build_parser
from batch_exporter.config import ConfigError, parse_config
from batch_exporter.database import Consume, Database, QueryError, Row, open_database
from batch_exporter.run_statements import build_fleet_last_success_query, build_window_query
from batch_exporter.shards import MAX_SHARDS, Shard, parse_shard, shard_of
from batch_exporter.snapshot import Sample, Snapshot
from batch_exporter.sources.batchinfo import BatchInfo, BatchInfoSource
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.fleet import FleetSource, JobClaims, job_label
from batch_exporter.sources.runs import RunsSource
from db_servers import admin_connection, odbc_connection_string, odbc_params, unique_name
from exporter_process import parse_exposition, running_exporter, value
from test_doc_examples import exporter, fenced_blocks

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
TOKYO = ZoneInfo("Asia/Tokyo")
WATCHED = (NOW - timedelta(days=30)).timestamp()
DOC = Path(__file__).resolve().parents[1] / "docs" / "fleet.md"

COLUMNS = "run_id: exec_id, business_date: biz_date, status: exec_status, started_at: start_ts, ended_at: end_ts"
STATUS = "{success: [C], failed: [E, A], running: [R]}"
# each job's settings, written the same way for a batch and for a fleet's job
DEFAULTS = "{max_duration: 2h, idempotent: false, schedule: {cron: '0 3 * * *', timezone: Asia/Tokyo, grace: 30m}}"
OVERRIDES = {
    "card-auth": "{max_duration: 90m, schedule: {cron: '0 2 * * *', timezone: Asia/Tokyo, calendar: jp, "
                 "finish_by: '06:00'}}",
    "card-refund": "{idempotent: true, schedule: {cron: '30 1 * * 1-5', timezone: Asia/Tokyo}}",
    "card-idle": "{}",  # no run at all: exported all the same
}
JOBS = ("card-auth", "card-idle", "card-refund", "card-settle")
SETTINGS = {
    "card-auth": "{max_duration: 90m, idempotent: false, schedule: {cron: '0 2 * * *', timezone: Asia/Tokyo, "
                 "calendar: jp, finish_by: '06:00'}}",
    "card-refund": "{max_duration: 2h, idempotent: true, schedule: {cron: '30 1 * * 1-5', timezone: Asia/Tokyo}}",
    "card-idle": DEFAULTS,
    "card-settle": DEFAULTS,
}


def runs_fields(columns: str) -> str:
    """A runs section's keys but the table, in a flow mapping."""
    return f"columns: {{{columns}}}, status: {STATUS}, lookback: 3d, timezone: Asia/Tokyo, min_history: 3"


def local(moment: datetime | None) -> str | None:
    """Naive Tokyo text, as the scheduler writes it."""
    return None if moment is None else moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def run_table(path: Path, rows: Sequence[tuple[object, ...]]) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE job_execution (exec_id INTEGER, job_name TEXT, biz_date TEXT, exec_status TEXT, "
                 "start_ts TEXT, end_ts TEXT)")
    conn.executemany("INSERT INTO job_execution VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def add_rows(path: Path, rows: Sequence[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO job_execution VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def run(run_id: int, job: str, start: datetime, status: str = "C", minutes: int | None = 30,
        key: str | None = None) -> tuple[object, ...]:
    end = None if minutes is None else start + timedelta(minutes=minutes)
    return (run_id, job, key or start.astimezone(TOKYO).date().isoformat(), status, local(start), local(end))


def fleet_yaml(db: Path, *, where: str = "job_name <> 'noise'", jobs: str = "{include: '^card-', exclude: 'test$'}",
               shard: str | None = None, extra: str = "", batches: str = "") -> str:
    runs = runs_fields(f"job: job_name, {COLUMNS}")
    overrides = "".join(f"      {job}: {settings}\n" for job, settings in OVERRIDES.items())
    text = (f"databases: {{db: {{sqlite: '{db}'}}}}\ncalendars: {{jp: {{country: JP}}}}\n{batches}"
            f"fleets:\n  agent:\n    database: db\n"
            f"    runs: {{table: job_execution, where: \"{where}\", {runs}}}\n"
            f"    jobs: {jobs}\n    defaults: {DEFAULTS}\n    overrides:\n{overrides}{extra}")
    return text + (f"    shard: '{shard}'\n" if shard else "")


def batches_yaml(db: Path, jobs: Sequence[str] = JOBS) -> str:
    runs = runs_fields(COLUMNS)
    text = f"databases: {{db: {{sqlite: '{db}'}}}}\ncalendars: {{jp: {{country: JP}}}}\nbatches:\n"
    for job in jobs:
        text += (f"  {job}: {{database: db, runs: {{table: job_execution, where: \"job_name = '{job}'\", {runs}}}, "
                 f"{SETTINGS[job][1:-1]}}}\n")
    return text


class Recorder(Database):
    """A database that notes every statement sent to it."""

    def __init__(self, inner: Database) -> None:
        self.name = inner.name
        self.inner = inner
        self.sent: list[str] = []

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self.sent.append(sql)
        return self.inner.query(sql, params)

    def query_batches(self, sql: str, params: Sequence[object], consume: Consume) -> None:
        self.sent.append(sql)
        self.inner.query_batches(sql, params, consume)

    def close(self) -> None:
        self.inner.close()

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


def fleet_source(text: str, db: Path | Database, clock: list[float], **kwargs: object) -> FleetSource:
    config = parse_config(text, "fleet.yml")
    database = db if isinstance(db, Database) else open_database("db", sqlite=str(db))
    return FleetSource("agent", config.fleets["agent"], database, calendars=config.calendars, text_timestamps=True,
                       clock=lambda: clock[0], **kwargs)  # type: ignore[arg-type]


def as_batches_and_as_a_fleet(db: Path, clock: list[float]) -> tuple[list[BatchInfoSource | RunsSource], FleetSource]:
    """The same jobs read two ways on one clock: each as a batch (its config and runs sources), and as a fleet."""
    as_batches = parse_config(batches_yaml(db), "batches.yml")
    database = open_database("db", sqlite=str(db))
    batch_sources: list[BatchInfoSource | RunsSource] = []
    for name, batch in as_batches.batches.items():
        batch_sources.append(BatchInfoSource(name, batch, clock=lambda: clock[0], watching_since=WATCHED,
                                             calendars=as_batches.calendars))
        # wired as app.build_sources does: the runs source knows the schedule's latest expected start
        batch_sources.append(RunsSource(name, batch, database, text_timestamps=True, clock=lambda: clock[0],
                                        expected=BatchInfo(batch, as_batches.calendars).expected))
    return batch_sources, fleet_source(fleet_yaml(db), db, clock, watching_since=dict.fromkeys(JOBS, WATCHED))


Key = tuple[str, tuple[tuple[str, str], ...], float]


def series(samples: Sequence[Sample]) -> Counter[Key]:
    return Counter((s.name, s.labels, s.value) for s in samples if not s.name.startswith("batch_exporter_"))


def of_job(snapshot: Snapshot, job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in snapshot.samples if dict(s.labels).get("batch") == job}


def sample(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    wanted = tuple(sorted(labels.items()))
    return next((s.value for s in snapshot.samples if s.name == name and tuple(sorted(s.labels)) == wanted), None)


def jobs_of(snapshot: Snapshot) -> set[str]:
    return {dict(s.labels)["batch"] for s in snapshot.samples if s.name == "batch_run_idempotent"}


# --- each job is the batch it stands for ----------------------------------------------------------------


def random_history(rng: random.Random) -> list[tuple[object, ...]]:
    """Runs of every job over 8 days (the window is 3): re-runs, failures, unmapped statuses, runs still
    going, successes only before the window; `card-test` (filtered out) and `noise` (not in `where`) too."""
    rows: list[tuple[object, ...]] = []
    for job in ("card-auth", "card-refund", "card-settle", "card-test", "noise"):
        for day in range(8):
            if rng.random() < 0.3:
                continue
            key = (NOW - timedelta(days=day)).astimezone(TOKYO).date().isoformat()
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                start = NOW - timedelta(days=day, hours=rng.randint(0, 20), minutes=rng.randint(0, 59))
                status = rng.choice("CCCCCEAXR")
                minutes = None if status == "R" else rng.randint(1, 200)
                rows.append(run(len(rows) + 1, job, start, status, minutes, key))
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_every_job_exports_what_the_same_job_configured_as_a_batch_exports(tmp_path: Path, seed: int) -> None:
    rows = random_history(random.Random(seed))
    db = run_table(tmp_path / "runs.db", rows)
    latest = {job: max(datetime.fromisoformat(str(r[4])).replace(tzinfo=TOKYO) for r in rows if r[1] == job)
              for job in {str(r[1]) for r in rows}}
    clock = [NOW.timestamp()]
    batch_sources, fleet = as_batches_and_as_a_fleet(db, clock)
    # successes leave the 3-day window as the clock moves on: the latest one is remembered on both sides
    for later in (timedelta(0), timedelta(hours=5), timedelta(days=2), timedelta(days=5)):
        clock[0] = (NOW + later).timestamp()
        # the jobs named under overrides, and those the first poll found that began a run in the last 6 days
        # (a lookback in the window, one more after it)
        found = {job for job in ("card-auth", "card-refund", "card-settle") if job in latest
                 and latest[job] >= NOW - timedelta(days=3) and NOW + later - latest[job] < timedelta(days=6)}
        jobs = set(OVERRIDES) | found
        got = fleet.poll()
        assert jobs_of(got) == jobs, f"after {later}"
        assert sample(got, "batch_exporter_fleet_jobs", fleet="agent") == len(jobs)
        expected = series([s for source in batch_sources for s in source.poll().samples
                           if dict(s.labels).get("batch") in jobs])
        assert series(got.samples) == expected, f"after {later}"


def test_the_batches_and_the_fleet_compared_above_configure_each_job_alike(tmp_path: Path) -> None:
    # the comparison above rests on batches_yaml writing each job's settings as the fleet does
    db = run_table(tmp_path / "runs.db", [])
    batches = parse_config(batches_yaml(db), "b.yml").batches
    fleet = parse_config(fleet_yaml(db), "f.yml").fleets["agent"]
    for job in JOBS:
        settings = fleet.settings_of(job)
        batch = batches[job]
        assert (settings.max_duration, settings.idempotent, settings.schedule) == \
            (batch.max_duration, batch.idempotent, batch.schedule), job
        assert batch.runs is not None and batch.runs.lookback == fleet.runs.lookback


# --- one statement per poll ------------------------------------------------------------------------------


def test_a_poll_sends_one_window_statement_and_the_grouped_success_once(tmp_path: Path) -> None:
    rows = [run(i, job, NOW - timedelta(days=day, hours=2)) for i, (job, day) in enumerate(
        ((job, day) for job in ("card-auth", "card-settle", "card-refund") for day in range(3)), 1)]
    db = run_table(tmp_path / "runs.db", rows)
    recorder = Recorder(open_database("db", sqlite=str(db)))
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), recorder, clock)
    runs = parse_config(fleet_yaml(db), "f.yml").fleets["agent"].runs
    window, grouped = build_window_query(runs), build_fleet_last_success_query(runs)

    source.poll()
    first = recorder.take()
    assert first[-1] == grouped and first.count(grouped) == 1, "card-idle has no success: one grouped lookup"
    assert first.count(window) == 1
    assert len(first) <= source.max_statements_per_poll
    for _ in range(3):
        clock[0] += 30
        source.poll()
        assert recorder.take() == [window]
    # a new job without a success in its window: one grouped statement for it, once
    add_rows(db, [run(100, "card-new", NOW - timedelta(days=5)), run(101, "card-new", NOW, "E")])
    clock[0] += 30
    snapshot = source.poll()
    sent = recorder.take()
    assert len(sent) == 2 and sent[1] == grouped
    assert sample(snapshot, "batch_run_last_success_timestamp_seconds", batch="card-new") == \
        (NOW - timedelta(days=5, minutes=-30)).timestamp()
    clock[0] += 30
    source.poll()
    assert len(recorder.take()) == 1


def test_the_grouped_success_before_the_window_for_a_table_that_keeps_durations(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE job_execution (exec_id INTEGER, job_name TEXT, exec_status TEXT, start_ts TEXT, "
                 "secs INTEGER)")
    old = NOW - timedelta(days=6)
    conn.executemany("INSERT INTO job_execution VALUES (?, ?, ?, ?, ?)", [
        (1, "card-a", "C", local(old), 600), (2, "card-a", "C", local(old - timedelta(days=1)), 60),
        (3, "card-b", "C", local(old), 60), (4, "card-b", "C", local(old), 900),  # two rows at one start
        (5, "card-a", "E", local(NOW - timedelta(hours=1)), 10)])
    conn.commit()
    conn.close()
    text = (f"databases: {{db: {{sqlite: '{db}'}}}}\nfleets:\n  agent:\n    database: db\n"
            "    runs: {table: job_execution, columns: {job: job_name, run_id: exec_id, status: exec_status, "
            "started_at: start_ts, duration: secs}, status: {success: [C], failed: [E]}, lookback: 3d, "
            "timezone: Asia/Tokyo}\n    overrides: {card-b: {}}\n")
    snapshot = fleet_source(text, db, [NOW.timestamp()]).poll()
    assert sample(snapshot, "batch_run_last_success_timestamp_seconds", batch="card-a") == old.timestamp() + 600
    assert sample(snapshot, "batch_run_last_success_timestamp_seconds", batch="card-b") == old.timestamp() + 900


# --- which jobs --------------------------------------------------------------------------------------------


def test_the_filter_the_where_and_the_overrides_choose_the_jobs(tmp_path: Path) -> None:
    rows = [run(1, "card-auth", NOW - timedelta(hours=9)), run(2, "card-test", NOW - timedelta(hours=9)),
            run(3, "noise", NOW - timedelta(hours=9)), run(4, "payroll", NOW - timedelta(hours=9)),
            run(5, "card-settle", NOW - timedelta(hours=8), "R", None)]
    db = run_table(tmp_path / "runs.db", rows)
    snapshot = fleet_source(fleet_yaml(db), db, [NOW.timestamp()]).poll()
    # card-test: excluded; noise: not in `where`; payroll: not included; card-idle and card-refund: named
    assert jobs_of(snapshot) == {"card-auth", "card-settle", "card-idle", "card-refund"}
    assert sample(snapshot, "batch_exporter_fleet_jobs", fleet="agent") == 4
    # an override's keys replace the defaults', the others stay
    assert sample(snapshot, "batch_run_max_duration_seconds", batch="card-auth") == 90 * 60
    assert sample(snapshot, "batch_run_max_duration_seconds", batch="card-refund") == 2 * 3600
    assert sample(snapshot, "batch_run_idempotent", batch="card-refund") == 1
    assert sample(snapshot, "batch_run_idempotent", batch="card-settle") == 0
    assert sample(snapshot, "batch_schedule_grace_seconds", batch="card-settle") == 30 * 60
    assert sample(snapshot, "batch_schedule_finish_deadline_timestamp_seconds", batch="card-auth") is not None
    # a job named under overrides with no run is there, like a batch that never ran
    assert sample(snapshot, "batch_run_attempts", batch="card-idle") == 0
    assert sample(snapshot, "batch_run_last_start_timestamp_seconds", batch="card-idle") is None
    assert sample(snapshot, "batch_run_running", batch="card-settle") == 1


def test_a_job_whose_runs_left_the_window_is_kept_one_more_lookback_then_dropped(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-gone", NOW - timedelta(hours=1))])
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), db, clock)
    assert "card-gone" in jobs_of(source.poll())
    clock[0] = (NOW + timedelta(days=4)).timestamp()  # its run has left the 3-day window
    snapshot = source.poll()
    assert "card-gone" in jobs_of(snapshot)
    assert sample(snapshot, "batch_runs", batch="card-gone", status="success") == 0
    assert sample(snapshot, "batch_run_last_success_timestamp_seconds", batch="card-gone") == \
        (NOW - timedelta(minutes=30)).timestamp()
    clock[0] = (NOW + timedelta(days=5, hours=22)).timestamp()
    assert "card-gone" in jobs_of(source.poll())
    clock[0] = (NOW + timedelta(days=6)).timestamp()  # a lookback after it left the window
    snapshot = source.poll()
    assert "card-gone" not in jobs_of(snapshot)
    assert {"card-auth", "card-idle", "card-refund"} <= jobs_of(snapshot)  # named: kept whatever happens


def test_a_job_named_like_a_batch_is_left_out_with_one_warning(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-settle", NOW - timedelta(hours=2)),
                                          run(2, "card-other", NOW - timedelta(hours=2))])
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), db, clock, claims=JobClaims(["card-settle"]))
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.fleet"):
        for _ in range(3):
            snapshot = source.poll()
            clock[0] += 30
    assert "card-settle" not in jobs_of(snapshot) and "card-other" in jobs_of(snapshot)
    warnings = [r.getMessage() for r in caplog.records if "card-settle" in r.getMessage()]
    assert len(warnings) == 1 and "already exported by batch card-settle" in warnings[0]


def test_two_fleets_finding_one_job_export_it_once(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-both", NOW - timedelta(hours=2))])
    claims = JobClaims()
    config = parse_config(fleet_yaml(db), "f.yml")
    first, second = (FleetSource(name, config.fleets["agent"], open_database("db", sqlite=str(db)),
                                 calendars=config.calendars, claims=claims, text_timestamps=True,
                                 clock=NOW.timestamp) for name in ("agent", "night"))
    assert "card-both" in jobs_of(first.poll())
    assert "card-both" not in jobs_of(second.poll())
    assert sample(second.poll(), "batch_exporter_fleet_jobs", fleet="night") == 0  # all taken by agent


def test_a_job_left_out_is_exported_once_the_fleet_that_had_it_lets_it_go(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-both", NOW - timedelta(hours=2))])
    claims = JobClaims()
    config = parse_config(fleet_yaml(db), "f.yml")
    clock = [NOW.timestamp()]
    first, second = (FleetSource(name, config.fleets["agent"], open_database("db", sqlite=str(db)),
                                 calendars=config.calendars, claims=claims, text_timestamps=True,
                                 clock=lambda: clock[0]) for name in ("agent", "night"))
    assert "card-both" in jobs_of(first.poll()) and "card-both" not in jobs_of(second.poll())
    clock[0] = (NOW + timedelta(days=30)).timestamp()  # two lookbacks on: the first fleet drops the job
    assert "card-both" not in jobs_of(first.poll())
    clock[0] = NOW.timestamp() + 60  # the second fleet reads a window that still holds it (another where)
    assert "card-both" in jobs_of(second.poll())  # not left out for the life of the source


def test_card_numbers_in_job_names_are_masked_and_two_names_masked_alike_export_once(tmp_path: Path) -> None:
    rows = [run(1, "card-4111111111111111", NOW - timedelta(hours=2)),
            run(2, "card-4000000000061111", NOW - timedelta(hours=3), "E")]
    db = run_table(tmp_path / "runs.db", rows)
    snapshot = fleet_source(fleet_yaml(db), db, [NOW.timestamp()]).poll()
    masked = [dict(s.labels)["batch"] for s in snapshot.samples if s.name == "batch_run_idempotent"
              and dict(s.labels)["batch"].endswith("1111")]
    assert masked == ["card-************1111"]  # once: one series per name
    assert sample(snapshot, "batch_runs", batch=masked[0], status="failed") == 1  # the first name, in order
    assert sample(snapshot, "batch_exporter_fleet_jobs", fleet="agent") == 4
    assert not any("4111111111111111" in str(s) or "4000000000061111" in str(s) for s in snapshot.samples)


def test_unreadable_rows_fail_the_poll_but_only_their_job_keeps_old_series(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-auth", NOW - timedelta(hours=2)),
                                          run(2, "card-settle", NOW - timedelta(hours=2))])
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), db, clock)
    before = source.poll()
    add_rows(db, [(3, "card-settle", "2026-11-28", "C", local(NOW - timedelta(hours=1)), "the 3rd of never"),
                  (4, "card-auth", "2026-11-28", "E", local(NOW - timedelta(minutes=50)), local(NOW))])
    clock[0] += 60
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert caught.value.reason == "data" and "job card-settle: runs row: column ended_at" in str(caught.value)
    partial = caught.value.snapshot
    assert partial is not None
    assert of_job(partial, "card-settle") == of_job(before, "card-settle")
    assert sample(partial, "batch_run_last_status", batch="card-auth", status="failed") == 1


def test_jobs_without_a_name_are_not_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-auth", NOW - timedelta(hours=2))])
    add_rows(db, [(2, None, "2026-11-28", "E", local(NOW - timedelta(hours=1)), local(NOW))])
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.fleet"):
        snapshot = fleet_source(fleet_yaml(db, where="1 = 1", jobs="{}"), db, [NOW.timestamp()]).poll()
    assert sum(v for (name, labels), v in of_job(snapshot, "card-auth").items() if name == "batch_runs") == 1
    assert any("1 rows of the window have no job" in r.getMessage() for r in caplog.records)


def test_when_each_job_was_first_watched_is_kept_across_a_reload(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(1, "card-auth", NOW - timedelta(hours=2))])
    config = parse_config(fleet_yaml(db), "f.yml")
    old = Exporter(config, keep_log_state=False)
    try:
        old.poller.poll_all_once()
        since = old.watching_since
    finally:
        old.stop()
    assert {"agent/card-auth", "agent/card-idle", "agent/card-refund"} <= set(since)
    handed = {key: WATCHED for key in since}
    new = Exporter(config, handed, keep_log_state=False)
    try:
        new.poller.poll_all_once()
        assert new.watching_since["agent/card-auth"] == WATCHED
        served = parse_exposition(new.store.payload()[0].decode())
    finally:
        new.stop()
    assert value(served, "batch_schedule_watched_since_timestamp_seconds", batch="card-auth") == WATCHED


# --- shards -----------------------------------------------------------------------------------------------


def test_the_shard_of_a_job_is_fixed_by_its_name_alone() -> None:
    # written out: a release that changed the formula would move every job to another exporter
    assert [shard_of(job, 4) for job in ("card-authorization", "card-settle", "ジョブ", "")] == [
        int(hashlib.sha256(job.encode()).hexdigest()[:8], 16) % 4 for job in ("card-authorization", "card-settle",
                                                                             "ジョブ", "")]
    assert shard_of("card-authorization", 4) == 1 and shard_of("card-settle", 7) == 0
    assert shard_of("card-authorization", 1000) == 213
    script = "from batch_exporter.shards import shard_of; print(shard_of('card-authorization', 1000))"
    other_process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                   env={"PYTHONHASHSEED": "12345"}, check=True, timeout=60)
    assert other_process.stdout.strip() == "213"


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_every_job_is_in_exactly_one_shard(count: int) -> None:
    jobs = [f"job-{i}" for i in range(2000)] + ["card-authorization", "ジョブ-1", "x" * 200]
    taken = Counter(job for index in range(count) for job in jobs if Shard(index, count).takes(job))
    assert set(taken) == set(jobs) and set(taken.values()) == {1}
    if count > 1:  # and the shards are not lopsided
        sizes = Counter(shard_of(job, count) for job in jobs)
        assert min(sizes.values()) > len(jobs) / count * 0.8


def test_exporters_of_every_shard_together_export_every_job_once(tmp_path: Path) -> None:
    names = [f"card-{i:03d}" for i in range(60)]
    db = run_table(tmp_path / "runs.db", [run(i, job, NOW - timedelta(hours=2)) for i, job in enumerate(names)])
    exported: Counter[str] = Counter()
    for index in range(3):
        snapshot = fleet_source(fleet_yaml(db), db, [NOW.timestamp()], shard=Shard(index, 3)).poll()
        jobs = jobs_of(snapshot)
        exported.update(jobs)
        assert sample(snapshot, "batch_exporter_fleet_shard", fleet="agent", shard=str(index)) == 3
        assert sample(snapshot, "batch_exporter_fleet_jobs", fleet="agent") == len(jobs)
        assert all(shard_of(job, 3) == index for job in jobs)
    assert set(exported) == set(names) | {"card-auth", "card-idle", "card-refund"}
    assert set(exported.values()) == {1}


def test_the_configured_shard_and_the_one_given_to_the_source(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [run(i, f"card-{i}", NOW) for i in range(20)])
    configured = fleet_source(fleet_yaml(db, shard="1/2"), db, [NOW.timestamp()])
    assert configured.shard == Shard(1, 2)
    assert all(shard_of(job, 2) == 1 for job in jobs_of(configured.poll()))
    overridden = fleet_source(fleet_yaml(db, shard="1/2"), db, [NOW.timestamp()], shard=Shard(0, 5))
    snapshot = overridden.poll()
    assert all(shard_of(job, 5) == 0 for job in jobs_of(snapshot))
    assert sample(snapshot, "batch_exporter_fleet_shard", fleet="agent", shard="0") == 5
    whole = fleet_source(fleet_yaml(db), db, [NOW.timestamp()]).poll()
    assert sample(whole, "batch_exporter_fleet_shard", fleet="agent", shard="0") == 1


@pytest.mark.parametrize(("text", "shard"), [("0/4", Shard(0, 4)), ("3/4", Shard(3, 4)), (" 2 / 3 ", Shard(2, 3)),
                                             ("0/1", Shard(0, 1)), (f"0/{MAX_SHARDS}", Shard(0, MAX_SHARDS))])
def test_shard_flags_that_parse(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert build_parser().parse_args(["once", "-c", "x.yml", "--shard", text]).shard == shard
    assert build_parser().parse_args(["run", "-c", "x.yml", "--shard", text]).shard == shard


@pytest.mark.parametrize(("text", "why"), [
    ("4/4", "shard 4 does not exist among 4 (0 to 3)"), ("0/0", "0 shards is out of range"),
    (f"0/{MAX_SHARDS + 1}", f"{MAX_SHARDS + 1} shards is out of range"), ("1", "got '1'"), ("-1/2", "got '-1/2'"),
    ("a/b", "got 'a/b'"), ("1/2/3", "got '1/2/3'"), ("\u0661/\u0662", "got '\u0661/\u0662'")])
def test_shard_flags_that_do_not(text: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="expected 'i/n'"):
        parse_shard(text)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["once", "-c", "x.yml", f"--shard={text}"])
    err = capsys.readouterr().err
    assert "argument --shard: expected 'i/n'" in err and why in err


# --- configuration errors, located --------------------------------------------------------------------------


def errors_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "f.yml", env={})
    return str(caught.value)


def test_a_fleet_needs_a_job_column_a_known_database_and_a_valid_shard(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    good = fleet_yaml(db, shard="0/2")
    assert "f.yml:6: fleets.agent.runs.columns.job: required field is missing" in errors_of(
        good.replace("job: job_name, ", ""))
    assert "f.yml:5: fleets.agent.database: unknown database 'nope' (known: db)" in errors_of(
        good.replace("database: db", "database: nope"))
    assert "f.yml:13: fleets.agent.shard: expected 'i/n'" in errors_of(good.replace("'0/2'", "'2/2'"))
    assert "fleets.agent.jobs.include: not a valid regular expression" in errors_of(
        good.replace("include: '^card-'", "include: '^card-('"))
    assert "f.yml:6: fleets.agent.runs.where: '1 = 1; DELETE FROM job_execution' contains a ';'" in errors_of(
        good.replace("job_name <> 'noise'", "1 = 1; DELETE FROM job_execution"))


def test_sections_a_fleet_job_cannot_have_are_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    message = errors_of(fleet_yaml(db, extra="    records: {query: 'SELECT 1'}\n"))
    assert "f.yml:5: fleets.agent: 'records' is not read for the jobs of a fleet" in message
    assert "configure a job that needs it as a batch and exclude it" in message
    message = errors_of(fleet_yaml(db).replace("card-idle: {}", "card-idle: {checks: {x: {query: 'SELECT 1'}}}"))
    assert "fleets.agent.overrides.card-idle: 'checks' is not read for the jobs of a fleet" in message


def test_job_settings_are_checked_where_they_are_written(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    message = errors_of(fleet_yaml(db).replace("card-idle: {}", "card-idle: {schedule: {query: 'SELECT 1, 2, 0'}}"))
    assert "f.yml:12: fleets.agent.overrides.card-idle.schedule.query: a fleet's jobs are scheduled by cron" in message
    message = errors_of(fleet_yaml(db).replace("card-idle: {}", "card-idle: {schedule: {cron: '0 25 * * *'}}"))
    assert "fleets.agent.overrides.card-idle.schedule.cron:" in message
    message = errors_of(fleet_yaml(db).replace("card-idle: {}", "card-idle: {schedule: {cron: '0 2 * * *', "
                                                                  "calendar: nope}}"))
    assert "fleets.agent.overrides.card-idle.schedule.calendar: unknown calendar 'nope'" in message
    message = errors_of(fleet_yaml(db).replace("max_duration: 2h, ", ""))
    assert "f.yml:8: fleets.agent.defaults: 'max_duration' is required with 'schedule'" in message
    assert "overrides.card-refund: 'max_duration' is required" in message  # its schedule, no max_duration
    assert "overrides.card-auth" not in message and "overrides.card-idle" not in message  # each has its own, or none
    # the defaults' own problem is reported once, under defaults
    message = errors_of(fleet_yaml(db).replace("cron: '0 3 * * *'", "cron: '0 3 * *'"))
    assert message.count("schedule.cron") == 1 and "fleets.agent.defaults.schedule.cron" in message


def test_jobs_named_under_overrides_are_checked(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    batch = ("batches:\n  card-idle:\n    database: db\n    runs: {table: job_execution, "
             "where: \"job_name = 'card-idle'\", " + runs_fields(COLUMNS) + "}\n")
    message = errors_of(fleet_yaml(db, batches=batch))
    assert "fleets.agent.overrides.card-idle: job 'card-idle' is also configured as a batch" in message
    message = errors_of(fleet_yaml(db).replace("card-idle: {}", "card-idle-test: {}"))
    assert "fleets.agent.overrides.card-idle-test: job 'card-idle-test' is left out by the fleet's jobs.include " \
           "/ jobs.exclude" in message
    two = fleet_yaml(db) + fleet_yaml(db).split("fleets:\n", 1)[1].replace("  agent:", "  night:", 1)
    assert "fleets.night.overrides.card-auth: job 'card-auth' is also named under fleets.agent.overrides" in \
        errors_of(two)


def test_a_configuration_needs_a_batch_or_a_fleet() -> None:
    assert "batches: required field is missing: configure at least one batch (or a fleet" in errors_of(
        "databases: {db: {sqlite: x.db}}\n")


# --- the command line and the exporter as a process ----------------------------------------------------------


def test_once_prints_a_fleet_jobs_series_and_takes_its_shard_from_the_command_line(tmp_path: Path) -> None:
    names = [f"card-{i:02d}" for i in range(12)]
    rows = [run(i, job, NOW - timedelta(hours=20)) for i, job in enumerate(names, 1)]
    db = run_table(tmp_path / "runs.db", rows + [run(99, "card-00", NOW - timedelta(hours=1), "E")])
    config = tmp_path / "fleet.yml"
    config.write_text(fleet_yaml(db), encoding="utf-8")
    checked = exporter("check-config", "-c", str(config))
    assert checked.returncode == 0 and "OK (0 batches, 1 fleets, 1 databases)" in checked.stdout, checked.stderr

    result = exporter("once", "-c", str(config), at=NOW)
    assert result.returncode == 0, result.stderr
    served = parse_exposition(result.stdout)
    assert value(served, "batch_run_last_status", batch="card-00", status="failed") == 1
    assert value(served, "batch_run_last_success_timestamp_seconds", batch="card-00") == \
        (NOW - timedelta(hours=20, minutes=-30)).timestamp()
    assert value(served, "batch_run_max_duration_seconds", batch="card-auth") == 5400
    assert value(served, "batch_exporter_fleet_jobs", fleet="agent") == 15
    assert value(served, "batch_exporter_source_up", source="fleet:agent") == 1

    result = exporter("once", "-c", str(config), "--shard", "1/3", at=NOW)
    assert result.returncode == 0, result.stderr
    served = parse_exposition(result.stdout)
    shown = {dict(labels)["batch"] for (name, labels) in served if name == "batch_run_idempotent"}
    assert shown == {job for job in [*names, "card-auth", "card-idle", "card-refund"] if shard_of(job, 3) == 1}
    assert value(served, "batch_exporter_fleet_shard", fleet="agent", shard="1") == 3


def test_check_config_probes_the_job_column(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [])
    config = tmp_path / "fleet.yml"
    config.write_text(fleet_yaml(db).replace("job: job_name", "job: job_label"), encoding="utf-8")
    result = exporter("check-config", "-c", str(config))
    assert result.returncode == 1
    assert f"{config}:6: fleets.agent.runs.columns.job: the run table job_execution returns no column for " \
           "columns.job ('job_label')" in result.stderr


def test_a_reload_keeps_the_shard_of_the_command_line(tmp_path: Path) -> None:
    db = run_table(tmp_path / "runs.db", [])
    config = tmp_path / "fleet.yml"
    config.write_text(fleet_yaml(db, shard="0/2"), encoding="utf-8")
    assert shard_of("card-auth", 3) == 1
    with running_exporter(config, tmp_path, "--shard", "1/3") as process:
        served = process.wait_for(lambda s: value(s, "batch_run_idempotent", batch="card-auth") == 0,
                                  what="card-auth, in shard 1 of 3")
        assert value(served, "batch_exporter_fleet_shard", fleet="agent", shard="1") == 3
        config.write_text(fleet_yaml(db, shard="0/2").replace("card-auth: {", "card-auth: {idempotent: true, "),
                          encoding="utf-8")
        process.proc.send_signal(signal.SIGHUP)
        served = process.wait_for(lambda s: value(s, "batch_run_idempotent", batch="card-auth") == 1,
                                  what="the reloaded configuration")
    assert value(served, "batch_exporter_fleet_shard", fleet="agent", shard="1") == 3
    assert value(served, "batch_exporter_fleet_shard", fleet="agent", shard="0") is None


def test_the_shard_flag_is_refused_with_its_reason(tmp_path: Path) -> None:
    result = exporter("once", "-c", str(tmp_path / "absent.yml"), "--shard", "3/3")
    assert result.returncode == 2
    assert "argument --shard: expected 'i/n'" in result.stderr and "shard 3 does not exist" in result.stderr


# --- a real database, through the driver ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", odbc_params())
def test_a_real_database_gives_the_fleet_the_same_series_as_sqlite(kind: str, tmp_path: Path) -> None:
    rows = random_history(random.Random(7))
    db = run_table(tmp_path / "runs.db", rows)
    stamp = "TIMESTAMP NULL" if kind == "postgresql" else "DATETIME NULL"
    table = unique_name("fleet")
    conn = admin_connection(kind)
    try:
        cursor = conn.cursor()
        cursor.execute(f"CREATE TABLE {table} (exec_id INTEGER, job_name VARCHAR(40), biz_date DATE, "
                       f"exec_status VARCHAR(4), start_ts {stamp}, end_ts {stamp}, secs INTEGER)")
        for row in rows:
            start, end = (None if t is None else datetime.fromisoformat(str(t)) for t in row[4:6])
            secs = None if start is None or end is None else int((end - start).total_seconds())
            cursor.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)", *row[:4], start, end, secs)
        clock = [NOW.timestamp()]
        odbc = odbc_connection_string(kind)
        text = fleet_yaml(db).replace(f"{{sqlite: '{db}'}}", f"{{odbc: '{odbc}'}}").replace("job_execution", table)
        real = open_database("db", odbc=odbc)
        recorder = Recorder(real)
        on_server = fleet_source(text, recorder, clock)
        on_sqlite = fleet_source(fleet_yaml(db), db, clock)
        for later in (timedelta(0), timedelta(days=5)):
            clock[0] = (NOW + later).timestamp()
            assert series(on_server.poll().samples) == series(on_sqlite.poll().samples)
        recorder.take()
        clock[0] += 30
        on_server.poll()
        assert len(recorder.take()) == 1
        # the duration form of the grouped lookup (a join) runs there too
        with_secs = text.replace("ended_at: end_ts", "duration: secs").replace(
            "      card-idle: {}\n", "      card-idle: {}\n      card-settle: {}\n")
        snapshot = fleet_source(with_secs, real, clock).poll()
        successes = sorted((str(r[4]), str(r[5])) for r in rows if r[1] == "card-settle" and r[3] == "C")
        latest_start = successes[-1][0]  # its latest successful start, and the longest run of that start
        last_end = max(finish for begun, finish in successes if begun == latest_start)
        assert sample(snapshot, "batch_run_last_success_timestamp_seconds", batch="card-settle") == \
            datetime.fromisoformat(last_end).replace(tzinfo=TOKYO).timestamp()
        real.close()
    finally:
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


# --- a window read job by job -------------------------------------------------------------------------------------

# two jobs whose names differ only by case, and their rows interleaved as they were written
CASES = [run(1, "card-auth", NOW - timedelta(hours=9)), run(2, "card-AUTH", NOW - timedelta(hours=8), "E"),
         run(3, "card-auth", NOW - timedelta(hours=7), "E"), run(4, "card-AUTH", NOW - timedelta(hours=6)),
         run(5, "card-settle", NOW - timedelta(hours=5)), run(6, "card-AUTH", NOW - timedelta(days=1, hours=6))]


def test_the_window_is_read_in_batches_job_by_job(tmp_path: Path) -> None:
    """The fleet never asks for the whole window at once: its one statement goes through query_batches."""
    db = run_table(tmp_path / "runs.db", CASES)

    class Streamed(Recorder):
        whole: list[str] = []

        def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
            self.whole.append(sql)
            return super().query(sql, params)

    recorder = Streamed(open_database("db", sqlite=str(db)))
    source = fleet_source(fleet_yaml(db), recorder, [NOW.timestamp()])
    source.poll()
    source.poll()
    windows = [sql for sql in recorder.sent if "start_ts >= ?" in sql]
    assert len(windows) == 2 and all(sql.endswith(" ORDER BY 9") for sql in windows)
    assert not [sql for sql in recorder.whole if "start_ts >= ?" in sql]


def test_a_job_whose_rows_come_back_in_another_order_is_not_parsed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window is ordered by job only: a database sorting it afresh may return one job's rows in any
    order, and that is no change."""
    import batch_exporter.sources.fleet as fleet_module

    db = tmp_path / "runs.db"
    run_table(db, CASES)
    parsed: list[object] = []
    real_parse = fleet_module.parse_run_row

    def counted(*args: object, **kwargs: object) -> object:
        parsed.append(args[0])
        return real_parse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet_module, "parse_run_row", counted)
    source = fleet_source(fleet_yaml(db), db, [NOW.timestamp()])
    before = source.poll()
    assert len(parsed) == len(CASES)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM job_execution")
    conn.commit()
    conn.close()
    add_rows(db, CASES[::-1])  # the same rows, written (and so returned) the other way round
    parsed.clear()
    assert series(source.poll().samples) == series(before.samples)
    assert parsed == []


def case_insensitive_table(path: Path, rows: Sequence[tuple[object, ...]]) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE job_execution (exec_id INTEGER, job_name TEXT COLLATE NOCASE, biz_date TEXT, "
                 "exec_status TEXT, start_ts TEXT, end_ts TEXT)")
    conn.executemany("INSERT INTO job_execution VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def test_a_collation_that_splits_a_jobs_rows_makes_the_fleet_read_its_window_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = [NOW.timestamp()]
    exact = fleet_source(fleet_yaml(run_table(tmp_path / "exact.db", CASES)), tmp_path / "exact.db", clock)
    folded_db = case_insensitive_table(tmp_path / "folded.db", CASES)
    recorder = Recorder(open_database("db", sqlite=str(folded_db)))
    folded = fleet_source(fleet_yaml(folded_db), recorder, clock)
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.fleet"):
        first = folded.poll()
        assert series(first.samples) == series(exact.poll().samples)
        recorder.take()
        clock[0] += 60
        later = folded.poll()
        assert series(later.samples) == series(exact.poll().samples)
    assert sample(first, "batch_runs", batch="card-AUTH", status="failed") == 1
    assert sample(first, "batch_runs", batch="card-auth", status="failed") == 1
    split = [r.getMessage() for r in caplog.records if "two stretches" in r.getMessage()]
    assert len(split) == 1 and "job card-" in split[0] and "read whole from now on" in split[0]
    # the poll that found the split read the window twice; the next one reads it once, whole
    assert len([sql for sql in recorder.take() if "start_ts >= ?" in sql]) == 1
    assert folded.max_statements_per_poll >= exact.max_statements_per_poll


def test_a_split_among_jobs_the_fleet_leaves_out_changes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = CASES + [run(7, "ops-job", NOW - timedelta(hours=4)), run(8, "OPS-job", NOW - timedelta(hours=3)),
                    run(9, "ops-job", NOW - timedelta(hours=2))]  # not '^card-': left out by the filter
    db = case_insensitive_table(tmp_path / "folded.db", [row for row in rows if "AUTH" not in str(row[1])])
    recorder = Recorder(open_database("db", sqlite=str(db)))
    source = fleet_source(fleet_yaml(db), recorder, [NOW.timestamp()])
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.fleet"):
        source.poll()
        source.poll()
    assert not [r for r in caplog.records if "two stretches" in r.getMessage()]
    assert len([sql for sql in recorder.take() if "start_ts >= ?" in sql]) == 2  # one per poll


@pytest.mark.parametrize("kind", [param for param in odbc_params() if param.values[0] == "mariadb"])
def test_mariadb_default_collation_splits_jobs_and_the_counts_stay_exact(kind: str, tmp_path: Path) -> None:
    clock = [NOW.timestamp()]
    exact = fleet_source(fleet_yaml(run_table(tmp_path / "exact.db", CASES)), tmp_path / "exact.db", clock)
    table = unique_name("fleet")
    conn = admin_connection(kind)
    try:
        cursor = conn.cursor()
        cursor.execute(f"CREATE TABLE {table} (exec_id INTEGER, job_name VARCHAR(40), biz_date DATE, "
                       f"exec_status VARCHAR(4), start_ts DATETIME NULL, end_ts DATETIME NULL) "
                       f"COLLATE utf8mb4_general_ci")
        for row in CASES:
            start, end = (None if t is None else datetime.fromisoformat(str(t)) for t in row[4:6])
            cursor.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)", *row[:4], start, end)
        text = fleet_yaml(tmp_path / "x.db").replace(f"{{sqlite: '{tmp_path / 'x.db'}'}}",
                                                     f"{{odbc: '{odbc_connection_string(kind)}'}}")
        real = open_database("db", odbc=odbc_connection_string(kind))
        on_server = fleet_source(text.replace("job_execution", table), real, clock)
        assert series(on_server.poll().samples) == series(exact.poll().samples)
        clock[0] += 60
        assert series(on_server.poll().samples) == series(exact.poll().samples)
        real.close()
    finally:
        conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


# --- docs/fleet.md -------------------------------------------------------------------------------------------------


def test_every_block_of_the_fleet_guide_runs(tmp_path: Path) -> None:
    blocks = fenced_blocks(DOC)
    configs = [b for b in blocks if b.lang == "yaml" and "scrape_configs:" not in b.text]
    prometheus = [b for b in blocks if b.lang == "yaml" and "scrape_configs:" in b.text]
    statements = [b.text.strip() for b in blocks if b.lang == "sql"]
    commands = [line for b in blocks if b.lang == "sh" for line in b.text.splitlines() if line.strip()]
    assert len(configs) + len(prometheus) + len(statements) + len([b for b in blocks if b.lang == "sh"]) \
        == len(blocks), "a block of a kind this test does not run"
    (config_block,) = configs
    config = parse_config(config_block.text, str(DOC), env={"SCHED_DB_PASSWORD": "unused"})
    runs = config.fleets["agent"].runs
    assert statements == [build_window_query(runs), build_fleet_last_success_query(runs)]
    for line in commands:
        words = line.split()
        assert words[0] == "batch-exporter"
        assert build_parser().parse_args(words[1:]).shard is not None
    for block in prometheus:
        path = tmp_path / "prometheus.yml"
        path.write_text(block.text, encoding="utf-8")
        checked = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True,
                                 timeout=60, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rows_unchanged_since_the_last_poll_are_not_parsed_again_but_age_with_the_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import batch_exporter.sources.fleet as fleet_module

    parsed: list[object] = []
    original = fleet_module.parse_run_row

    def counted(*args: object, **kwargs: object) -> object:
        parsed.append(args[0])
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet_module, "parse_run_row", counted)
    rows = [run(1, "card-auth", NOW - timedelta(days=1)), run(2, "card-auth", NOW - timedelta(minutes=10), "R", None),
            run(3, "card-settle", NOW - timedelta(days=1))]
    db = run_table(tmp_path / "runs.db", rows)
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), db, clock)
    source.poll()
    assert len(parsed) == 3
    clock[0] += 60
    snapshot = source.poll()
    assert len(parsed) == 3, "nothing changed: no row parsed again"
    assert sample(snapshot, "batch_run_running_seconds", batch="card-auth") == 11 * 60  # the clock moved
    conn = sqlite3.connect(db)
    conn.execute("UPDATE job_execution SET exec_status = 'E', end_ts = ? WHERE exec_id = 2", (local(NOW),))
    conn.commit()
    conn.close()
    clock[0] += 60
    snapshot = source.poll()
    assert len(parsed) == 5, "card-auth's rows changed: its two rows parsed again, card-settle's not"
    assert sample(snapshot, "batch_run_running", batch="card-auth") == 0
    assert sample(snapshot, "batch_run_last_status", batch="card-auth", status="failed") == 1


# --- what a poll keeps from the last one -----------------------------------------------------------------


def aging_history(rng: random.Random) -> list[tuple[object, ...]]:
    """random_history, and for card-auth what ages with the clock alone: a re-run of yesterday's key
    begun after today's (reported for 24 hours), a run with a key three days ahead (taken once the horizon
    reaches it), runs going on past max_duration, and one with an unmapped status and no end."""
    rows = random_history(rng)
    today = NOW.astimezone(TOKYO).date()

    def add(job: str, start: datetime, status: str, minutes: int | None, key: object) -> None:
        rows.append(run(len(rows) + 1, job, start, status, minutes, str(key)))

    add("card-auth", NOW - timedelta(hours=2), "C", 20, today)
    add("card-auth", NOW - timedelta(hours=1), "E", 5, today - timedelta(days=1))
    add("card-auth", NOW - timedelta(minutes=30), "E", 5, today - timedelta(days=1))
    add("card-auth", NOW + timedelta(hours=20), "C", 10, today + timedelta(days=3))
    add("card-settle", NOW - timedelta(minutes=50), "R", None, today)
    add("card-refund", NOW - timedelta(minutes=80), "X", None, today)
    return rows


@pytest.mark.parametrize("seed", range(3))
def test_a_kept_job_ages_at_every_poll_as_the_same_batch_read_afresh(tmp_path: Path, seed: int) -> None:
    # the fleet keeps each job's parsed rows, what follows from them and its series from poll to poll;
    # a batch's runs source works each poll out from scratch: they agree at every step of the clock
    db = run_table(tmp_path / "runs.db", aging_history(random.Random(seed)))
    clock = [NOW.timestamp()]
    batch_sources, fleet = as_batches_and_as_a_fleet(db, clock)
    for step in range(75):  # 50 minutes apart: past midnight, max_duration, a fire time, the 24 hours
        clock[0] = (NOW + timedelta(minutes=50 * step)).timestamp()
        got = fleet.poll()
        jobs = jobs_of(got)
        expected = series([s for source in batch_sources for s in source.poll().samples
                           if dict(s.labels).get("batch") in jobs])
        assert series(got.samples) == expected, f"step {step}"


def test_a_job_unchanged_since_the_last_poll_keeps_its_series_and_what_its_rows_gave(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import batch_exporter.runsummary as runsummary

    worked_out: list[object] = []
    original = runsummary._key_facts

    def counted(*args: object) -> runsummary.KeyFacts:
        worked_out.append(args[1])
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(runsummary, "_key_facts", counted)
    rows = [run(1, "card-auth", NOW - timedelta(days=1)), run(2, "card-auth", NOW - timedelta(minutes=10), "R", None),
            run(3, "card-settle", NOW - timedelta(days=1))]
    db = run_table(tmp_path / "runs.db", rows)
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), db, clock)
    first = source.poll()
    assert len(worked_out) == 4  # each job with rows or without
    clock[0] += 60
    second = source.poll()
    assert len(worked_out) == 4, "no job's rows changed"
    settle = [s for s in first.samples if dict(s.labels).get("batch") == "card-settle"]
    kept = [s for s in second.samples if dict(s.labels).get("batch") == "card-settle"]
    assert len(kept) == len(settle) and all(a is b for a, b in zip(settle, kept, strict=True))
    assert sample(second, "batch_run_running_seconds", batch="card-auth") == 11 * 60  # what the clock moves
    clock[0] = (NOW + timedelta(days=1, hours=-8, minutes=1)).timestamp()  # past the next 03:00 in Tokyo
    third = source.poll()
    assert sample(third, "batch_schedule_last_expected_timestamp_seconds", batch="card-settle") == (
        NOW + timedelta(days=1, hours=-9)).timestamp()
    assert len(worked_out) == 4, "a day later, the same rows and the same latest keys"


def test_window_rows_without_epoch_numbers_are_not_copied() -> None:
    from batch_exporter.values import read_epoch_columns

    row = (7, "2026-11-28", "C", datetime(2026, 11, 28, 3), None, "2026-11-28 12:00:00")
    assert read_epoch_columns(row, {3: "started_at", 4: "ended_at", 5: "queued_at"}, "seconds") is row
    flagged = (*row[:5], True)  # a bool is no epoch number
    assert read_epoch_columns(flagged, {3: "started_at", 5: "queued_at"}, "seconds") == flagged
    numbered = (7, "2026-11-28", "C", 1_795_000_000, None)
    assert read_epoch_columns(numbered, {3: "started_at", 4: "ended_at"}, "seconds")[3] == datetime.fromtimestamp(
        1_795_000_000, UTC)
    assert read_epoch_columns([7, None], {3: "started_at"}, "seconds") == (7, None)


def test_job_labels_keep_dated_names_apart_and_mask_card_numbers() -> None:
    # mask_digits would give every night's job-YYYYMMDD-NNNN the same label, and hide the failures of all but one
    nights = [job_label(f"job-2026112{day}-0001") for day in range(1, 8)]
    assert len(set(nights)) == 7 and nights[0] == "job-20261121-0001"
    assert job_label("refund 4111 1111 1111 1111") == "refund **** **** **** 1111"
    assert len(job_label("x" * 10_000)) == 200


class GoneDown(Recorder):
    """A database that answers until it is taken down."""

    down = False

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        if self.down:
            raise QueryError("connect", "the scheduler's database is down")
        return super().query(sql, params)

    def query_batches(self, sql: str, params: Sequence[object], consume: Consume) -> None:
        if self.down:
            raise QueryError("connect", "the scheduler's database is down")
        super().query_batches(sql, params, consume)


def test_a_database_outage_keeps_the_jobs_schedules_moving_as_a_batch_does(tmp_path: Path) -> None:
    # a batch's config source goes on without its database, so a start expected during the outage pages
    # as missed; a fleet's jobs must not freeze at the last good poll instead
    db = run_table(tmp_path / "runs.db", [run(1, "card-settle", NOW - timedelta(hours=9))])  # 03:00 Tokyo's run
    database = GoneDown(open_database("db", sqlite=str(db)))
    clock = [NOW.timestamp()]
    source = fleet_source(fleet_yaml(db), database, clock)
    before = source.poll()
    database.down = True
    clock[0] += 20 * 3600  # past 03:00 Tokyo of the next day
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert caught.value.reason == "connect"
    during = caught.value.snapshot
    assert during is not None
    expected = "batch_schedule_last_expected_timestamp_seconds"
    moved, was = sample(during, expected, batch="card-settle"), sample(before, expected, batch="card-settle")
    assert moved is not None and was is not None and moved - was == 86400
    assert sample(during, "batch_run_last_start_timestamp_seconds", batch="card-settle") == \
        sample(before, "batch_run_last_start_timestamp_seconds", batch="card-settle")
