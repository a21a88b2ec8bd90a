"""`batch-exporter rerun-check BATCH`: the evidence to read before re-running a failed batch, and a verdict.

Read-only, like the exporter: it runs the configured SELECTs (the run table, the records query, the
checks) and reads the tails of the configured logs. Nothing is written anywhere.

Evidence, for one business date (default: the business date of the batch's latest run):
- every attempt (run) for that date, with its status, start, end, duration and rows by state;
- runs of the batch still in progress, whatever their business date;
- the rows of each attempt by state (the `records` query), pending ones singled out;
- each consistency check run once, its value against its bounds;
- lines matching each log's patterns, from files modified since the latest attempt started (a minute's
  slack for clocks that differ): the last MiBs of each file only; lines stamped more than a day before
  that start are counted, not shown; card numbers and long digit runs masked (masking.py).

Rules, evaluated in this order; the verdict is UNSAFE (exit 1) when any rule says unsafe, otherwise
UNKNOWN (exit 2) when any says unknown, otherwise SAFE (exit 0):
1. The run table must be configured and readable and hold a run for the date; else UNKNOWN.
2. No run of the batch may be in progress: two copies of a batch at once are never safe (a run stuck in
   the running state must be confirmed dead and corrected first). UNSAFE. A latest attempt whose status
   code is not mapped in `runs.status` may be running: UNKNOWN.
3. An idempotent batch (`idempotent: true`: "a re-run can never do harm") is SAFE once 1 and 2 pass;
   the rules below are still shown for it, as warnings.
4. Not idempotent: no attempt for the date may have succeeded already (a re-run repeats it). UNSAFE.
5. Not idempotent: no attempt may have left rows in a pending state (it died without rolling back).
   UNSAFE. Without a `records` query the rows cannot be seen: UNKNOWN.
6. Not idempotent: no failed attempt may have left rows in any other state: the tool cannot know which
   of your states are harmless to redo (an APPROVED payment is not), so "changed data" means any row
   at all. Only an attempt that failed before writing, or rolled everything back, is a clean failure.
   UNSAFE.
7. Not idempotent: every consistency check must be within its bounds (UNSAFE) and readable (UNKNOWN).
Error lines in the logs never decide the verdict (a failed run always has some); they are there to be
read before anyone decides.
"""
from __future__ import annotations

import argparse
import codecs
import glob
import json
import os
import queue
import re
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .config import (
    BatchConfig,
    CheckConfig,
    Config,
    ConfigError,
    DatabaseConfig,
    LogConfig,
    RunsConfig,
    load_config,
)
from .database import Database, QueryError, Row, open_database
from .masking import clean_line, mask_digits
from .runsummary import RunRow, business_date_of, map_status
from .sources.checks import within_bounds
from .sources.runs import build_window_query
from .units import format_duration, parse_size
from .values import as_float, as_text, as_utc_datetime

Verdict = Literal["safe", "unsafe", "unknown"]
Result = Literal["ok", "unsafe", "unknown", "warning", "info"]
EXIT_CODES: dict[Verdict, int] = {"safe": 0, "unsafe": 1, "unknown": 2}

MAX_ATTEMPTS_READ = 20  # records queries for at most the latest 20 attempts of the date
DEFAULT_LOG_BYTES = 8 * 1024**2
DEFAULT_LOG_LINES = 20
MAX_LOG_FILES = 10  # newest files per log
MTIME_SLACK_SECONDS = 60.0  # the log host's clock and the database's may differ a little
FALLBACK_LOG_WINDOW = timedelta(hours=24)  # when the latest attempt's start is unknown
# A matching line stamped this long before the start is old news. The log's time zone is unknown: 27 h is
# more than any two zones differ, so a line of the attempt is never taken for an old one.
OLD_LINE_MARGIN = timedelta(hours=27)
_DEADLINE_MARGIN = 3.0
_UNAVAILABLE = ("connect", "timeout", "driver_missing")


# --- evidence -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One run of the batch: mapped status and raw code, rows by state once read."""

    row: RunRow
    raw_status: str | None
    key: object  # the run id as the database returned it, for the records query
    records: dict[str, float] | None = None
    records_error: str | None = None

    @property
    def run_id(self) -> str:
        return self.row.run_id

    def duration(self, now: datetime) -> float | None:
        start, end = self.row.started_at, self.row.ended_at
        if start is None:
            return None
        if end is None:
            return max(0.0, (now - start).total_seconds()) if self.row.status == "running" else None
        return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class CheckResult:
    name: str
    config: CheckConfig
    value: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool | None:
        """Within bounds; None when the check could not be run."""
        return None if self.value is None else within_bounds(self.value, self.config)


@dataclass(frozen=True)
class LogFile:
    path: str
    size: int
    modified: datetime
    read_bytes: int
    truncated: bool  # only the last `read_bytes` were read


@dataclass(frozen=True)
class LogLine:
    file: str
    patterns: tuple[str, ...]
    text: str  # cleaned and masked


@dataclass(frozen=True)
class LogEvidence:
    name: str
    path: str
    files: list[LogFile] = field(default_factory=list)
    older_files: int = 0  # matched the path but not modified since the start
    skipped_files: int = 0  # modified since, but beyond the newest LogLimits.files
    matching_lines: int = 0
    old_lines: int = 0  # matching, but stamped long before the start
    by_pattern: dict[str, int] = field(default_factory=dict)
    lines: list[LogLine] = field(default_factory=list)  # the last ones
    problems: list[str] = field(default_factory=list)

    @property
    def lines_not_shown(self) -> int:
        return self.matching_lines - len(self.lines)


@dataclass(frozen=True)
class Evidence:
    """Everything gathered for one batch and business date; `run_table_error` set when runs are unseen."""

    batch: str
    now: datetime
    timezone: str
    idempotent: bool
    requested_date: str | None
    business_date: str | None = None
    run_table_error: str | None = None
    window_start: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)  # oldest first
    other_running: list[Attempt] = field(default_factory=list)  # in progress, other business dates
    recent_dates: list[tuple[str, int]] = field(default_factory=list)  # (date, attempts), newest first
    pending_states: list[str] | None = None  # None: no records query configured
    attempts_not_read: int = 0  # older attempts whose rows were not queried
    checks: list[CheckResult] = field(default_factory=list)
    logs: list[LogEvidence] = field(default_factory=list)
    log_since: datetime | None = None
    log_since_reason: str = ""

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


# --- pure logic: rows, dates, the verdict ---------------------------------------------------------


def date_key(text: str | None) -> str | None:
    """A business date in one spelling: ISO dates (also '20261126') become 'YYYY-MM-DD', other text stays."""
    if text is None:
        return None
    stripped = text.strip()
    try:
        return date.fromisoformat(stripped).isoformat()
    except ValueError:
        return stripped


def window_start(now: datetime, lookback: float, tz: ZoneInfo, wanted: str | None) -> datetime:
    """Start of the run-table window: the lookback, reaching back to the day before `wanted` if older."""
    start = now - timedelta(seconds=lookback)
    key = date_key(wanted)
    if key is not None:
        try:
            day = date.fromisoformat(key)
        except ValueError:
            return start
        start = min(start, datetime.combine(day - timedelta(days=1), time(), tz).astimezone(UTC))
    return start


def parse_run(raw: Row, mapping: dict[str, list[str]], tz: ZoneInfo) -> Attempt:
    """One row of the window query (run_id, business_date, status, started_at, ended_at) as an Attempt.

    Raises ValueError naming the column; never the value (it may be anything).
    """
    if len(raw) < 5:
        raise ValueError(f"expected 5 columns, got {len(raw)}")
    run_id, business, status, started, ended = raw[:5]
    values: dict[str, Any] = {}
    for column, value, convert in (
        ("run_id", run_id, as_text), ("status", status, as_text),
        ("started_at", started, lambda v: as_utc_datetime(v, tz)),
        ("ended_at", ended, lambda v: as_utc_datetime(v, tz)),
        ("business_date", business, _business_text),
    ):
        try:
            values[column] = convert(value)
        except ValueError as exc:
            raise ValueError(f"column {column}: {exc}") from None
    row = RunRow(run_id=values["run_id"] or "", business_date=values["business_date"],
                 status=map_status(values["status"], mapping), started_at=values["started_at"],
                 ended_at=values["ended_at"])
    return Attempt(row=row, raw_status=values["status"], key=run_id)


def _business_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()[:10]
    return as_text(value)


def _start_key(attempt: Attempt) -> tuple[float, str]:
    start = attempt.row.started_at
    return (start.timestamp() if start else float("-inf"), attempt.run_id)


def select_attempts(runs: Sequence[Attempt], wanted: str | None, tz: ZoneInfo
                    ) -> tuple[str | None, list[Attempt], list[tuple[str, int]]]:
    """(business date, its attempts oldest first, recent dates with attempt counts newest first).

    Without `wanted`, the date is the one of the run that started last.
    """
    ordered = sorted(runs, key=_start_key)
    keys = [date_key(business_date_of(a.row, tz)) for a in ordered]
    counts: dict[str, int] = {}
    for key in reversed(keys):
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    recent = list(counts.items())[:7]
    chosen = date_key(wanted) if wanted is not None else (keys[-1] if keys else None)
    attempts = [a for a, key in zip(ordered, keys, strict=True) if chosen is not None and key == chosen]
    return chosen, attempts, recent


@dataclass(frozen=True)
class RuleResult:
    rule: str
    result: Result
    message: str


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    rules: list[RuleResult]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def reasons(self) -> list[str]:
        wanted = {"safe": "ok", "unsafe": "unsafe", "unknown": "unknown"}[self.verdict]
        return [r.message for r in self.rules if r.result == wanted]


def judge(ev: Evidence) -> Judgement:
    """Apply the rules of the module docstring to gathered evidence."""
    rules = _Rules(ev)
    latest, day = ev.latest, ev.business_date or "?"
    if ev.run_table_error is not None:
        rules.add("run_table", "unknown", ev.run_table_error)
    elif latest is None:
        seen = ", ".join(f"{d} ({n})" for d, n in ev.recent_dates) or "none"
        rules.add("run_found", "unknown", f"no run of {ev.batch} found for business date {day} since "
                                          f"{rules.local(ev.window_start)}; recent dates (attempts): {seen}")
    else:
        rules.add("run_found", "ok", f"{_many(len(ev.attempts), 'attempt')} for business date {day}, "
                                     f"latest run {latest.run_id}")
    if latest is None:  # nothing else can be judged without the runs
        return rules.judgement()

    running = [a for a in ev.attempts + ev.other_running if a.row.status == "running"]
    for a in running:
        rules.add("nothing_running", "unsafe",
                  f"run {a.run_id} (business date {business_date_of(a.row, ZoneInfo(ev.timezone))}) is still "
                  f"running: started {rules.local(a.row.started_at)}, {_ago(a.row.started_at, ev.now)}; wait "
                  "for it, or confirm the process is gone and correct its status first")
    if not running and latest.row.status == "unknown":
        rules.add("nothing_running", "unknown",
                  f"run {latest.run_id} has status code {_code(latest.raw_status)}, which runs.status does "
                  "not map: it may still be running")
    elif not running:
        rules.add("nothing_running", "ok", f"no run of {ev.batch} is in progress")

    if ev.idempotent:
        rules.add("idempotent", "ok", "idempotent: true in the configuration (a re-run can never do harm): "
                                      "the rules below are warnings only")
    else:
        rules.add("idempotent", "info", "not idempotent (idempotent: false): a re-run repeats whatever "
                                        "earlier attempts did, so it is safe only after a clean failure")
    succeeded = [a for a in ev.attempts if a.row.status == "success"]
    for a in succeeded:
        rules.add("not_succeeded", rules.soft, f"run {a.run_id} already succeeded for {day} (ended "
                                               f"{rules.local(a.row.ended_at)}): a re-run does it all again")
    if not succeeded:
        rules.add("not_succeeded", "ok", f"no attempt for {day} succeeded")
    _judge_rows(ev, rules)
    _judge_checks(ev, rules)
    return rules.judgement()


class _Rules:
    """Collects rule results; `soft` is what a failed rule 4-7 means for this batch (rule 3)."""

    def __init__(self, ev: Evidence) -> None:
        self.results: list[RuleResult] = []
        self.timezone = ev.timezone
        self.soft: Result = "warning" if ev.idempotent else "unsafe"
        self.soft_unknown: Result = "warning" if ev.idempotent else "unknown"

    def add(self, rule: str, result: Result, message: str) -> None:
        self.results.append(RuleResult(rule, result, message))

    def local(self, moment: datetime | None) -> str:
        return _local(moment, self.timezone)

    def judgement(self) -> Judgement:
        return Judgement(_verdict(self.results), self.results)


def _judge_rows(ev: Evidence, rules: _Rules) -> None:
    if ev.pending_states is None:
        rules.add("no_pending_rows", rules.soft_unknown,
                  "no records query is configured for this batch: rows left behind by the attempts cannot be "
                  "seen")
        return
    pending_set = set(ev.pending_states)
    unread = pending_found = changed_found = False
    for a in ev.attempts:
        if a.records_error is not None:
            unread = True
            rules.add("no_pending_rows", rules.soft_unknown,
                      f"rows of run {a.run_id} could not be read: {a.records_error}")
        if a.records is None:
            continue
        pending = {s: n for s, n in a.records.items() if s in pending_set and n}
        if pending:
            pending_found = True
            rules.add("no_pending_rows", rules.soft,
                      f"run {a.run_id} left {_count(sum(pending.values()))} rows in pending states "
                      f"({_states(pending)}): it stopped without rolling back")
        changed = {s: n for s, n in a.records.items() if s not in pending_set and n}
        # a successful attempt changed data by design: rule 4 already speaks about it
        if changed and a.row.status != "success" and not ev.idempotent:
            changed_found = True
            rules.add("no_data_changed", "unsafe",
                      f"run {a.run_id} ({a.row.status}) changed data: {_count(sum(changed.values()))} rows "
                      f"reached {_states(changed)}; a re-run of a non-idempotent batch may repeat that work")
    if ev.attempts_not_read:
        rules.add("no_pending_rows", "info", f"rows of the {ev.attempts_not_read} oldest attempts were not "
                                             f"read (only the latest {MAX_ATTEMPTS_READ} are)")
    if not (unread or pending_found):
        rules.add("no_pending_rows", "ok", "no attempt left rows in pending states")
    if not (unread or changed_found or ev.idempotent):
        rules.add("no_data_changed", "ok", "no failed attempt changed data (none wrote a row, or all were "
                                           "rolled back)")


def _judge_checks(ev: Evidence, rules: _Rules) -> None:
    if not ev.checks:
        rules.add("checks_pass", "info", "no consistency checks are configured")
        return
    for check in ev.checks:
        if check.error is not None:
            rules.add("checks_pass", rules.soft_unknown,
                      f"check {check.name} could not be run: {check.error}")
        elif check.ok is False:
            rules.add("checks_pass", rules.soft, f"check {check.name} = {_number(check.value)}, outside "
                                                 f"{_bounds(check)}")
    if all(check.ok for check in ev.checks):
        rules.add("checks_pass", "ok", f"all {len(ev.checks)} consistency checks are within their bounds")


def _verdict(rules: Sequence[RuleResult]) -> Verdict:
    results = {r.result for r in rules}
    if "unsafe" in results:
        return "unsafe"
    if "unknown" in results:
        return "unknown"
    return "safe"


# --- gathering ------------------------------------------------------------------------------------


class BoundedDatabase(Database):
    """Runs every call on one daemon thread and waits at most a deadline for it.

    The database layer stops slow queries, but a server that accepts a connection and then never
    answers can still block a driver call; the command must end anyway (the thread is abandoned).
    Once the database proved unreachable, later calls fail at once with the same reason.
    """

    def __init__(self, db: Database, connect_timeout: float, query_timeout: float,
                 margin: float = _DEADLINE_MARGIN) -> None:
        self.name = db.name
        self._db = db
        self._first_limit = connect_timeout + query_timeout + margin
        self._limit = query_timeout + margin
        self._first = True
        self._hung: str | None = None
        self._down: QueryError | None = None  # the first connect-type failure; later calls repeat it
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=f"rerun-check:{db.name}", daemon=True)
        self._thread.start()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        if self._hung is not None:
            raise QueryError("timeout", self._hung)
        if self._down is not None:
            raise QueryError(self._down.reason, f"not tried: database {self.name!r} failed a moment ago "
                                                f"({self._down.reason})")
        limit = self._first_limit if self._first else self._limit
        job = _Job(sql, tuple(params))
        self._jobs.put(job)
        if not job.done.wait(limit):
            self._hung = f"database {self.name!r}: no answer within {limit:g}s (server or network hung?)"
            raise QueryError("timeout", self._hung)
        self._first = False
        if job.error is not None:
            if job.error.reason in _UNAVAILABLE:
                self._down = job.error
            raise job.error
        return job.rows

    def close(self) -> None:
        if self._hung is None:
            self._jobs.put(None)
            self._thread.join(self._limit)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.rows = self._db.query(job.sql, job.params)
            except QueryError as exc:
                job.error = exc
            except Exception as exc:  # noqa: BLE001 - a driver bug must reach the caller, not kill the thread
                job.error = QueryError("query", f"database {self.name!r}: {type(exc).__name__}: "
                                                f"{mask_digits(str(exc))}")
            job.done.set()
        self._db.close()


@dataclass
class _Job:
    sql: str
    params: tuple[object, ...]
    rows: list[Row] = field(default_factory=list)
    error: QueryError | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class LogLimits:
    read_bytes: int = DEFAULT_LOG_BYTES
    lines: int = DEFAULT_LOG_LINES
    files: int = MAX_LOG_FILES


OpenDatabase = Callable[[str, DatabaseConfig], Database]


def _open(name: str, db: DatabaseConfig) -> Database:
    return open_database(name, sqlite=db.sqlite, odbc=db.odbc, query_timeout=db.query_timeout,
                         connect_timeout=db.connect_timeout)


def describe_database(name: str, db: DatabaseConfig) -> str:
    """'payments' plus where it is, without secrets: the SQLite path, or just 'ODBC'."""
    return f"{name!r} (SQLite file {db.sqlite})" if db.sqlite is not None else f"{name!r} (ODBC)"


def gather(config: Config, batch_name: str, *, business_date: str | None = None,
           now: datetime | None = None, limits: LogLimits = LogLimits(),
           open_db: OpenDatabase = _open) -> Evidence:
    """Collect the evidence for `batch_name` (which must be in `config`); never raises for a DB failure."""
    batch = config.batches[batch_name]
    now = now or datetime.now(UTC)
    tz_name = batch.runs.timezone if batch.runs is not None else "UTC"
    ev = Evidence(batch=batch_name, now=now, timezone=tz_name, idempotent=batch.idempotent,
                  requested_date=business_date, business_date=date_key(business_date),
                  pending_states=list(batch.records.pending_states) if batch.records is not None else None)
    db: Database | None = None
    db_config = config.databases.get(batch.database) if batch.database is not None else None
    if batch.database is not None and db_config is not None:
        try:
            db = BoundedDatabase(open_db(batch.database, db_config), db_config.connect_timeout,
                                 db_config.query_timeout)
        except (QueryError, ValueError) as exc:
            ev = replace(ev, run_table_error=f"database {describe_database(batch.database, db_config)} "
                                             f"cannot be used: {exc}")
    try:
        if batch.runs is None:
            ev = replace(ev, run_table_error=f"batch {batch_name} has no 'runs' section: its attempts cannot "
                                             "be seen")
        elif db is not None and db_config is not None:
            ev = _gather_runs(ev, batch, batch.runs, db, db_config)
        if batch.checks:
            ev = replace(ev, checks=_gather_checks(batch, db))
    finally:
        if db is not None:
            db.close()
    return _gather_logs(ev, batch, limits)


def _unavailable(exc: QueryError, name: str, db: DatabaseConfig) -> str:
    what = {"connect": "cannot be reached", "timeout": "did not answer in time",
            "driver_missing": "has no driver installed", "query": "refused the query"}[exc.reason]
    detail = str(exc).removeprefix(f"database {name!r}: ")
    return f"database {describe_database(name, db)} {what}: {mask_digits(detail)}"


def _gather_runs(ev: Evidence, batch: BatchConfig, runs: RunsConfig, db: Database,
                 db_config: DatabaseConfig) -> Evidence:
    tz = ZoneInfo(runs.timezone)
    start = window_start(ev.now, runs.lookback, tz, ev.requested_date)
    boundary = start.astimezone(tz).replace(tzinfo=None)
    # SQLite keeps timestamps as text: compare against text of the same shape (as the runs source does)
    param: object = boundary.strftime("%Y-%m-%d %H:%M:%S") if db_config.sqlite is not None else boundary
    ev = replace(ev, window_start=start)
    assert batch.database is not None
    try:
        rows = db.query(build_window_query(runs), (param,))
    except QueryError as exc:
        return replace(ev, run_table_error=f"the run table could not be read: "
                                           f"{_unavailable(exc, batch.database, db_config)}")
    mapping = runs.status.model_dump()
    parsed = []
    for number, raw in enumerate(rows, 1):
        try:
            parsed.append(parse_run(raw, mapping, tz))
        except ValueError as exc:
            return replace(ev, run_table_error=f"the run table returned a row it cannot read (row {number}): "
                                               f"{exc}")
    chosen, attempts, recent = select_attempts(parsed, ev.requested_date, tz)
    chosen_ids = {id(a) for a in attempts}
    others = [a for a in parsed if a.row.status == "running" and id(a) not in chosen_ids]
    ev = replace(ev, business_date=chosen, attempts=attempts, other_running=others, recent_dates=recent)
    if batch.records is None or not attempts:
        return ev
    skipped = max(0, len(attempts) - MAX_ATTEMPTS_READ)
    read = attempts[:skipped] + [_read_records(a, batch.records.query, db, batch.database, db_config)
                                 for a in attempts[skipped:]]
    return replace(ev, attempts=read, attempts_not_read=skipped)


def _read_records(a: Attempt, sql: str, db: Database, name: str, db_config: DatabaseConfig) -> Attempt:
    try:
        rows = db.query(sql, (a.key,))
    except QueryError as exc:
        return replace(a, records_error=_unavailable(exc, name, db_config))
    counts: dict[str, float] = {}
    for row in rows:
        if len(row) < 2:
            return replace(a, records_error="the records query must return two columns: state and count")
        try:
            state = mask_digits(as_text(row[0]) or "")
            count = as_float(row[1]) or 0.0
        except ValueError as exc:
            return replace(a, records_error=f"the records query returned a row it cannot read: {exc}")
        counts[state] = counts.get(state, 0.0) + count
    return replace(a, records=counts)


def _gather_checks(batch: BatchConfig, db: Database | None) -> list[CheckResult]:
    results = []
    for name, check in batch.checks.items():
        result = CheckResult(name=name, config=check)
        if db is None:
            results.append(replace(result, error="not run: the database cannot be used"))
            continue
        try:
            rows = db.query(check.query)
        except QueryError as exc:
            results.append(replace(result, error=mask_digits(str(exc))))
            continue
        try:
            value = as_float(rows[0][0]) if rows and rows[0] else None
        except ValueError as exc:
            results.append(replace(result, error=str(exc)))
            continue
        if value is None:
            results.append(replace(result, error="the query returned no row or NULL; expected one number"))
            continue
        results.append(replace(result, value=value))
    return results


def _gather_logs(ev: Evidence, batch: BatchConfig, limits: LogLimits) -> Evidence:
    if not batch.logs:
        return ev
    latest = ev.latest
    if latest is not None and latest.row.started_at is not None:
        since = latest.row.started_at
        reason = f"start of run {latest.run_id}"
    else:
        since = ev.now - FALLBACK_LOG_WINDOW
        reason = "the latest attempt's start is unknown: files modified in the last 24h"
    logs = [scan_log(name, log, since.timestamp(), limits) for name, log in batch.logs.items()]
    return replace(ev, logs=logs, log_since=since, log_since_reason=reason)


def scan_log(name: str, log: LogConfig, since: float, limits: LogLimits) -> LogEvidence:
    """Lines matching the log's patterns in files of `log.path` modified at or after `since` (epoch s).

    Within those files, lines stamped more than OLD_LINE_MARGIN before `since` are counted, not kept.
    """
    evidence = LogEvidence(name=name, path=log.path)
    if not log.patterns:
        return replace(evidence, problems=["no patterns are configured for this log: nothing to look for"])
    candidates = []
    for path in glob.glob(os.path.expanduser(log.path)):
        try:
            stat = os.stat(path)
        except OSError:
            continue  # rotated away between listing and stat
        if os.path.isfile(path):
            candidates.append((stat.st_mtime, path, stat.st_size))
    if not candidates:
        return replace(evidence, problems=["no file matches this path"])
    recent = sorted(c for c in candidates if c[0] >= since - MTIME_SLACK_SECONDS)
    older = len(candidates) - len(recent)
    skipped = max(0, len(recent) - limits.files)
    recent = recent[skipped:]
    patterns = {pattern: re.compile(regex) for pattern, regex in log.patterns.items()}
    old_before = since - OLD_LINE_MARGIN.total_seconds()
    files, problems = [], []
    shown: deque[tuple[str, tuple[str, ...], str]] = deque(maxlen=limits.lines)
    counts = dict.fromkeys(patterns, 0)
    total = old = 0
    for mtime, path, size in recent:
        try:
            lines, read_bytes, truncated = read_tail(Path(path), log.encoding, limits.read_bytes)
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        files.append(LogFile(path, size, datetime.fromtimestamp(mtime, UTC), read_bytes, truncated))
        is_old = False  # lines without a stamp (stack frames) belong with the line before them
        for line in lines:
            stamp = leading_timestamp(line)
            if stamp is not None:
                is_old = stamp < old_before
            hits = tuple(p for p, regex in patterns.items() if regex.search(line))
            if not hits:
                continue
            if is_old:
                old += 1
                continue
            total += 1
            for p in hits:
                counts[p] += 1
            shown.append((os.path.basename(path), hits, line))
    lines_out = [LogLine(file, hits, clean_line(text)) for file, hits, text in shown]
    return replace(evidence, files=files, older_files=older, skipped_files=skipped, matching_lines=total,
                   old_lines=old, by_pattern=counts, lines=lines_out, problems=problems)


_STAMP = re.compile(r"\[?(\d{4})[-/](\d{2})[-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def leading_timestamp(line: str) -> float | None:
    """Epoch seconds of a 'YYYY-MM-DD HH:MM:SS' (or '/' and 'T') stamp opening the line, read as UTC;
    None without one. The zone is unknown here, which OLD_LINE_MARGIN allows for."""
    match = _STAMP.match(line)
    if match is None:
        return None
    try:
        return datetime(*(int(g) for g in match.groups()), tzinfo=UTC).timestamp()  # type: ignore[misc]
    except ValueError:
        return None


def _layout(encoding: str, head: bytes) -> tuple[str, int]:
    """(codec to decode with, code unit in bytes); UTF-16/32 without an explicit order read their BOM."""
    name = codecs.lookup(encoding).name
    if name in ("utf-16", "utf-32"):
        unit = 2 if name == "utf-16" else 4
        big = codecs.BOM_UTF16_BE if unit == 2 else codecs.BOM_UTF32_BE
        return (f"{name}-be" if head.startswith(big) else f"{name}-le"), unit
    if name.startswith(("utf-16-", "utf-32-")):
        return name, 2 if name.startswith("utf-16") else 4
    return ("utf-8" if name == "utf-8-sig" else name), 1


def read_tail(path: Path, encoding: str, limit: int) -> tuple[list[str], int, bool]:
    """(lines, bytes read, truncated) from the last `limit` bytes of a text file; undecodable bytes
    become U+FFFD. When the file is longer, the first (partial) line of the tail is dropped."""
    with path.open("rb") as handle:
        head = handle.read(4)
        size = os.fstat(handle.fileno()).st_size
        codec, unit = _layout(encoding, head)
        offset = max(0, size - limit)
        offset += -offset % unit  # whole code units, within the limit
        handle.seek(offset)
        data = handle.read(max(0, size - offset))
    text = data.decode(codec, "replace")
    if offset == 0:
        text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if offset > 0:
        lines = lines[1:]
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines], len(data), offset > 0


# --- rendering ------------------------------------------------------------------------------------

_HEADLINES = {
    "safe": "SAFE to re-run",
    "unsafe": "UNSAFE: do not re-run",
    "unknown": "UNKNOWN: evidence is missing, do not re-run blindly",
}
_RESULT_WORDS = {"ok": "ok", "unsafe": "UNSAFE", "unknown": "UNKNOWN", "warning": "warning", "info": "info"}


def _local(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "start unknown"
    seconds = round((now - moment).total_seconds())
    return f"{format_duration(seconds)} ago" if seconds >= 0 else f"in {format_duration(-seconds)}"


def _code(raw: str | None) -> str:
    return "NULL" if raw is None else repr(mask_digits(raw))


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _number(value: float | None) -> str:
    return "-" if value is None else _count(value)


def _states(counts: dict[str, float]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{state} {_count(n)}" for state, n in ordered)


def _bounds(check: CheckResult) -> str:
    parts = []
    if check.config.min is not None:
        parts.append(f"min {_count(check.config.min)}")
    if check.config.max is not None:
        parts.append(f"max {_count(check.config.max)}")
    return ", ".join(parts) or "no bounds"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int],
           indent: str = "  ") -> list[str]:
    """Aligned columns; `right` holds the indexes of right-aligned (numeric) columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _title(ev: Evidence, j: Judgement) -> str:
    when = f"business date {ev.business_date}" if ev.business_date else "business date unknown"
    return f"{_HEADLINES[j.verdict]}: {ev.batch}, {when} (exit {j.exit_code})"


def render_text(ev: Evidence, j: Judgement) -> str:
    """The report for a person at 3 a.m.: verdict first and last, then each kind of evidence."""
    tz = ev.timezone
    out = [_title(ev, j)]
    out += [f"  - {reason}" for reason in j.reasons]
    out += [f"  ! {r.message} (not blocking: idempotent)" for r in j.rules if r.result == "warning"]
    out.append("")
    out.append(f"Attempts for business date {ev.business_date or '?'} (times in {tz})")
    if ev.run_table_error is not None:
        out.append("  not available (see above)")
    elif not ev.attempts:
        out.append("  none found")
    else:
        rows = [_attempt_cells(a, ev) for a in ev.attempts]
        out += _table(["RUN", "STATUS", "STARTED", "ENDED", "DURATION", "ROWS", "PENDING"], rows, {4, 5, 6})
    if ev.other_running:
        out.append("  Also in progress (other business dates):")
        rows = [_attempt_cells(a, ev) for a in ev.other_running]
        out += _table(["RUN", "STATUS", "STARTED", "ENDED", "DURATION", "ROWS", "PENDING"], rows, {4, 5, 6},
                      indent="    ")
    out.append("")
    out += _render_records(ev)
    out.append("")
    out += _render_checks(ev)
    out.append("")
    out.append("Idempotent: " + ("yes (idempotent: true): a re-run is declared harmless" if ev.idempotent
                                 else "no (idempotent: false): a re-run repeats what earlier attempts did"))
    out.append("")
    out += _render_logs(ev)
    out.append("")
    out.append("Rules applied (see `rerun-check --help`)")
    out += _table(["RESULT", "RULE", "DETAIL"],
                  [[_RESULT_WORDS[r.result], r.rule, r.message] for r in j.rules], set())
    out.append("")
    out.append(_title(ev, j))
    return "\n".join(out) + "\n"


def _attempt_cells(a: Attempt, ev: Evidence) -> list[str]:
    duration = a.duration(ev.now)
    if a.records is not None:
        rows = _count(sum(a.records.values()))
        pending_set = set(ev.pending_states or ())
        pending = _count(sum(n for s, n in a.records.items() if s in pending_set))
    else:
        rows = pending = "?" if a.records_error else "-"
    status = f"{a.row.status} ({mask_digits(a.raw_status) if a.raw_status is not None else 'NULL'})"
    return [a.run_id, status, _local(a.row.started_at, ev.timezone), _local(a.row.ended_at, ev.timezone),
            "-" if duration is None else format_duration(round(duration)), rows, pending]


def _render_records(ev: Evidence) -> list[str]:
    latest = ev.latest
    if ev.pending_states is None:
        return ["Rows of the latest attempt: no records query configured"]
    states = ", ".join(ev.pending_states) or "none configured"
    if latest is None:
        return [f"Rows of the latest attempt (pending states: {states}): no attempt found"]
    out = [f"Rows of the latest attempt, run {latest.run_id} (pending states: {states})"]
    if latest.records_error is not None:
        out.append(f"  not available: {latest.records_error}")
    elif latest.records is None:
        out.append("  not read")
    elif not latest.records:
        out.append("  no rows")
    else:
        ordered = sorted(latest.records.items(), key=lambda i: (-i[1], i[0]))
        pending = set(ev.pending_states)
        out += _table(["STATE", "ROWS", ""], [[s, _count(n), "pending" if s in pending else ""]
                                             for s, n in ordered], {1})
    return out


def _render_checks(ev: Evidence) -> list[str]:
    if not ev.checks:
        return ["Consistency checks: none configured"]
    rows = []
    for c in ev.checks:
        result = "ERROR: " + c.error if c.error is not None else ("ok" if c.ok else "FAILED")
        rows.append([c.name, _number(c.value), _bounds(c), result])
    return ["Consistency checks", *_table(["CHECK", "VALUE", "BOUNDS", "RESULT"], rows, {1})]


def _render_logs(ev: Evidence) -> list[str]:
    if not ev.logs:
        return ["Logs: none configured"]
    since = _local(ev.log_since, ev.timezone)
    out = [f"Log lines matching the configured patterns, in files modified since {since} "
           f"({ev.log_since_reason}; masked, newest last)"]
    for log in ev.logs:
        files = f"{_many(len(log.files), 'file')} read"
        if log.older_files:
            files += f", {log.older_files} not modified since (not read)"
        if log.skipped_files:
            files += f", {log.skipped_files} more modified since but not read (newest {len(log.files)} only)"
        counts = ", ".join(f"{p} {n}" for p, n in log.by_pattern.items() if n)
        summary = f"{_many(log.matching_lines, 'matching line')} ({counts})" if log.matching_lines \
            else "no matching line"
        out.append(f"  {log.name}: {log.path}")
        out.append(f"    {summary}; {files}")
        for f in log.files:
            if f.truncated:
                out.append(f"    {os.path.basename(f.path)}: only its last {_mib(f.read_bytes)} of "
                           f"{_mib(f.size)} were read")
        for problem in log.problems:
            out.append(f"    ! {problem}")
        if log.old_lines:
            out.append(f"    {_many(log.old_lines, 'matching line')} stamped over a day before the start "
                       "were left out")
        if log.lines_not_shown:
            out.append(f"    ... {_many(log.lines_not_shown, 'earlier matching line')} not shown")
        for line in log.lines:
            out.append(f"    {line.file} [{','.join(line.patterns)}] {line.text}")
    return out


def _many(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == int(value) else value


def _attempt_json(a: Attempt, ev: Evidence) -> dict[str, Any]:
    pending_set = set(ev.pending_states or ())
    return {
        "run_id": a.run_id,
        "business_date": business_date_of(a.row, ZoneInfo(ev.timezone)),
        "status": a.row.status,
        "status_code": None if a.raw_status is None else mask_digits(a.raw_status),
        "started_at": _iso(a.row.started_at),
        "ended_at": _iso(a.row.ended_at),
        "duration_seconds": a.duration(ev.now),
        "records": None if a.records is None else {s: _json_number(n) for s, n in a.records.items()},
        "pending_records": None if a.records is None else _json_number(
            sum(n for s, n in a.records.items() if s in pending_set)),
        "records_error": a.records_error,
    }


def to_json(ev: Evidence, j: Judgement) -> dict[str, Any]:
    """The report as plain data with stable keys (timestamps ISO-8601 UTC)."""
    return {
        "batch": ev.batch,
        "business_date": ev.business_date,
        "verdict": j.verdict,
        "exit_code": j.exit_code,
        "reasons": j.reasons,
        "rules": [{"rule": r.rule, "result": r.result, "message": r.message} for r in j.rules],
        "idempotent": ev.idempotent,
        "timezone": ev.timezone,
        "checked_at": _iso(ev.now),
        "window_start": _iso(ev.window_start),
        "run_table_error": ev.run_table_error,
        "attempts": [_attempt_json(a, ev) for a in ev.attempts],
        "other_running": [_attempt_json(a, ev) for a in ev.other_running],
        "latest_run_id": ev.latest.run_id if ev.latest else None,
        "pending_states": ev.pending_states,
        "checks": [{"name": c.name, "value": _json_number(c.value), "min": c.config.min,
                    "max": c.config.max, "ok": c.ok, "error": c.error} for c in ev.checks],
        "logs_since": _iso(ev.log_since),
        "logs": [{
            "name": log.name,
            "path": log.path,
            "files": [{"path": f.path, "size_bytes": f.size, "modified_at": _iso(f.modified),
                       "read_bytes": f.read_bytes, "truncated": f.truncated} for f in log.files],
            "older_files": log.older_files,
            "skipped_files": log.skipped_files,
            "matching_lines": log.matching_lines,
            "old_lines": log.old_lines,
            "by_pattern": log.by_pattern,
            "lines": [{"file": line.file, "patterns": list(line.patterns), "text": line.text}
                      for line in log.lines],
            "lines_not_shown": log.lines_not_shown,
            "problems": log.problems,
        } for log in ev.logs],
    }


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rerun-check flags, for `batch-exporter rerun-check`."""
    parser.description = "Gather the evidence to read before re-running a batch, and a verdict."
    parser.epilog = _rules_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("batch", metavar="BATCH", help="batch name, as in the configuration")
    parser.add_argument("-c", "--config.file", dest="config", required=True, type=Path,
                        help="configuration file (YAML)")
    parser.add_argument("--business-date", dest="business_date", metavar="D", default=None,
                        help="business date to check, e.g. 2026-11-26 (default: that of the latest run)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON for scripts")
    parser.add_argument("--log-read-limit", dest="log_read_limit", type=_size, default=DEFAULT_LOG_BYTES,
                        metavar="SIZE", help="read at most the last SIZE of each log file (default 8MiB)")
    parser.add_argument("--log-lines", dest="log_lines", type=int, default=DEFAULT_LOG_LINES, metavar="N",
                        help=f"matching lines shown per log (default {DEFAULT_LOG_LINES})")


def _rules_help() -> str:
    doc = __doc__ or ""
    start = doc.find("Rules,")
    return doc[start:].strip() if start >= 0 else ""


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return size


def run(args: argparse.Namespace) -> int:
    """Run the check described by parsed arguments; print the report; return 0, 1 or 2."""
    _tolerant_output()
    try:
        return _run(args)
    except Exception as exc:  # noqa: BLE001 - exit 1 would read as UNSAFE: a crash must be UNKNOWN
        detail = mask_digits(traceback.format_exc())
        return _fail(args, f"internal error ({type(exc).__name__}); no verdict could be reached", detail)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(args, f"configuration error:\n{exc}")
    if args.batch not in config.batches:
        known = ", ".join(sorted(config.batches))
        return _fail(args, f"no batch named {args.batch!r} in {args.config} (known: {known})")
    limits = LogLimits(read_bytes=args.log_read_limit, lines=max(0, args.log_lines))
    evidence = gather(config, args.batch, business_date=args.business_date, limits=limits)
    judgement = judge(evidence)
    text = json.dumps(to_json(evidence, judgement), indent=2, ensure_ascii=False) + "\n" if args.json \
        else render_text(evidence, judgement)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; the exit code still carries the verdict
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return judgement.exit_code


def _fail(args: argparse.Namespace, message: str, detail: str = "") -> int:
    """No evidence could be gathered at all: UNKNOWN, said on stderr (and as JSON on stdout with --json)."""
    if getattr(args, "json", False):
        print(json.dumps({"batch": getattr(args, "batch", None), "verdict": "unknown", "exit_code": 2,
                          "reasons": [message]}, indent=2, ensure_ascii=False))
    print(f"UNKNOWN: {message}", file=sys.stderr)
    if detail:
        print(detail, file=sys.stderr, end="")
    return EXIT_CODES["unknown"]


def _tolerant_output() -> None:
    # A console that cannot show a character (Japanese log text, ASCII locale) must not crash the report.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-exporter rerun-check")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
