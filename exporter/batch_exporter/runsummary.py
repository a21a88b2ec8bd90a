"""Pure logic: from the rows of a run table to the numbers of the metric contract."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .values import as_float, as_text, as_utc_datetime

STATUSES = ("success", "failed", "running", "unknown")


@dataclass(frozen=True)
class RunRow:
    """One run, status already mapped, timestamps aware UTC."""

    run_id: str
    business_date: str | None
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    code: str | None = None  # the status as the table holds it


@dataclass(frozen=True)
class RunsOfDate:
    """The attempts of the latest business date, in start order, and which of them are in progress."""

    business_date: str | None
    attempts: tuple[RunRow, ...]
    live: frozenset[str]  # run ids in progress (see in_progress) and not yet presumed dead


@dataclass(frozen=True)
class RunSummary:
    latest: RunRow | None
    last_start: datetime | None
    last_end: datetime | None
    last_success: datetime | None
    last_duration: float | None
    running: int
    running_seconds: float
    attempts: int
    by_status: dict[str, int]
    presumed_dead: int = 0
    latest_date: RunsOfDate | None = None


def map_status(raw: str | None, mapping: dict[str, Sequence[str]], *, ended: bool = False) -> str:
    """Our status word for a raw DB status value; 'unknown' when unmapped, and 'failed' when unmapped on a
    run that has ended: a finished run that did not report a mapped success pages as a failure would."""
    if raw is not None:
        for status, values in mapping.items():
            if raw in values:
                return status
    return "failed" if ended else "unknown"


def parse_run_row(raw: Sequence[object], mapping: dict[str, Sequence[str]], tz: ZoneInfo
                  ) -> tuple[RunRow, str | None]:
    """One row of the window query (run_id, business_date, status, started_at, ended_at): the run, and
    its status code as the table holds it. Naive timestamps are read in `tz`.

    Raises ValueError naming the column, never the value (it may be anything, a card number too).
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
                 status=map_status(values["status"], mapping, ended=values["ended_at"] is not None),
                 started_at=values["started_at"], ended_at=values["ended_at"], code=values["status"])
    return row, values["status"]


def _business_text(value: object) -> str | None:
    if isinstance(value, date):  # a datetime too: its date part
        return value.isoformat()[:10]
    return as_text(value)


def records_by_state(rows: Iterable[Sequence[object]], state_text: Callable[[str], str] = str
                     ) -> dict[str, float]:
    """Rows of a records query (state, count) summed by state, the state as `state_text` shows it.

    A NULL state is '' and a NULL count 0. Raises ValueError for a row without two columns or with a
    state or count of the wrong type, naming the row, never the value.
    """
    counts: dict[str, float] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise ValueError(f"expected two columns, state and count (row {number} has {len(row)})")
        try:
            state = state_text(as_text(row[0]) or "")
            count = as_float(row[1]) or 0.0
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from None
        counts[state] = counts.get(state, 0.0) + count
    return counts


_DATE_TEXT = re.compile(r"(\d{4})[-/.](\d{2})[-/.](\d{2})(?:[ T].*)?")


def date_key(text: str | None) -> str | None:
    """A business date in one spelling, 'YYYY-MM-DD', from ISO dates (also '20261126'), '2026/11/26' and a
    date with a time of day ('2026-11-26 00:00:00', as SQLite keeps DATETIME); other text stays as it is."""
    if text is None:
        return None
    stripped = text.strip()
    try:
        return date.fromisoformat(stripped).isoformat()
    except ValueError:
        pass
    match = _DATE_TEXT.fullmatch(stripped)
    if match:
        try:
            return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
        except ValueError:
            pass
    return stripped


def business_date_of(row: RunRow, tz: ZoneInfo) -> str | None:
    """The row's business date (see date_key), or the local date of its start when the table has none."""
    if row.business_date is not None:
        return date_key(row.business_date)
    if row.started_at is not None:
        return row.started_at.astimezone(tz).date().isoformat()
    return None


def start_order(row: RunRow) -> tuple[float, str]:
    """Sort key putting runs in the order they started (unknown starts first, ties by run id)."""
    return (row.started_at.timestamp() if row.started_at else float("-inf"), row.run_id)


def latest_business_date(rows: Sequence[RunRow], tz: ZoneInfo, now: datetime) -> str | None:
    """The business date the batch is on: the greatest calendar date among the runs' business dates, so that
    a re-run of an older date does not hide today's attempts.

    Dates after tomorrow in `tz` are passed over (a mistyped year must not take over the window), and so
    are dates that are not calendar dates; a run without a business date counts by its local start date
    only when no run has one. When no date qualifies: the date of the run that started last.
    """
    ordered = sorted(rows, key=start_order)
    if any(r.business_date is not None for r in ordered):
        ordered = [r for r in ordered if r.business_date is not None]
    keys = [key for key in (business_date_of(r, tz) for r in ordered) if key is not None]
    if not keys:
        return None
    horizon = now.astimezone(tz).date() + timedelta(days=1)
    dates = []
    for key in keys:
        try:
            day = date.fromisoformat(key)
        except ValueError:
            continue
        if day <= horizon:
            dates.append(day)
    return max(dates).isoformat() if dates else keys[-1]


def in_progress(row: RunRow, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """Marked running; or, on the latest business date of a batch with a max_duration, with a status
    runs.status does not map and no end yet: it may still be running, and is presumed dead past
    max_duration. Elsewhere such a run would stay "in progress" for good, hiding its rows and holding a
    running count nobody can clear: it counts as not in progress."""
    if row.status == "running":
        return True
    return of_latest_date and max_duration is not None and row.status == "unknown" and row.ended_at is None


def presumed_dead(row: RunRow, now: datetime, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """A run still in progress past its max_duration: its process most likely died without a word."""
    return (in_progress(row, max_duration, of_latest_date=of_latest_date) and max_duration is not None
            and row.started_at is not None and (now - row.started_at).total_seconds() > max_duration)


def live(row: RunRow, now: datetime, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """In progress and not presumed dead: its pending rows are work under way, not rows left behind."""
    return (in_progress(row, max_duration, of_latest_date=of_latest_date)
            and not presumed_dead(row, now, max_duration, of_latest_date=of_latest_date))


MAX_ATTEMPTS_WITH_RECORDS = 20  # records queries per poll, and per rerun-check


def attempts_worth_reading(attempts: Sequence[RunRow], now: datetime, max_duration: float | None,
                           limit: int = MAX_ATTEMPTS_WITH_RECORDS, last_read: Mapping[str, int] | None = None
                           ) -> list[int]:
    """Positions (ascending) of the attempts of one business date whose rows to read when there may be more
    than `limit`: always the latest; then those never read before (`last_read`: run id -> when, leaving
    out what must be read again), then those read longest ago, and among equals first the ones that did
    not succeed and are not running (they may have left rows behind), newest first. Read again and again,
    as the exporter does, every attempt comes round: a crashed attempt's rows stay in view however often
    the batch was re-run after it."""
    if not attempts:
        return []
    last_read = last_read or {}
    latest = len(attempts) - 1

    def priority(position: int) -> tuple[int, int, int]:
        row = attempts[position]
        settled_failure = row.status != "success" and not live(row, now, max_duration)
        return (last_read.get(row.run_id, -1), 0 if settled_failure else 1, -position)

    others = sorted(range(latest), key=priority)
    return sorted([latest, *others[:max(0, limit - 1)]])


def summarize(rows: Sequence[RunRow], now: datetime, tz: ZoneInfo, max_duration: float | None = None
              ) -> RunSummary:
    """Summarise the lookback window. The latest run is the one that started last; the attempts are those of
    the latest business date (see latest_business_date)."""
    ordered = sorted(rows, key=start_order)
    latest = ordered[-1] if ordered else None
    latest_date = latest_business_date(ordered, tz, now)
    dated = [(r, business_date_of(r, tz) == latest_date) for r in ordered]
    finished = [r for r in ordered if r.status != "running" and r.ended_at is not None]
    last_finished = finished[-1] if finished else None
    successes = [r.ended_at for r in finished if r.status == "success" and r.ended_at is not None]
    running = [(r, of_date) for r, of_date in dated if in_progress(r, max_duration, of_latest_date=of_date)]
    running_starts = [r.started_at for r, _ in running if r.started_at is not None]
    attempts = 0
    of_date = None
    if latest is not None:
        same = tuple(r for r, of_latest in dated if of_latest)
        attempts = len(same)
        of_date = RunsOfDate(latest_date, same, frozenset(r.run_id for r in same if live(r, now, max_duration)))
    duration = None
    if last_finished is not None and last_finished.started_at is not None and last_finished.ended_at is not None:
        duration = max(0.0, (last_finished.ended_at - last_finished.started_at).total_seconds())
    counts = Counter(r.status for r in ordered)
    return RunSummary(
        latest=latest,
        last_start=latest.started_at if latest else None,
        last_end=last_finished.ended_at if last_finished else None,
        last_success=max(successes) if successes else None,
        last_duration=duration,
        running=len(running),
        running_seconds=max(0.0, (now - min(running_starts)).total_seconds()) if running_starts else 0.0,
        attempts=attempts,
        by_status={status: counts.get(status, 0) for status in STATUSES},
        presumed_dead=sum(1 for r, of_latest in running
                          if presumed_dead(r, now, max_duration, of_latest_date=of_latest)),
        latest_date=of_date,
    )
