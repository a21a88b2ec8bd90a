"""Pure logic: from the rows of a run table to the numbers of the metric contract."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

STATUSES = ("success", "failed", "running", "unknown")


@dataclass(frozen=True)
class RunRow:
    """One run, status already mapped, timestamps aware UTC."""

    run_id: str
    business_date: str | None
    status: str
    started_at: datetime | None
    ended_at: datetime | None


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


def map_status(raw: str | None, mapping: dict[str, Sequence[str]]) -> str:
    """Our status word for a raw DB status value; 'unknown' when unmapped."""
    if raw is not None:
        for status, values in mapping.items():
            if raw in values:
                return status
    return "unknown"


def business_date_of(row: RunRow, tz: ZoneInfo) -> str | None:
    """The row's business date, or the local date of its start when the table has none."""
    if row.business_date is not None:
        return row.business_date
    if row.started_at is not None:
        return row.started_at.astimezone(tz).date().isoformat()
    return None


def _start_key(row: RunRow) -> tuple[float, str]:
    return (row.started_at.timestamp() if row.started_at else float("-inf"), row.run_id)


def summarize(rows: Sequence[RunRow], now: datetime, tz: ZoneInfo) -> RunSummary:
    """Summarise the lookback window. The latest run is the one that started last."""
    ordered = sorted(rows, key=_start_key)
    latest = ordered[-1] if ordered else None
    finished = [r for r in ordered if r.status != "running" and r.ended_at is not None]
    last_finished = finished[-1] if finished else None
    successes = [r.ended_at for r in finished if r.status == "success" and r.ended_at is not None]
    running = [r for r in ordered if r.status == "running"]
    running_starts = [r.started_at for r in running if r.started_at is not None]
    attempts = 0
    if latest is not None:
        latest_date = business_date_of(latest, tz)
        attempts = sum(1 for r in ordered if business_date_of(r, tz) == latest_date)
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
    )
