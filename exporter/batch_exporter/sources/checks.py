"""Named consistency queries, each returning one number, compared with bounds."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from ..config import CheckConfig
from ..database import Database, QueryError
from ..snapshot import SampleBuilder, Snapshot
from ..values import as_float
from .errors import SourceError

log = logging.getLogger(__name__)
# One row is used; a second is read only to tell the operator that the query returns more.
_ROWS_READ = 2


def check_value(rows: Sequence[Sequence[object]]) -> float:
    """The one number a check query returned: the first column of its first row.

    Raises ValueError when there is no row, or the value is NULL or not a number (naming its type only).
    """
    if not rows or not rows[0]:
        raise ValueError("the query returned no row; expected one number")
    value = as_float(rows[0][0])
    if value is None:
        raise ValueError("the query returned NULL; expected a number (use COALESCE(..., 0) if none means zero)")
    return value


def within_bounds(value: float, check: CheckConfig) -> bool:
    """True when value respects the check's min and max (either may be absent)."""
    above_min = check.min is None or value >= check.min
    below_max = check.max is None or value <= check.max
    return above_min and below_max


class ChecksSource:
    """Runs every consistency query of one batch; one failing query fails the poll."""

    def __init__(self, batch: str, checks: dict[str, CheckConfig], db: Database) -> None:
        self.name = f"checks:{batch}"
        self._batch = batch
        self._checks = checks
        self._db = db
        self._warned: set[str] = set()  # checks already reported as returning several rows

    def poll(self) -> Snapshot:
        """Run each check once; raises SourceError naming the check that failed."""
        out = SampleBuilder()
        for name, check in self._checks.items():
            value = self._value(name, check)
            out.add("batch_check_value", value, batch=self._batch, check=name)
            out.add("batch_check_ok", 1 if within_bounds(value, check) else 0, batch=self._batch, check=name)
        return out.build(self.name)

    def _value(self, name: str, check: CheckConfig) -> float:
        try:
            rows = self._db.query_head(check.query, limit=_ROWS_READ)
        except QueryError as exc:
            raise SourceError(exc.reason, f"check {name}: {exc}") from None
        if len(rows) > 1 and name not in self._warned:
            self._warned.add(name)
            log.warning("batch %s check %s: the query returns more than one row; only the first row's first "
                        "column is used and the rest is not read (aggregate it, or add ORDER BY and LIMIT 1)",
                        self._batch, name)
        try:
            return check_value(rows)
        except ValueError as exc:
            raise SourceError("data", f"check {name}: {exc}") from None
