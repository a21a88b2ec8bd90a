"""How values read in rule messages and reports: local times, ages, counts, bounds, plurals."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..masking import mask_digits
from ..units import format_duration
from .evidence import Attempt, CheckResult, Evidence


def local_time(moment: datetime | None, tz: str) -> str:
    """'YYYY-MM-DD HH:MM:SS' in the batch's zone; '-' when unknown."""
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: datetime) -> str:
    """'1h5m ago' (or 'in ...' for a moment after `now`)."""
    if moment is None:
        return "start unknown"
    seconds = round((now - moment).total_seconds())
    return f"{format_duration(seconds)} ago" if seconds >= 0 else f"in {format_duration(-seconds)}"


def masked_code(raw: str | None) -> str | None:
    """A raw status code with its digits masked (a code column may hold anything); None stays None."""
    return None if raw is None else mask_digits(raw)


def status_code(raw: str | None, *, quoted: bool = True) -> str:
    """A raw status code as text, quoted unless `quoted` is false, digits masked; 'NULL' for none."""
    code = masked_code(raw)
    if code is None:
        return "NULL"
    return repr(code) if quoted else code


def count(value: float) -> str:
    """A row count without a needless '.0'."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def rows(value: float) -> str:
    """'1 row', '3 rows'."""
    return f"{count(value)} row{'' if value == 1 else 's'}"


def number(value: float | None) -> str:
    """A count, or '-' when there is no value."""
    return "-" if value is None else count(value)


def states(counts: dict[str, float]) -> str:
    """'APPROVED 7, ERROR 2': states by descending count."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{state} {count(n)}" for state, n in ordered)


def bounds(check: CheckResult) -> str:
    """'min 0, max 10', or 'no bounds'."""
    parts = []
    if check.config.min is not None:
        parts.append(f"min {count(check.config.min)}")
    if check.config.max is not None:
        parts.append(f"max {count(check.config.max)}")
    return ", ".join(parts) or "no bounds"


def many(n: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def presumed_dead(a: Attempt, ev: Evidence) -> str:
    """'marked running for 5h, longer than max_duration 2h: its process most likely died'."""
    started, limit = a.row.started_at, ev.max_duration
    assert started is not None and limit is not None  # as Evidence.presumed_dead requires
    return (f"marked running for {format_duration(round((ev.now - started).total_seconds()))}, longer than "
            f"max_duration {format_duration(round(limit))}: its process most likely died")
