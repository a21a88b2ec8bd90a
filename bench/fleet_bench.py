#!/usr/bin/env python3
"""Fleet benchmark: one exporter for a scheduler's 5,000 jobs, fleet mode against one batch per job and
against the Go sql-exporter running one grouped query (issue 15, item 3).

One run, one machine, one PostgreSQL run table of 5,000 jobs with 20 runs each in the 14-day lookback
window (and 10 older runs each), indexed on (job_name, start_ts) as scrape_bench's. Systems, each
measured the same way:

- fleet: batch-exporter with one `fleets:` entry: one window statement per poll for every job;
- batches: batch-exporter with the same 5,000 jobs written as 5,000 `batches:` entries (generated), each
  with the fleet's runs section (a `where` on its name), schedule and max duration: one runs source
  and its statements per batch, on the database's pool of connections;
- sql_exporter: Debian's prometheus-sql-exporter (Go) with one query grouped by job and status over the
  window (count, latest start, latest end);
- empty: batch-exporter with a fleet that finds no job: the process's own memory, to work out memory
  per 1,000 jobs.

Measured: one poll of the whole fleet (in-process, through the real ODBC driver), `/metrics` under
wrk (requests/s, p99), RSS after the load, the exposition's series and bytes (plain and gzip), and the
series of one fully configured batch (the demo's card-authorization, through `batch-exporter once`).
Targets are printed PASS/FAIL beside the numbers; nothing is asserted. Only 127.0.0.1 is used, and
every process started here is stopped before the script ends.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    ODBC,
    OUT,
    PG_URL,
    ROOT,
    Measured,
    Summary,
    System,
    Timing,
    connect,
    exporter_argv,
    free_port,
    log,
    measure_round,
    plan_of,
    series_count,
    server_max_connections,
    time_call,
    verdict,
    write_yaml,
)

TABLE = "bench_fleet_run"
INDEX = "bench_fleet_run_job_start"
FLEET = "bench"
JOBS = 5_000
QUICK_JOBS = 1_000  # --quick: a smoke run; the goals are for JOBS
RECENT_RUNS = 20  # per job, in the lookback window, one every RUN_SPACING_HOURS
OLD_RUNS = 10  # per job, older than the window: what the last-success search reads
RUN_SPACING_HOURS = 16  # 20 runs span 12.7 days: all inside the 14-day window
LOOKBACK_DAYS = 14
NO_SUCCESS_EVERY = 500  # every 500th job failed every run of its window: the poll looks further back
POOL_SIZE = 2  # databases.*.max_connections by default: the poller's threads for a database
MIN_POLL_INTERVAL = 10  # the default poll interval's floor (see --poll-interval)

SYSTEMS = ("fleet", "batches", "sql_exporter", "empty")
# Thousands of batches take minutes to become ready (every source polled once): one round of them.
FIRST_ROUND_ONLY = ("batches",)
TITLES = {"fleet": "batch-exporter, fleet", "batches": "batch-exporter, one batch per job",
          "sql_exporter": "prometheus-sql-exporter (Go)", "empty": "batch-exporter, fleet of no job"}

TARGET_POLL_S = 1.0
TARGET_P99_MS = 50.0
TARGET_RSS_MIB = 150.0


def job_name(index: int) -> str:
    return f"fleet_job_{index:04d}"


# --- the run table --------------------------------------------------------------------------------

_CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
    run_id   bigint PRIMARY KEY,
    job_name varchar(64) NOT NULL,
    biz_date date NOT NULL,
    status   varchar(8) NOT NULL,
    start_ts timestamp NOT NULL,
    end_ts   timestamp
)"""

# r = 0 is a job's latest run. Recent runs: every 10th job is running now, the next one's latest run
# failed, the next one was re-run (NG, then OK for the same business date); every 500th job failed every
# run of its window. Old runs: OK, one in fifty NG.
_FILL_TABLE = f"""
INSERT INTO {TABLE} (run_id, job_name, biz_date, status, start_ts, end_ts)
SELECT run_id, job_name,
       CASE WHEN r = 0 AND j % 10 = 2
            THEN (start_ts - interval '{RUN_SPACING_HOURS} hours')::date ELSE start_ts::date END,
       status, start_ts,
       CASE WHEN status = 'RUN' THEN NULL ELSE start_ts + make_interval(mins => 5 + (j * 7 + k) % 20) END
FROM (
    SELECT j, k, r, j::bigint * {{per_job}} + k + 1 AS run_id,
           'fleet_job_' || lpad(j::text, 4, '0') AS job_name,
           CASE WHEN r < {RECENT_RUNS}
                THEN now_utc - make_interval(hours => {RUN_SPACING_HOURS} * r + 1, mins => j % 60)
                ELSE now_utc - make_interval(days => {LOOKBACK_DAYS} + 1 + r - {RECENT_RUNS}, mins => j % 60)
           END AS start_ts,
           CASE WHEN r >= {RECENT_RUNS} THEN CASE WHEN k % 50 = 7 THEN 'NG' ELSE 'OK' END
                WHEN j % {NO_SUCCESS_EVERY} = {NO_SUCCESS_EVERY - 1} THEN 'NG'
                WHEN r = 0 AND j % 10 = 0 THEN 'RUN'
                WHEN r = 0 AND j % 10 = 1 THEN 'NG'
                WHEN r = 1 AND j % 10 = 2 THEN 'NG'
                ELSE 'OK'
           END AS status
    FROM generate_series(0, {{jobs}} - 1) AS j
    CROSS JOIN generate_series(0, {{per_job}} - 1) AS k
    CROSS JOIN LATERAL (SELECT {{per_job}} - 1 - k AS r, timezone('UTC', now()) AS now_utc) AS x
) AS runs"""


def ensure_run_table(cursor: Any, jobs: int) -> str:
    """Create the run table and its index unless a fresh one for `jobs` jobs exists; say which."""
    per_job = RECENT_RUNS + OLD_RUNS
    # integers, not booleans: psqlODBC hands booleans over as the strings '1' and '0'
    cursor.execute("SELECT (to_regclass(?) IS NOT NULL)::int, (to_regclass(?) IS NOT NULL)::int", (TABLE, INDEX))
    table_exists, index_exists = cursor.fetchone()
    if table_exists:
        # fresh: the latest runs began less than 6 hours ago, so the window still holds all 20 of each job
        cursor.execute(f"SELECT count(*), count(DISTINCT job_name), "
                       f"(timezone('UTC', now()) - max(start_ts) < interval '6 hours')::int FROM {TABLE}")
        count, distinct, fresh = cursor.fetchone()
        if count == jobs * per_job and distinct == jobs and index_exists and fresh:
            return "reused"
        log(f"  {TABLE}: {count} rows of {distinct} jobs, index {'present' if index_exists else 'missing'}, "
            f"{'fresh' if fresh else 'stale'}: rebuilding")
        cursor.execute(f"DROP TABLE {TABLE}")
    started = time.perf_counter()
    cursor.execute(_CREATE_TABLE)
    cursor.execute(_FILL_TABLE.format(jobs=jobs, per_job=per_job))
    cursor.execute(f"CREATE INDEX {INDEX} ON {TABLE} (job_name, start_ts)")
    cursor.execute(f"ANALYZE {TABLE}")
    return f"created in {time.perf_counter() - started:.1f}s"


# --- configurations -----------------------------------------------------------------------------------

_COLUMNS = {"run_id": "run_id", "business_date": "biz_date", "status": "status", "started_at": "start_ts",
            "ended_at": "end_ts"}
_STATUS = {"success": ["OK"], "failed": ["NG"], "running": ["RUN"]}
_SETTINGS: dict[str, Any] = {"max_duration": "2h",
                             "schedule": {"cron": "0 2 * * *", "timezone": "UTC", "grace": "15m"}}


def _global(interval: float, pool: int) -> dict[str, Any]:
    return {"global": {"poll_interval": f"{interval:g}s", "max_series": 2_000_000},
            "databases": {"bench": {"odbc": ODBC, "query_timeout": "30s", "max_connections": pool}}}


def fleet_config(interval: float, pool: int, where: str | None = None) -> dict[str, Any]:
    """Every job of the table as one fleet; `where` narrows the rows it reads."""
    runs: dict[str, Any] = {"table": TABLE}
    if where is not None:
        runs["where"] = where
    runs |= {"columns": {"job": "job_name", **_COLUMNS}, "status": _STATUS, "lookback": f"{LOOKBACK_DAYS}d",
             "timezone": "UTC"}
    return _global(interval, pool) | {"fleets": {FLEET: {"database": "bench", "runs": runs,
                                                         "defaults": _SETTINGS}}}


def batches_config(interval: float, pool: int, jobs: int) -> dict[str, Any]:
    """The same jobs as batches: what a fleet job exports is what each of these does."""
    batches = {}
    for index in range(jobs):
        name = job_name(index)
        batches[name] = {"database": "bench",
                         "runs": {"table": TABLE, "where": f"job_name = '{name}'", "columns": _COLUMNS,
                                  "status": _STATUS, "lookback": f"{LOOKBACK_DAYS}d", "timezone": "UTC"},
                         **_SETTINGS}
    return _global(interval, pool) | {"batches": batches}


GROUPED_SQL = (
    f"SELECT job_name::text AS batch, status::text AS status, COUNT(*)::float AS bench_runs, "
    f"EXTRACT(EPOCH FROM MAX(start_ts))::float AS bench_last_start, "
    f"COALESCE(EXTRACT(EPOCH FROM MAX(end_ts)), 0)::float AS bench_last_end "
    f"FROM {TABLE} WHERE start_ts >= timezone('UTC', now()) - interval '{LOOKBACK_DAYS} days' "
    f"GROUP BY job_name, status"
)


def sql_exporter_config(interval: float) -> dict[str, Any]:
    query = {"name": "bench_runs", "help": "runs in the window by job and status", "labels": ["batch", "status"],
             "values": ["bench_runs", "bench_last_start", "bench_last_end"], "query": GROUPED_SQL}
    return {"jobs": [{"name": "bench", "interval": f"{interval:g}s", "connections": [PG_URL], "queries": [query]}]}


# --- one poll of the whole fleet ----------------------------------------------------------------------


def fleet_poll_timings(config_path: Path, cursor: Any, repeat: int) -> tuple[list[Timing], int]:
    """The fleet source's first poll and its next polls (in-process, real ODBC), its two statements with
    their plans; and the jobs it exported."""
    from batch_exporter.config import load_config
    from batch_exporter.database import open_database
    from batch_exporter.run_statements import (
        build_fleet_last_success_query,
        build_window_query,
        last_success_params,
    )
    from batch_exporter.sources.fleet import FleetSource

    config = load_config(config_path)
    fleet = config.fleets[FLEET]
    db_config = config.databases["bench"]
    db = open_database("bench", odbc=db_config.odbc, query_timeout=db_config.query_timeout,
                       connect_timeout=db_config.connect_timeout)
    timings: list[Timing] = []
    try:
        source = FleetSource(FLEET, fleet, db, calendars=config.calendars)
        started = time.perf_counter()
        source.poll()
        first = (time.perf_counter() - started) * 1000
        timings.append(Timing("fleet poll, the first (column probes, window, grouped last success)", first, first))
        median, fastest, snapshot = time_call(source.poll, repeat)
        timings.append(Timing("fleet poll (one window statement)", median, fastest))
        jobs = sum(1 for s in snapshot.samples if s.name == "batch_run_idempotent")
        boundary = (dt.datetime.now(dt.UTC) - dt.timedelta(days=LOOKBACK_DAYS)).replace(tzinfo=None)
        window_sql = build_window_query(fleet.runs)
        median, fastest, rows = time_call(lambda: db.query(window_sql, (boundary,)), repeat)
        timings.append(Timing("  its window statement, rows fetched", median, fastest, len(rows),
                              plan_of(cursor, window_sql, (boundary,))))
        success_sql, success_params = build_fleet_last_success_query(fleet.runs), last_success_params(fleet.runs)
        median, fastest, rows = time_call(lambda: db.query(success_sql, success_params), repeat)
        timings.append(Timing("  the grouped last success (first poll, new jobs)", median, fastest, len(rows),
                              plan_of(cursor, success_sql, success_params)))
    finally:
        db.close()
    return timings, jobs


def batches_poll_timings(config_path: Path, repeat: int) -> list[Timing]:
    """Every runs source of the one-batch-per-job configuration polled once, on the database's worker pool
    as the exporter runs them; the first cycle (probes, and each failing batch's last-success search)
    apart from the next ones. Then the batches' configuration sources, which need no database."""
    from batch_exporter.app import build_sources, open_databases
    from batch_exporter.config import load_config
    from batch_exporter.poller import ScheduledSource
    from batch_exporter.sources.batchinfo import BatchInfoSource
    from batch_exporter.sources.runs import RunsSource

    config = load_config(config_path)
    databases = open_databases(config)
    scheduled = build_sources(config, databases, keep_log_state=False)
    runs = [s for s in scheduled if isinstance(s.source, RunsSource)]
    infos = [s for s in scheduled if isinstance(s.source, BatchInfoSource)]
    pool = runs[0].database_pool
    assert pool is not None
    timings: list[Timing] = []

    def cycle() -> None:
        def poll(one: ScheduledSource) -> None:
            pool.run(one.source, one.deadline)

        # as many callers as the pool has workers: each waits for a free one, as the poller's jobs do
        with ThreadPoolExecutor(max_workers=pool.size) as callers:
            list(callers.map(poll, runs))

    try:
        started = time.perf_counter()
        cycle()
        first = (time.perf_counter() - started) * 1000
        timings.append(Timing(f"all {len(runs):,} runs sources, the first cycle (probes, last-success searches)",
                              first, first))
        samples = []
        for _ in range(max(1, min(repeat, 3))):  # a cycle takes seconds: at most three
            started = time.perf_counter()
            cycle()
            samples.append((time.perf_counter() - started) * 1000)
        timings.append(Timing(f"all {len(runs):,} runs sources on {pool.size} connections",
                              statistics.median(samples), min(samples)))
        median, fastest, _ = time_call(lambda: [s.source.poll() for s in infos], max(1, min(repeat, 3)))
        timings.append(Timing(f"  and their {len(infos):,} configuration sources (no database)", median, fastest))
    finally:
        pool.close()
        for db in databases.values():
            db.close()
    return timings


def grouped_query_timing(cursor: Any, repeat: int) -> Timing:
    def call() -> list[Any]:
        cursor.execute(GROUPED_SQL)
        return list(cursor.fetchall())

    median, fastest, rows = time_call(call, repeat)
    return Timing("the Go exporter's grouped query (pyodbc)", median, fastest, len(rows), plan_of(cursor, GROUPED_SQL))


# --- series: a full batch, a fleet job, the same job as a batch -----------------------------------------


@dataclass
class Exposition:
    """What one system's first full exposition holds."""

    series: int
    job_series: int  # samples labelled with one of the jobs
    own_series: int  # the rest: source health, the process, the fleet
    body_bytes: int
    gzip_bytes: int


def exposition_of(body: str, gzip_bytes: int) -> Exposition:
    series = series_count(body)
    job_series = len(re.findall(r'^\w+\{[^}]*batch="fleet_job_\d+"', body, re.M))
    return Exposition(series, job_series, series - job_series, len(body.encode()), gzip_bytes)


@dataclass
class FullBatch:
    name: str
    batch_series: int  # labelled batch=name
    health_series: int  # of its sources (source="kind:name...")
    sources: int
    sections: str


def full_batch_series(folder: Path) -> FullBatch:
    """The series of the demo's card-authorization (runs, records, schedule, checks, a log scan, log
    evidence): `batch-exporter once` on a fresh demo database of 30 nights before now."""
    from batch_exporter.practice.demo import create_demo, demo_config_text

    shutil.rmtree(folder, ignore_errors=True)
    create_demo(folder, now=dt.datetime.now(dt.UTC))
    config = folder / "demo.yml"
    config.write_text(demo_config_text(folder), encoding="utf-8")
    argv, env = exporter_argv(config, 0)
    once = argv[:argv.index("run")] + ["once", "-c", str(config)]
    done = subprocess.run(once, capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, **env}, cwd=OUT)
    name = "card-authorization"
    body = done.stdout
    batch = len(re.findall(rf'^\w+\{{[^}}]*batch="{name}"', body, re.M))
    health = re.findall(rf'^\w+\{{source="(\w+):{name}(?:/[^"]*)?"\}}', body, re.M)
    return FullBatch(name, batch, len(health), len(set(health)), "runs, records, schedule, 2 checks, "
                     "a log scan with its patterns, log evidence")


# --- the systems ----------------------------------------------------------------------------------------


def ours(key: str, config_path: Path, batches: int, ready_metric: str) -> System:
    port = free_port()
    argv, env = exporter_argv(config_path, port)
    metrics = (ready_metric,) if batches else ()
    return System(key, TITLES[key], argv, port, metrics, batches, ready_path="/-/ready", env=env)


def sql_exporter(config_path: Path, jobs: int) -> System | None:
    binary = shutil.which("prometheus-sql-exporter")
    if binary is None:
        return None
    port = free_port()
    return System("sql_exporter", TITLES["sql_exporter"],
                  [binary, "-config.file", str(config_path), "-web.listen-address", f"127.0.0.1:{port}"],
                  port, ("sql_bench_runs",), jobs, env={"LOGLEVEL": "warn"})


def resolve(key: str, config: Path, jobs: int) -> System | None:
    """The system to start for `key`; None when it is not installed."""
    if key == "sql_exporter":
        return sql_exporter(config, jobs)
    return ours(key, config, 0 if key == "empty" else jobs, "batch_run_idempotent")


def run_rounds(systems: dict[str, System], args: argparse.Namespace, failures: dict[str, str],
               expositions: dict[str, Exposition]) -> tuple[list[Measured], list[str]]:
    """Every system once per round, the starting system rotating; a system that fails is not retried."""
    results = {key: Measured(key, system.title) for key, system in systems.items()}
    skipped: list[str] = []
    started = time.monotonic()
    keys = list(systems)
    for number in range(args.rounds):
        for key in keys[number % len(keys):] + keys[:number % len(keys)]:
            system = systems[key]
            if system.title in failures or (number > 0 and key in FIRST_ROUND_ONLY):
                continue
            if time.monotonic() - started + args.warmup + args.duration + 15 > args.budget:
                skipped.append(f"{system.title} round {number + 1}")
                continue
            log(f"round {number + 1}: {system.title} on 127.0.0.1:{system.port} ...")

            def keep(body: str, key: str = key) -> None:
                measured = results[key]
                expositions[key] = exposition_of(body, measured.gzip_bytes or 0)

            try:
                measure_round(system, results[key], args, log, on_body=keep)
            except (RuntimeError, TimeoutError, subprocess.SubprocessError, ValueError, OSError) as exc:
                failures[system.title] = f"{exc} (log: {OUT / (key + '.log')})"
    return [m for m in results.values() if m.rounds], skipped


# --- report ------------------------------------------------------------------------------------------


def poll_report(timings: list[Timing], jobs: int) -> list[str]:
    lines = [f"One poll of the whole fleet: {jobs:,} jobs x {RECENT_RUNS} runs in the window "
             f"(+{OLD_RUNS} older each), PostgreSQL, in-process through psqlODBC:"]
    for t in timings:
        rows = "" if t.rows is None else f"  rows={t.rows:,}"
        lines.append(f"  {t.label:<72} {t.median_ms:10.1f} ms  (min {t.min_ms:.1f}){rows}")
        if t.plan:
            lines.append(f"  {'':<72} plan: {t.plan}")
    return lines


def _timing(timings: list[Timing], prefix: str) -> Timing | None:
    return next((t for t in timings if t.label.startswith(prefix)), None)


def scrape_report(measured: list[Measured], failures: dict[str, str], args: argparse.Namespace,
                  expositions: dict[str, Exposition]) -> list[str]:
    lines = [f"Scrapes: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency "
             f"-H 'Accept-Encoding: gzip'; poll interval {args.poll_interval}s; "
             f"median of {args.rounds} round(s), systems in rotating order",
             f"  {'system':<36} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} {'RSS after':>9} "
             f"{'RSS peak':>8} {'series':>9} {'per job':>7} {'body MiB':>8} {'gzip KiB':>8} {'sent KiB':>8} "
             f"{'DB conns':>8}"]
    for m in measured:
        s = Summary.of(m)
        e = expositions.get(m.key)
        per_job = f"{e.series / args.jobs:7.1f}" if e is not None and m.key != "empty" else f"{'-':>7}"
        lines.append(
            f"  {s.title:<36} {s.rate:7.0f} {s.p50_ms:7.2f} {s.p99_ms:8.2f} {s.errors:6d} {s.rss_after_mib:9.1f} "
            f"{s.rss_peak_mib:8.1f} {m.series or 0:9,d} {per_job} {(m.body_bytes or 0) / 2**20:8.2f} "
            f"{(m.gzip_bytes or 0) / 1024:8.0f} {(m.wire_bytes or 0) / 1024:8.0f} {s.db_connections:8.0f}")
    for title, why in failures.items():
        lines.append(f"  {title:<36} not measured: {why}")
    lines.append("  (RSS in MiB; per job: the exposition's series / jobs; gzip KiB: the body compressed here "
                 "at level 6; sent KiB: what a scrape asking for gzip received)")
    return lines


def series_report(expositions: dict[str, Exposition], full: FullBatch | None, jobs: int) -> list[str]:
    lines = ["Series per batch:"]
    if full is not None:
        lines.append(f"  a fully configured batch ({full.name}: {full.sections}): {full.batch_series} labelled "
                     f"with it + {full.health_series} health series of its {full.sources} sources = "
                     f"{full.batch_series + full.health_series}")
    fleet, batches = expositions.get("fleet"), expositions.get("batches")
    if fleet is not None:
        lines.append(f"  a fleet job (runs, schedule, max duration): {fleet.job_series / jobs:.1f} labelled with "
                     f"it; the fleet's own {fleet.own_series} series are shared by all its jobs")
    if batches is not None:
        lines.append(f"  the same job as a batch: {batches.job_series / jobs:.1f} labelled with it + "
                     f"{(batches.own_series) / jobs:.1f} health series of its sources (config, runs)")
    return lines


def ratio(mine: float, other: float) -> str:
    return f"x{mine / other:.2f}" if other else "-"


@dataclass
class Goals:
    poll_s: float | None
    p99_ms: float | None
    rss_mib: float | None

    def lines(self) -> list[str]:
        def line(label: str, value: float | None, limit: float, unit: str) -> str:
            shown = "not measured" if value is None else f"{value:.3g} {unit}"
            return f"  goal: {label} under {limit:g} {unit} ({shown}): " \
                   f"{verdict(None if value is None else value < limit)}"

        return [line("one poll of the fleet", self.poll_s, TARGET_POLL_S, "s"),
                line("p99 at 20 clients", self.p99_ms, TARGET_P99_MS, "ms"),
                line("RSS", self.rss_mib, TARGET_RSS_MIB, "MiB")]


def verdict_report(timings: list[Timing], measured: list[Measured], jobs: int) -> tuple[list[str], Goals]:
    summaries = {m.key: Summary.of(m) for m in measured}
    fleet_poll = _timing(timings, "fleet poll (")
    batches_poll = _timing(timings, f"all {jobs:,} runs sources on")
    grouped = _timing(timings, "the Go exporter's grouped query")
    lines = ["Ratios (fleet / baseline; poll, p99 and RSS: lower is better, req/s: higher is better):"]
    for key, poll in (("batches", batches_poll), ("sql_exporter", grouped)):
        parts = []
        if fleet_poll is not None and poll is not None:
            parts.append(f"poll {ratio(fleet_poll.median_ms, poll.median_ms)}")
        mine, other = summaries.get("fleet"), summaries.get(key)
        if mine is not None and other is not None:
            parts += [f"req/s {ratio(mine.rate, other.rate)}", f"p99 {ratio(mine.p99_ms, other.p99_ms)}",
                      f"RSS {ratio(mine.rss_after_mib, other.rss_after_mib)}"]
        if parts:
            lines.append(f"  fleet / {TITLES[key]}: {', '.join(parts)}")
    empty = summaries.get("empty")
    for key in ("fleet", "batches"):
        other = summaries.get(key)
        if empty is not None and other is not None:
            per_1000 = (other.rss_after_mib - empty.rss_after_mib) / jobs * 1000
            lines.append(f"  memory per 1,000 jobs, {TITLES[key]}: {per_1000:.1f} MiB (RSS after load "
                         f"{other.rss_after_mib:.1f} minus {empty.rss_after_mib:.1f} of a fleet of no job)")
    fleet = summaries.get("fleet")
    goals = Goals(None if fleet_poll is None else fleet_poll.median_ms / 1000,
                  None if fleet is None else fleet.p99_ms,
                  None if fleet is None else max(fleet.rss_warm_mib, fleet.rss_after_mib))
    if jobs != JOBS:
        lines.append(f"  (the goals are for {JOBS:,} jobs; this run had {jobs:,})")
    return lines + goals.lines(), goals


# --- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Numbers and the raw wrk output also go to bench/out/fleet_bench.json.")
    add = parser.add_argument
    add("--quick", action="store_true",
        help=f"short run: {QUICK_JOBS:,} jobs, one round of 3 s, 2 repetitions per poll (the goals are for "
             f"{JOBS:,} jobs)")
    add("--jobs", type=int, default=None, help=f"jobs in the run table (default {JOBS:,})")
    add("--duration", type=float, default=None, help="seconds of wrk load per round (default 10)")
    add("--warmup", type=float, default=None, help="seconds of wrk warm-up per round (default 2)")
    add("--rounds", type=int, default=None, help="rounds per system, in rotating order (default 2)")
    add("--threads", type=int, default=2, help="wrk threads (default 2)")
    add("--connections", type=int, default=20, help="wrk keep-alive connections (default 20)")
    add("--poll-interval", type=int, default=None,
        help=f"seconds between polls, for every system (default: the load's duration, so that a poll "
             f"lands in the load as it would in production, and at least {MIN_POLL_INTERVAL}: 5,000 batches "
             f"on two connections cannot all be polled in less)")
    add("--pool", type=int, default=POOL_SIZE,
        help=f"databases.bench.max_connections of batch-exporter: its connections and polling threads "
             f"(default {POOL_SIZE}, the exporter's default)")
    add("--repeat", type=int, default=None, help="repetitions per timed poll or query (default 5)")
    add("--ready-timeout", type=float, default=900.0,
        help="seconds to wait for a full cache (default 900: 5,000 batches take minutes on a busy machine)")
    add("--budget", type=float, default=1800.0,
        help="seconds the serving rounds may take; rounds that would overrun are skipped (default 900)")
    add("--only", choices=SYSTEMS, action="append", help="measure only these systems (repeatable)")
    add("--skip-poll", action="store_true", help="skip the in-process poll timings")
    add("--drop-table", action="store_true", help=f"drop {TABLE} at the end (by default it is kept)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs if args.jobs is not None else (QUICK_JOBS if args.quick else JOBS)
    if args.jobs < NO_SUCCESS_EVERY:
        parser.error(f"--jobs must be at least {NO_SUCCESS_EVERY} (every {NO_SUCCESS_EVERY}th job has no "
                     f"success in its window)")
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    args.repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if args.poll_interval is None:
        args.poll_interval = max(MIN_POLL_INTERVAL, round(args.duration))
    return args


def prepare(args: argparse.Namespace) -> tuple[dict[str, Path], list[Timing], int, int]:
    """Run table, configuration files and poll timings: (config paths, timings, jobs the fleet polled,
    the server's max_connections)."""
    admin = connect()
    try:
        cursor = admin.cursor()
        log(f"run table {TABLE}: {ensure_run_table(cursor, args.jobs)}")
        limit = server_max_connections(cursor)
        configs = {
            "fleet": fleet_config(args.poll_interval, args.pool),
            "batches": batches_config(args.poll_interval, args.pool, args.jobs),
            "sql_exporter": sql_exporter_config(args.poll_interval),
            "empty": fleet_config(args.poll_interval, args.pool, where="job_name = 'no such job'"),
        }
        paths = {key: write_yaml(OUT / f"fleet-bench-{key.replace('_', '-')}.yml", content)
                 for key, content in configs.items()}
        timings: list[Timing] = []
        polled = 0
        if not args.skip_poll:
            log("timing one poll of the fleet ...")
            fleet_timings, polled = fleet_poll_timings(paths["fleet"], cursor, args.repeat)
            log(f"timing one poll of {args.jobs:,} batches ...")
            timings = fleet_timings + batches_poll_timings(paths["batches"], args.repeat)
            timings.append(grouped_query_timing(cursor, args.repeat))
    finally:
        admin.close()  # hold no session while the exporters connect
    return paths, timings, polled, limit


def revision() -> str:
    """The checkout measured: its commit, '-dirty' when files differ from it (the numbers depend on them)."""
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        log("wrk is not installed (Debian package wrk): run `make system-deps`")
        return 2
    # SIGTERM (a timeout around `make bench`) must still stop the exporters started below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    OUT.mkdir(parents=True, exist_ok=True)
    begun = time.monotonic()
    try:
        paths, timings, polled, limit = prepare(args)
        failures: dict[str, str] = {}
        if timings and polled != args.jobs:
            failures["fleet poll"] = f"exported {polled} jobs, expected {args.jobs}"
        log("series of a fully configured batch (the demo's) ...")
        full: FullBatch | None = None
        try:
            full = full_batch_series(OUT / "fleet-bench-demo")
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            failures["full batch"] = str(exc)
        systems: dict[str, System] = {}
        for key in args.only or SYSTEMS:
            system = resolve(key, paths[key], args.jobs)
            if system is None:
                failures[TITLES[key]] = "not installed (apt-get install prometheus-sql-exporter)"
            else:
                systems[key] = system
        expositions: dict[str, Exposition] = {}
        measured, skipped = run_rounds(systems, args, failures, expositions) if systems else ([], [])
        verdicts, goals = verdict_report(timings, measured, args.jobs)
        report = (poll_report(timings, args.jobs) + [""] + scrape_report(measured, failures, args, expositions)
                  + [""] + series_report(expositions, full, args.jobs) + [""] + verdicts)
        print("\n".join(report))
        if skipped:
            print(f"  skipped to stay within --budget {args.budget:g}s: {', '.join(skipped)}")
        with open("/proc/loadavg", encoding="ascii") as loadavg:
            load = loadavg.read().split()[:3]
        print(f"\n(bench took {time.monotonic() - begun:.0f}s; load average now {' '.join(load)}; "
              f"PostgreSQL max_connections {limit}; code {revision()})")
        result = {"jobs": args.jobs, "runs_in_window_per_job": RECENT_RUNS, "older_runs_per_job": OLD_RUNS,
                  "pool": args.pool, "poll": [asdict(t) for t in timings],
                  "systems": [asdict(m) for m in measured],
                  "expositions": {key: asdict(e) for key, e in expositions.items()},
                  "full_batch": None if full is None else asdict(full), "goals": asdict(goals),
                  "failures": failures, "load_average": load, "revision": revision()}
        (OUT / "fleet_bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 1 if failures else 0
    finally:
        if args.drop_table:
            admin = connect()
            admin.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
            admin.close()


if __name__ == "__main__":
    sys.exit(main())
