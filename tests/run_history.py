"""A constructed run history, written identically into SQLite, PostgreSQL or MariaDB (test helper)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")


@dataclass(frozen=True)
class History:
    now: datetime                     # aware UTC, whole seconds
    runs: list[tuple[int, str, str, str, datetime, datetime | None]]  # id, job, biz_date, status, start, end (UTC)
    records: list[tuple[int, int, str]]  # request id, run id, state

    def local(self, moment: datetime | None) -> str | None:
        """Naive Asia/Tokyo text, the way the batch writes its timestamps."""
        return None if moment is None else moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def make_history(now: datetime | None = None) -> History:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    h = timedelta(hours=1)
    d1 = (now - 24 * h).astimezone(TOKYO).date().isoformat()
    d2 = (now - 48 * h).astimezone(TOKYO).date().isoformat()
    d3 = (now - 72 * h).astimezone(TOKYO).date().isoformat()
    d20 = (now - 480 * h).astimezone(TOKYO).date().isoformat()
    runs = [
        # card-auth: two good nights, then a failed night re-run and still running
        (1, "card-auth", d3, "OK", now - 72 * h, now - 71 * h),
        (2, "card-auth", d2, "OK", now - 48 * h, now - 47 * h),
        (3, "card-auth", d1, "ABEND", now - 5 * h, now - 5 * h + timedelta(minutes=30)),
        (4, "card-auth", d1, "RUN", now - timedelta(minutes=30), None),
        # settlement: a single healthy night
        (5, "settlement", d1, "OK", now - 20 * h, now - 19 * h - timedelta(minutes=15)),
        (6, "settlement", d2, "XX", now - 44 * h, now - 43 * h),
        # report: last run long ago, outside the 14 day window
        (7, "report", d20, "OK", now - 480 * h, now - 479 * h),
    ]
    records = [(100 + i, 4, "AUTHORIZING") for i in range(5)] + [(200 + i, 4, "APPROVED") for i in range(10)] \
        + [(300 + i, 3, "ERROR") for i in range(2)]
    return History(now, runs, records)


DDL = {
    "sqlite": ("CREATE TABLE {runs} (run_id INTEGER PRIMARY KEY, job TEXT, biz_date TEXT, status TEXT, "
               "start_time TEXT, end_time TEXT)",
               "CREATE TABLE {auth} (req_id INTEGER PRIMARY KEY, run_id INTEGER, state TEXT)"),
    "sql": ("CREATE TABLE {runs} (run_id INTEGER PRIMARY KEY, job VARCHAR(40), biz_date DATE, status VARCHAR(10), "
            "start_time TIMESTAMP NULL, end_time TIMESTAMP NULL)",
            "CREATE TABLE {auth} (req_id INTEGER PRIMARY KEY, run_id INTEGER, state VARCHAR(20))"),
}


def fill(cursor: object, dialect: str, history: History, runs_table: str, auth_table: str) -> None:
    """Create and fill both tables through a DB-API cursor using qmark parameters."""
    for statement in DDL["sqlite" if dialect == "sqlite" else "sql"]:
        cursor.execute(statement.format(runs=runs_table, auth=auth_table))  # type: ignore[attr-defined]
    for run_id, job, biz, status, start, end in history.runs:
        cursor.execute(  # type: ignore[attr-defined]
            f"INSERT INTO {runs_table} VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, job, biz, status, history.local(start), history.local(end)))
    for req_id, run_id, state in history.records:
        cursor.execute(f"INSERT INTO {auth_table} VALUES (?, ?, ?)", (req_id, run_id, state))  # type: ignore


def sqlite_history(path: str, history: History) -> None:
    conn = sqlite3.connect(path)
    fill(conn.cursor(), "sqlite", history, "batch_run", "auth_request")
    conn.commit()
    conn.close()


def config_yaml(database_block: str, runs_table: str = "batch_run", auth_table: str = "auth_request") -> str:
    """Three batches over one shared run table, plus one batch with no history at all."""

    def batch(job: str, cron: str, tz: str, extra: str = "", grace: str = "15m") -> str:
        return f"""
  {job}:
    database: main
    runs:
      table: {runs_table}
      where: "job = '{job}'"
      columns: {{run_id: run_id, business_date: biz_date, status: status, started_at: start_time, ended_at: end_time}}
      status: {{success: [OK], failed: [NG, ABEND], running: [RUN]}}
      lookback: 14d
      timezone: Asia/Tokyo
    schedule: {{cron: "{cron}", timezone: {tz}, grace: {grace}}}
    max_duration: 90m{extra}
"""

    records = f"""
    records:
      query: "SELECT state, COUNT(*) FROM {auth_table} WHERE run_id = ? GROUP BY state"
      pending_states: [AUTHORIZING, RECEIVED]
    checks:
      stuck_authorizing: {{query: "SELECT COUNT(*) FROM {auth_table} WHERE state = 'AUTHORIZING'", max: 0}}
      errors_known: {{query: "SELECT COUNT(*) FROM {auth_table} WHERE state = 'ERROR'", min: 1, max: 5}}"""
    return ("global:\n  poll_interval: 1s\n  log_poll_interval: 1s\ndatabases:\n  main:\n" + database_block
            # card-auth's failed night began 5 hours ago whatever the hour: a grace of 6 hours keeps its key
            # today's start's (an earlier start begun before the grace is a re-run of an earlier key's)
            + "batches:" + batch("card-auth", "0 2 * * *", "Asia/Tokyo", records + "\n    idempotent: false", "6h")
            + batch("settlement", "30 1 * * *", "America/New_York", "\n    idempotent: true")
            + batch("report", "0 6 * * 1", "Europe/London")
            + batch("never-run", "*/5 * * * *", "UTC"))
