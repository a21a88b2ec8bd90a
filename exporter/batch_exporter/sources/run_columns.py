"""Which mapped columns the run table or query really returns, found by zero-row probes at start.

A column named `business_date` is used without configuration; a table with no business date at all
counts attempts by the local start date in `runs.timezone`, and says so.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ..config import RunColumns, RunsConfig
from ..database import QueryError
from ..run_statements import probe_statement

BUSINESS_DATE = "business_date"
_REQUIRED = ("run_id", "status", "started_at")
_OPTIONAL = ("business_date", "run_key", "attempt", "queued_at", "duration")

Probe = Callable[[str], object]  # runs one SELECT; raises QueryError


class MissingColumns(ValueError):
    """Mapped columns the run table or query does not return: (field, column) pairs."""

    def __init__(self, source: str, missing: Sequence[tuple[str, str]]) -> None:
        self.missing = list(missing)
        names = ", ".join(f"columns.{field} ({column!r})" for field, column in self.missing)
        super().__init__(f"{source} returns no column for {names}")


def describe_source(runs: RunsConfig) -> str:
    return f"the run table {runs.table}" if runs.table is not None else "the runs query"


def resolve_columns(runs: RunsConfig, probe: Probe) -> RunColumns:
    """The configured columns, checked against what the source returns, with `business_date` filled in
    when the source has a column of that name. Raises MissingColumns, or the QueryError of a source that
    cannot be read at all (a connection lost, a query that does not run)."""
    def returns(column: str) -> bool:
        try:
            probe(probe_statement(runs, column))
        except QueryError as exc:
            if exc.reason != "query":
                raise
            return False
        return True

    c = runs.columns
    mapped = _mapped(c)
    if not returns(", ".join(mapped.values())):
        probe(probe_statement(runs, "*"))  # the source itself fails: its own error says why
        missing = [(field, column) for field, column in mapped.items() if not returns(column)]
        if missing:
            raise MissingColumns(describe_source(runs), missing)
    if c.key is None and returns(BUSINESS_DATE):
        return c.model_copy(update={"business_date": BUSINESS_DATE})
    return c


def max_probe_statements(runs: RunsConfig) -> int:
    """The most SELECTs resolve_columns sends: the mapped columns together; when that is refused, the
    source alone and each column alone; then a `business_date` column, unless one is mapped."""
    c = runs.columns
    return 1 + 1 + len(_mapped(c)) + (1 if c.key is None else 0)


def _mapped(c: RunColumns) -> dict[str, str]:
    """The configured column of each field the source must return."""
    mapped = {field: getattr(c, field) for field in _REQUIRED}
    if c.duration is None:
        mapped["ended_at"] = c.ended_at
    for field in _OPTIONAL:
        if getattr(c, field) is not None:
            mapped[field] = getattr(c, field)
    return mapped


def no_business_date_note(runs: RunsConfig) -> str:
    return (f"{describe_source(runs)} has no business date column: attempts are counted by the local start "
            f"date (or queue date) in runs.timezone ({runs.timezone}); map columns.business_date (or "
            f"columns.run_key, for a scheduled slot), or return a column named {BUSINESS_DATE}, if the batch has "
            "one")
