#!/usr/bin/env python3
"""Scrape, poll and memory benchmark: batch-exporter beside query-exporter and prometheus-sql-exporter.

One run, one machine, the same PostgreSQL table and the same 50 batches for every system:

1. a 1,000,000-row run table (created once, reused while fresh) and the time of one poll of the
   exporter's own runs source against a naive latest-run-per-batch query, with EXPLAIN's plan;
2. each exporter in turn serving the 50 batches from its cache, loaded by wrk (20 keep-alive
   clients), with its resident memory after warm-up and after the load.

Targets are printed PASS/FAIL beside the numbers; nothing is asserted. Only 127.0.0.1 is used, and
every process started here is stopped before the script ends.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import (
    ODBC,
    OUT,
    PG_URL,
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
    server_max_connections,
    time_call,
    verdict,
    write_yaml,
)

PG_SQLALCHEMY = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # query-exporter
TABLE = "bench_batch_run"
INDEX = "bench_batch_run_job_start"
BATCHES = 50
ROWS = 1_000_000
RECENT_RUNS = 20  # per batch, one a day; the rest are half-hourly runs older than 15 days
LOOKBACK_DAYS = 14
NO_SUCCESS_BATCH = BATCHES - 1  # its recent runs all failed: the poll also asks for the last success ever
QUERY_EXPORTER = "query-exporter==5.0.2"  # the version whose config format this script writes

SYSTEMS = ("ours", "ours_idle", "query_exporter", "sql_exporter")
IDLE_POLL_INTERVAL = 3600  # ours_idle: the first poll only, none during the load

TARGET_P99_MS = 20.0
TARGET_RSS_MIB = 60.0


def batch_name(index: int) -> str:
    return f"bench_job_{index:02d}"


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

# Statuses: old runs OK with one in fifty NG. Recent runs (r = 0 is the latest): every 7th batch is
# running now, the next one just failed, the next one was re-run (NG, then OK for the same business
# date); batch 49 failed every recent run.
_FILL_TABLE = f"""
INSERT INTO {TABLE} (run_id, job_name, biz_date, status, start_ts, end_ts)
SELECT run_id, job_name,
       CASE WHEN r = 0 AND j % 7 = 2 THEN (start_ts - interval '1 day')::date ELSE start_ts::date END,
       status, start_ts,
       CASE WHEN status = 'RUN' THEN NULL ELSE start_ts + make_interval(mins => 5 + (j * 7 + k) % 20) END
FROM (
    SELECT j, k, r, j::bigint * {{per_job}} + k + 1 AS run_id,
           'bench_job_' || lpad(j::text, 2, '0') AS job_name,
           CASE WHEN r < {RECENT_RUNS}
                THEN now_utc - make_interval(days => r, hours => 1, mins => j)
                ELSE now_utc - interval '15 days' - make_interval(mins => 30 * (r - {RECENT_RUNS}) + j)
           END AS start_ts,
           CASE WHEN r >= {RECENT_RUNS} THEN CASE WHEN k % 50 = 7 THEN 'NG' ELSE 'OK' END
                WHEN j = {NO_SUCCESS_BATCH} THEN 'NG'
                WHEN r = 0 AND j % 7 = 0 THEN 'RUN'
                WHEN r = 0 AND j % 7 = 1 THEN 'NG'
                WHEN r = 1 AND j % 7 = 2 THEN 'NG'
                ELSE 'OK'
           END AS status
    FROM generate_series(0, {BATCHES - 1}) AS j
    CROSS JOIN generate_series(0, {{per_job}} - 1) AS k
    CROSS JOIN LATERAL (SELECT {{per_job}} - 1 - k AS r, timezone('UTC', now()) AS now_utc) AS x
) AS runs"""


def ensure_run_table(cursor: Any, rows: int, log: Callable[[str], None]) -> str:
    """Create the run table and its index unless a fresh one with `rows` rows exists; say which."""
    # integers, not booleans: psqlODBC hands booleans over as the strings '1' and '0'
    cursor.execute("SELECT (to_regclass(?) IS NOT NULL)::int, (to_regclass(?) IS NOT NULL)::int",
                   (TABLE, INDEX))
    table_exists, index_exists = cursor.fetchone()
    if table_exists:
        cursor.execute(f"SELECT count(*), (timezone('UTC', now()) - max(start_ts) < interval '6 hours')::int "
                       f"FROM {TABLE}")
        count, fresh = cursor.fetchone()
        if count == rows and index_exists and fresh:
            return "reused"
        log(f"  {TABLE}: {count} rows, index {'present' if index_exists else 'missing'}, "
            f"{'fresh' if fresh else 'stale'}: rebuilding")
        cursor.execute(f"DROP TABLE {TABLE}")
    started = time.perf_counter()
    cursor.execute(_CREATE_TABLE)
    cursor.execute(_FILL_TABLE.format(per_job=rows // BATCHES))
    cursor.execute(f"CREATE INDEX {INDEX} ON {TABLE} (job_name, start_ts)")
    cursor.execute(f"ANALYZE {TABLE}")
    return f"created in {time.perf_counter() - started:.1f}s"


# --- configurations: the same 50 batches for each system -------------------------------------------


def check_sql(batch: str) -> str:
    return (f"SELECT COUNT(*) FROM {TABLE} WHERE job_name = '{batch}' AND status = 'NG' "
            f"AND start_ts >= timezone('UTC', now()) - interval '1 day'")


def baseline_runs_sql(batch: str) -> str:
    """What the baselines poll per batch: the lookback window by status, on the same index range.

    query-exporter wants each value column named after its metric; the Go exporter takes any names.
    """
    return (
        f"SELECT '{batch}'::text AS batch, status::text AS status, COUNT(*)::float AS bench_runs, "
        f"EXTRACT(EPOCH FROM MAX(start_ts))::float AS bench_last_start, "
        f"COALESCE(EXTRACT(EPOCH FROM MAX(end_ts)), 0)::float AS bench_last_end "
        f"FROM {TABLE} WHERE job_name = '{batch}' "
        f"AND start_ts >= timezone('UTC', now()) - interval '{LOOKBACK_DAYS} days' GROUP BY status"
    )


def baseline_check_sql(batch: str) -> str:
    return f"SELECT '{batch}'::text AS batch, ({check_sql(batch)})::float AS bench_failed_last_day"


def ours_config(interval: float) -> dict[str, Any]:
    batches = {}
    for i in range(BATCHES):
        name = batch_name(i)
        batches[name] = {
            "database": "bench",
            "runs": {
                "table": TABLE,
                "where": f"job_name = '{name}'",
                "columns": {"run_id": "run_id", "business_date": "biz_date", "status": "status",
                            "started_at": "start_ts", "ended_at": "end_ts"},
                "status": {"success": ["OK"], "failed": ["NG"], "running": ["RUN"]},
                "lookback": f"{LOOKBACK_DAYS}d",
                "timezone": "UTC",
            },
            "schedule": {"cron": f"{i} 2 * * *", "timezone": "UTC", "grace": "15m"},
            "max_duration": "30m",
            "checks": {"failed_last_day": {"query": check_sql(name), "max": 0}},
        }
    return {"global": {"poll_interval": f"{interval:g}s"},
            "databases": {"bench": {"odbc": ODBC, "query_timeout": "10s"}},
            "batches": batches}


def query_exporter_config(interval: int) -> dict[str, Any]:
    def gauge(description: str, *labels: str) -> dict[str, Any]:
        return {"type": "gauge", "description": description, "labels": list(labels)}

    queries = {}
    for i in range(BATCHES):
        name = batch_name(i)
        queries[f"runs_{name}"] = {"databases": ["bench"], "metrics": ["bench_runs", "bench_last_start",
                                                                       "bench_last_end"],
                                   "interval": interval, "sql": baseline_runs_sql(name)}
        queries[f"check_{name}"] = {"databases": ["bench"], "metrics": ["bench_failed_last_day"],
                                    "interval": interval, "sql": baseline_check_sql(name)}
    return {
        "databases": {"bench": {"dsn": PG_SQLALCHEMY}},
        "metrics": {
            "bench_runs": gauge("runs in the window", "batch", "status"),
            "bench_last_start": gauge("latest start", "batch", "status"),
            "bench_last_end": gauge("latest end", "batch", "status"),
            "bench_failed_last_day": gauge("failed runs", "batch"),
        },
        "queries": queries,
    }


def sql_exporter_config(interval: int) -> dict[str, Any]:
    queries = []
    for i in range(BATCHES):
        name = batch_name(i)
        queries.append({"name": "bench_runs", "help": "runs in the window", "labels": ["batch", "status"],
                        "values": ["bench_runs", "bench_last_start", "bench_last_end"],
                        "query": baseline_runs_sql(name)})
        queries.append({"name": "bench_failed_last_day", "help": "failed runs", "labels": ["batch"],
                        "values": ["bench_failed_last_day"], "query": baseline_check_sql(name)})
    job = {"name": "bench", "interval": f"{interval}s", "connections": [PG_URL], "queries": queries}
    return {"jobs": [job]}


# --- one poll: the exporter's own queries against a naive one --------------------------------------

# Two common ways of writing "the latest run of every batch" that read the whole table.
NAIVE_QUERIES = {
    "naive latest run per batch: MAX() GROUP BY, joined back": (
        f"SELECT r.job_name, r.status, r.start_ts, r.end_ts FROM {TABLE} r "
        f"JOIN (SELECT job_name, MAX(start_ts) AS latest FROM {TABLE} GROUP BY job_name) l "
        f"ON l.job_name = r.job_name AND l.latest = r.start_ts"
    ),
    "naive latest run per batch: ROW_NUMBER() OVER": (
        f"SELECT job_name, status, start_ts, end_ts FROM (SELECT job_name, status, start_ts, end_ts, "
        f"ROW_NUMBER() OVER (PARTITION BY job_name ORDER BY start_ts DESC) AS n FROM {TABLE}) ranked "
        f"WHERE n = 1"
    ),
}
# What would make the last-success fallback an index-only lookup (tried in a rolled-back transaction).
SUGGESTED_INDEX = f"CREATE INDEX bench_batch_run_job_status_end ON {TABLE} (job_name, status, end_ts)"


def poll_timings(config_path: Path, cursor: Any, repeat: int) -> list[Timing]:
    """Time the exporter's runs source (in-process, real ODBC) and its statements against the naive query."""
    from batch_exporter.config import load_config
    from batch_exporter.database import open_database
    from batch_exporter.run_statements import build_last_success_query, build_window_query
    from batch_exporter.sources.runs import RunsSource

    config = load_config(config_path)
    db_config = config.databases["bench"]
    db = open_database("bench", odbc=db_config.odbc, query_timeout=db_config.query_timeout,
                       connect_timeout=db_config.connect_timeout)
    timings: list[Timing] = []
    try:
        typical, failing = batch_name(3), batch_name(NO_SUCCESS_BATCH)
        boundary = (dt.datetime.now(dt.UTC) - dt.timedelta(days=LOOKBACK_DAYS)).replace(tzinfo=None)
        runs = config.batches[typical].runs
        assert runs is not None
        window_sql = build_window_query(runs)
        success_params = tuple(runs.status.success)
        failing_runs = config.batches[failing].runs
        assert failing_runs is not None
        failing_success_sql = build_last_success_query(failing_runs)

        def timed(label: str, call: Callable[[], Any], plan: str) -> None:
            median, fastest, result = time_call(call, repeat)
            rows = len(result) if plan else None  # a plan comes with a query, whose rows are worth showing
            timings.append(Timing(label, median, fastest, rows, plan))

        source = RunsSource(typical, config.batches[typical], db)
        timed(f"exporter poll, one runs source ({typical})", source.poll, "")
        timed("  its window query", lambda: db.query(window_sql, (boundary,)),
              plan_of(cursor, window_sql, (boundary,)))
        failing_source = RunsSource(failing, config.batches[failing], db)
        timed(f"exporter poll, no success in window ({failing})", failing_source.poll, "")
        timed("  its last-success fallback", lambda: db.query(failing_success_sql, success_params),
              plan_of(cursor, failing_success_sql, success_params))
        timings.append(_with_suggested_index(cursor, failing_success_sql, success_params, repeat))
        sources = [RunsSource(name, config.batches[name], db) for name in config.batches]
        timed(f"all {len(sources)} runs sources, one after another", lambda: [s.poll() for s in sources], "")
        for label, sql in NAIVE_QUERIES.items():
            timed(label, partial(db.query, sql), plan_of(cursor, sql))
    finally:
        db.close()
    return timings


def _with_suggested_index(cursor: Any, sql: str, params: Sequence[object], repeat: int) -> Timing:
    """The fallback query again with SUGGESTED_INDEX built inside a transaction that is rolled back."""
    cursor.execute("BEGIN")
    try:
        cursor.execute(SUGGESTED_INDEX)
        plan = plan_of(cursor, sql, params)

        def call() -> list[Any]:
            cursor.execute(sql, tuple(params))
            return cursor.fetchall()

        median, fastest, result = time_call(call, repeat)
    finally:
        cursor.execute("ROLLBACK")
    return Timing("  fallback with index (job_name, status, end_ts)", median, fastest, len(result), plan)


# --- the systems ----------------------------------------------------------------------------------


def ours(config_path: Path, idle: bool = False) -> System:
    port = free_port()
    argv, env = exporter_argv(config_path, port)
    key, title = ("ours_idle", "batch-exporter, no poll in load") if idle else ("ours", "batch-exporter")
    return System(key, title, argv, port, ("batch_runs", "batch_check_value"), BATCHES, ready_path="/-/ready",
                  env=env)


def query_exporter(config_path: Path, log: Callable[[str], None]) -> System:
    venv = OUT / "qe-venv"
    binary = venv / "bin" / "query-exporter"
    if not binary.exists():
        log(f"  installing {QUERY_EXPORTER} into {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", QUERY_EXPORTER, "psycopg[binary]"],
                       check=True, timeout=600)
    port = free_port()
    return System("query_exporter", "query-exporter", [str(binary), "--config", str(config_path),
                                                       "-H", "127.0.0.1", "-p", str(port), "-L", "warning"],
                  port, ("bench_runs", "bench_failed_last_day"), BATCHES)


def sql_exporter(config_path: Path) -> System | None:
    binary = shutil.which("prometheus-sql-exporter")
    if binary is None:
        return None
    port = free_port()
    return System("sql_exporter", "prometheus-sql-exporter (Go)",
                  [binary, "-config.file", str(config_path), "-web.listen-address", f"127.0.0.1:{port}"],
                  port, ("sql_bench_runs", "sql_bench_failed_last_day"), BATCHES, env={"LOGLEVEL": "warn"})


# --- report ----------------------------------------------------------------------------------------


def poll_report(poll: list[Timing], repeat: int) -> list[str]:
    if not poll:
        return []
    lines = [f"One poll on PostgreSQL, {ROWS:,} rows, {BATCHES} batches "
             f"(median of {repeat}, after one warm call):"]
    for t in poll:
        rows = "" if t.rows is None else f"  rows={t.rows}"
        lines.append(f"  {t.label:<56} {t.median_ms:9.2f} ms  (min {t.min_ms:.2f}){rows}")
        if t.plan:
            lines.append(f"  {'':<56} plan: {t.plan}")
    fallback = next((t for t in poll if t.label.endswith("last-success fallback")), None)
    if fallback is not None and "Index Only Scan" not in fallback.plan:
        lines.append(f"  NOTE: the runs source's last-success fallback (SELECT MAX(ended_at) ... WHERE "
                     f"status IN (...)) reads every row of the batch ({fallback.median_ms:.1f} ms here, "
                     f"growing with history); it runs once per source start, for a batch whose lookback "
                     f"window holds no success (the answer is kept: only a success inside the window can "
                     f"supersede it). An index on (job_name, status, end_ts) makes it an index-only "
                     f"lookup (the line below it).")
    return lines


def scrape_report(measured: list[Measured], failures: dict[str, str], args: argparse.Namespace,
                  max_connections: int) -> list[str]:
    lines = [f"Scrapes: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency "
             f"-H 'Accept-Encoding: gzip'; poll interval {args.poll_interval}s; {BATCHES} batches; "
             f"median of {args.rounds} round(s), systems in rotating order",
             f"  {'system':<31} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'RSS warm':>8} "
             f"{'RSS after':>9} {'RSS peak':>8} {'series':>6} {'body KiB':>8} {'sent KiB':>8} {'gzip':>4} "
             f"{'DB conns':>8}"]
    summaries = {m.key: Summary.of(m) for m in measured}
    for m in measured:
        s = summaries[m.key]
        lines.append(
            f"  {s.title:<31} {s.rate:7.0f} {s.p50_ms:7.2f} {s.p99_ms:7.2f} {s.errors:6d} "
            f"{s.rss_warm_mib:8.1f} {s.rss_after_mib:9.1f} {s.rss_peak_mib:8.1f} {m.series or 0:6d} "
            f"{(m.body_bytes or 0) / 1024:8.1f} {(m.wire_bytes or 0) / 1024:8.1f} "
            f"{'yes' if m.gzip else 'no':>4} {s.db_connections:8.0f}")
    for title, why in failures.items():
        lines.append(f"  {title:<31} not measured: {why}")
    lines.append(f"  (RSS in MiB; DB conns: the process's connections to PostgreSQL, whose max_connections "
                 f"is {max_connections})")
    mine = summaries.get("ours")
    return lines if mine is None else lines + [""] + _verdicts(mine, summaries, max_connections)


def _verdicts(mine: Summary, summaries: dict[str, Summary], max_connections: int) -> list[str]:
    lines = []
    for key in ("query_exporter", "sql_exporter"):
        other = summaries.get(key)
        if other is not None:
            lines.append(f"  ours / {other.title}: req/s x{mine.rate / other.rate:.2f} (higher is better), "
                         f"p99 x{mine.p99_ms / other.p99_ms:.2f}, "
                         f"RSS x{mine.rss_after_mib / other.rss_after_mib:.2f} (lower is better)")
    go = summaries.get("sql_exporter")
    go_rate = "-" if go is None else f"{go.rate:.0f}"
    lines.append(f"  target: req/s >= the Go sql-exporter's ({mine.rate:.0f} vs {go_rate}): "
                 f"{verdict(None if go is None else mine.rate >= go.rate)}")
    lines.append(f"  target: p99 < {TARGET_P99_MS:g} ms ({mine.p99_ms:.2f}): "
                 f"{verdict(mine.p99_ms < TARGET_P99_MS)}")
    idle = summaries.get("ours_idle")
    if idle is not None and mine.p99_ms > TARGET_P99_MS and idle.p99_ms < mine.p99_ms / 2:
        lines.append(f"    (p99 {idle.p99_ms:.2f} ms when no poll lands in the load: the tail comes with the "
                     f"poll cycle, when all {3 * BATCHES} sources finish within a moment of each other)")
    rss = max(mine.rss_warm_mib, mine.rss_after_mib)
    lines.append(f"  target: RSS < {TARGET_RSS_MIB:g} MiB ({rss:.1f}): {verdict(rss < TARGET_RSS_MIB)}")
    if mine.db_connections * 2 >= max_connections:
        lines.append(f"  NOTE: batch-exporter held {mine.db_connections:.0f} PostgreSQL connections for "
                     f"{BATCHES} batches; the server allows {max_connections}.")
    return lines


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Numbers and the raw wrk output also go to bench/out/scrape_bench.json.")
    add = parser.add_argument
    add("--quick", action="store_true", help="short run: one round of 3 s, 2 repetitions per query")
    add("--duration", type=float, default=None, help="seconds of wrk load per round (default 10)")
    add("--warmup", type=float, default=None, help="seconds of wrk warm-up per round (default 2)")
    add("--rounds", type=int, default=None, help="rounds per system, in rotating order (default 2)")
    add("--threads", type=int, default=2, help="wrk threads (default 2)")
    add("--connections", type=int, default=20, help="wrk keep-alive connections (default 20)")
    add("--poll-interval", type=int, default=None,
        help="seconds between polls, for every system (default: the load's duration, so that a poll "
             "cycle lands in the load as it would in production)")
    add("--repeat", type=int, default=None, help="repetitions per timed query (default 5)")
    add("--ready-timeout", type=float, default=30.0, help="seconds to wait for a full cache (default 30)")
    add("--budget", type=float, default=240.0,
        help="seconds the serving rounds may take; rounds that would overrun are skipped (default 240)")
    add("--only", choices=SYSTEMS, action="append",
        help="measure only these systems (repeatable); ours_idle is batch-exporter polling once an hour, "
             "so that no poll lands in the load: serving alone")
    add("--skip-poll", action="store_true", help="skip the one-poll timings")
    add("--drop-table", action="store_true",
        help=f"drop {TABLE} at the end (by default it is kept for the next run)")
    args = parser.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    args.repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if args.poll_interval is None:
        args.poll_interval = max(1, round(args.duration))
    return args


def prepare(args: argparse.Namespace) -> tuple[dict[str, Path], list[Timing], int]:
    """Run table, configuration files and poll timings; returns (config paths, timings, max_connections)."""
    admin = connect()
    try:
        cursor = admin.cursor()
        log(f"run table {TABLE}: {ensure_run_table(cursor, ROWS, log)}")
        max_connections = server_max_connections(cursor)
        configs = {
            "ours": ours_config(args.poll_interval),
            "ours_idle": ours_config(IDLE_POLL_INTERVAL),
            "query_exporter": query_exporter_config(args.poll_interval),
            "sql_exporter": sql_exporter_config(args.poll_interval),
        }
        paths = {key: OUT / f"bench-{key.replace('_', '-')}.yml" for key in configs}
        for key, content in configs.items():
            write_yaml(paths[key], content)
        poll: list[Timing] = []
        if not args.skip_poll:
            log("timing one poll ...")
            poll = poll_timings(paths["ours"], cursor, args.repeat)
    finally:
        admin.close()  # hold no session while the exporters connect
    return paths, poll, max_connections


def resolve(key: str, config: Path) -> System | None:
    """The system to start for `key`; None when it is not installed."""
    if key in ("ours", "ours_idle"):
        return ours(config, idle=key == "ours_idle")
    if key == "query_exporter":
        return query_exporter(config, log)
    return sql_exporter(config)


def run_rounds(systems: dict[str, System], args: argparse.Namespace,
               failures: dict[str, str]) -> tuple[list[Measured], list[str]]:
    """Every system once per round, the starting system rotating; a system that fails is not retried."""
    results = {key: Measured(key, system.title) for key, system in systems.items()}
    skipped: list[str] = []
    started = time.monotonic()
    keys = list(systems)
    for number in range(args.rounds):
        for key in keys[number % len(keys):] + keys[:number % len(keys)]:
            system = systems[key]
            if system.title in failures:
                continue
            if time.monotonic() - started + args.warmup + args.duration + 15 > args.budget:
                skipped.append(f"{system.title} round {number + 1}")
                continue
            log(f"round {number + 1}: {system.title} on 127.0.0.1:{system.port} ...")
            try:
                measure_round(system, results[key], args, log)
            except (RuntimeError, TimeoutError, subprocess.SubprocessError, ValueError, OSError) as exc:
                failures[system.title] = f"{exc} (log: {OUT / (key + '.log')})"
    return [m for m in results.values() if m.rounds], skipped


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
        paths, poll, max_connections = prepare(args)
        systems: dict[str, System] = {}
        failures: dict[str, str] = {}
        for key in args.only or SYSTEMS:
            system = resolve(key, paths[key])
            if system is None:
                failures[key] = "not installed (apt-get install prometheus-sql-exporter)"
            else:
                systems[key] = system
        measured, skipped = run_rounds(systems, args, failures) if systems else ([], [])
        print("\n".join(poll_report(poll, args.repeat) + [""]
                        + scrape_report(measured, failures, args, max_connections)))
        if skipped:
            print(f"  skipped to stay within --budget {args.budget:g}s: {', '.join(skipped)}")
        print(f"\n(bench took {time.monotonic() - begun:.0f}s)")
        result = {"poll": [asdict(t) for t in poll], "systems": [asdict(m) for m in measured],
                  "failures": failures}
        (OUT / "scrape_bench.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 1 if failures else 0
    finally:
        if args.drop_table:
            admin = connect()
            admin.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
            admin.close()


if __name__ == "__main__":
    sys.exit(main())
