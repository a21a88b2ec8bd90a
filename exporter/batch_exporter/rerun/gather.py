"""Gathering the evidence: the run table, the records query and the checks through the batch's
database, then the logs. Read-only: only the configured SELECTs run.

Evidence, for one business date (default: the business date of the batch's latest run):
- the run table's columns as the exporter finds them (a column named `business_date` is used without
  configuration; a table without one counts attempts by their local start date, and the report says so);
- every attempt (run) for that date, with its status, start, end, duration and rows by state;
- runs of the batch still in progress, whatever their business date;
- the rows of each attempt by state (the `records` query), pending ones singled out;
- each consistency check run once, its value against its bounds;
- lines matching each log's patterns, from files modified since the latest attempt started (a minute's
  slack for clocks that differ): the last MiBs of each file only; lines stamped more than a day before
  that start are counted, not shown; card numbers and long digit runs masked (masking.py).
"""
from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ..config import BatchConfig, Config, DatabaseConfig, RunsConfig
from ..database import Database, QueryError, open_database
from ..masking import mask_digits
from ..runsummary import attempts_worth_reading, date_key, key_instant
from ..sources.checks import check_value
from ..sources.run_columns import MissingColumns
from ..sources.run_table import RunTable, TimestampsContradicted, UnreadableRow
from .bounded import BoundedDatabase
from .evidence import (
    MAX_ATTEMPTS_READ,
    Attempt,
    CheckResult,
    Evidence,
    parse_run,
    select_attempts,
    slots_of_date,
    window_start,
)
from .logs import LogLimits, scan_log

FALLBACK_LOG_WINDOW = timedelta(hours=24)  # when the latest attempt's start is unknown

OpenDatabase = Callable[[str, DatabaseConfig], Database]


def _open(name: str, db: DatabaseConfig) -> Database:
    return open_database(name, sqlite=db.sqlite, odbc=db.odbc, query_timeout=db.query_timeout,
                         connect_timeout=db.connect_timeout)


def describe_database(name: str, db: DatabaseConfig) -> str:
    """'payments' plus where it is, without secrets: the SQLite path, or just 'ODBC'."""
    return f"{name!r} (SQLite file {db.sqlite})" if db.sqlite is not None else f"{name!r} (ODBC)"


def gather(config: Config, batch_name: str, *, business_date: str | None = None,
           now: datetime | None = None, limits: LogLimits | None = None,
           open_db: OpenDatabase = _open) -> Evidence:
    """Collect the evidence for `batch_name` (which must be in `config`); never raises for a DB failure."""
    batch = config.batches[batch_name]
    now = now or datetime.now(UTC)
    limits = limits or LogLimits()
    tz_name = (batch.runs.key_timezone or batch.runs.timezone) if batch.runs is not None else "UTC"
    ev = Evidence(batch=batch_name, now=now, timezone=tz_name, idempotent=batch.idempotent,
                  requested_date=business_date, business_date=date_key(business_date),
                  max_duration=batch.max_duration,
                  pending_states=list(batch.records.pending_states) if batch.records is not None else None,
                  done_states=(list(batch.records.done_states) if batch.records is not None
                               and batch.records.done_states is not None else None))
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
            "driver_missing": "has no driver installed", "query": "refused the query",
            "permission": "refuses this account (login refused or a grant missing)"}[exc.reason]
    detail = str(exc).removeprefix(f"database {name!r}: ")
    return f"database {describe_database(name, db)} {what}: {mask_digits(detail)}"


def _gather_runs(ev: Evidence, batch: BatchConfig, runs: RunsConfig, db: Database,
                 db_config: DatabaseConfig) -> Evidence:
    assert batch.database is not None
    # the run table read as the exporter's runs source reads it: the same columns, boundary and rows
    table = RunTable(ev.batch, runs, batch.records, db.query, text_timestamps=db_config.sqlite is not None)
    start = window_start(ev.now, runs.lookback, table.key_tz, ev.requested_date)
    ev = replace(ev, window_start=start)
    mapping = runs.status.model_dump()
    parsed = []
    try:
        resolved = table.columns()
        rows = table.window(start)
        if resolved.business_date_note is not None:
            ev = replace(ev, business_date_note=resolved.business_date_note)
        for number, raw in enumerate(rows, 1):
            try:
                parsed.append(parse_run(raw, mapping, table.tz, slot_keys=table.slot_keys, key_tz=table.key_tz))
            except ValueError as exc:
                raise UnreadableRow(number, exc) from None
    except MissingColumns as exc:
        return replace(ev, run_table_error=f"batches.{ev.batch}.runs.columns: {exc}")
    except QueryError as exc:
        return replace(ev, run_table_error=f"the run table could not be read: "
                                           f"{_unavailable(exc, batch.database, db_config)}")
    except TimestampsContradicted as exc:
        return replace(ev, run_table_error=f"batches.{ev.batch}.runs.timestamps: {exc}")
    except UnreadableRow as exc:
        return replace(ev, run_table_error=f"the run table returned a row it cannot read (row {exc.number}): "
                                           f"{exc}")
    slots = slots_of_date(ev.requested_date, parsed, table.key_tz)
    if len(slots) > 1:
        shown = ", ".join(slots[:12]) + (f" and {len(slots) - 12} more" if len(slots) > 12 else "")
        return replace(ev, run_table_error=f"business date {date_key(ev.requested_date)} holds {len(slots)} run keys "
                                           f"(scheduled slots): {shown}; name one with --business-date")
    chosen, attempts, recent = select_attempts(parsed, ev.requested_date, table.key_tz, ev.now)
    chosen_ids = {id(a) for a in attempts}
    others = [a for a in parsed if a.row.status in ("running", "queued") and id(a) not in chosen_ids]
    ev = replace(ev, business_date=chosen, attempts=attempts, other_running=others, recent_dates=recent)
    command = batch.records.rerun_unfinished if batch.records is not None else None
    # the key comes from the table: quoted for a shell, and only a date or slot is offered at all
    if command is not None and chosen is not None and key_instant(chosen, table.key_tz) is not None:
        ev = replace(ev, rerun_unfinished=command.replace("{key}", shlex.quote(chosen)))
    if batch.records is None or not attempts:
        return ev
    chosen_positions = set(attempts_worth_reading([a.row for a in attempts], ev.now, ev.max_duration,
                                                  limit=MAX_ATTEMPTS_READ))
    read = [_read_records(a, table, batch.database, db_config) if i in chosen_positions else a
            for i, a in enumerate(attempts)]
    return replace(ev, attempts=read, attempts_not_read=len(attempts) - len(chosen_positions))


def _read_records(a: Attempt, table: RunTable, name: str, db_config: DatabaseConfig) -> Attempt:
    try:
        return replace(a, records=table.records(a.key, state_text=mask_digits))
    except QueryError as exc:
        return replace(a, records_error=_unavailable(exc, name, db_config))
    except ValueError as exc:
        return replace(a, records_error=f"the records query returned a row it cannot read: {exc}")


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
            results.append(replace(result, value=check_value(rows)))
        except ValueError as exc:
            results.append(replace(result, error=str(exc)))
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
