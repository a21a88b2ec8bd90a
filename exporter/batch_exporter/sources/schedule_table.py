"""A batch's expected starts as its scheduler plans them (schedule.query), instead of a copied cron: a
paused job, a moved schedule or a data-driven one is then seen as the scheduler sees it."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..config import ScheduleConfig
from ..database import Database, QueryError
from ..finish_by import FinishBy
from ..runsummary import Expected
from ..snapshot import SampleBuilder, Snapshot
from ..values import as_float, as_utc_datetime
from .errors import SourceError


def planned_starts(row: Sequence[object], now: datetime, tz: ZoneInfo
                   ) -> tuple[datetime | None, datetime | None, bool]:
    """(last expected start, next expected start, paused) from a schedule query's row: (latest start the
    scheduler planned, next start it will plan, paused flag). A next start already past is overdue: it is
    the last expected start, and no next one is known. Raises ValueError naming the column."""
    if len(row) < 2:
        raise ValueError(f"expected at least 2 columns (latest planned start, next planned start), got {len(row)}")
    times = []
    for column, value in (("1 (latest planned start)", row[0]), ("2 (next planned start)", row[1])):
        try:
            times.append(as_utc_datetime(value, tz))
        except ValueError as exc:
            raise ValueError(f"column {column}: {exc}") from None
    planned, following = times
    paused = False
    if len(row) > 2 and row[2] is not None:
        try:
            paused = bool(as_float(row[2]))
        except ValueError as exc:
            raise ValueError(f"column 3 (paused): {exc}") from None
    if following is not None and following <= now:
        planned = following if planned is None else max(planned, following)
        following = None
    return planned, following, paused


class ScheduleTableSource:
    """Reads the scheduler's own plan for one batch, once per poll."""

    def __init__(self, batch: str, schedule: ScheduleConfig, db: Database,
                 clock: Callable[[], float] = time.time) -> None:
        if schedule.query is None:
            raise ValueError(f"batch {batch!r} has no schedule query")
        self.name = f"schedule:{batch}"
        self._batch = batch
        self._query = schedule.query
        self._tz = ZoneInfo(schedule.timezone)
        self._db = db
        self._clock = clock
        self._finish_by = FinishBy.parse(schedule.finish_by) if schedule.finish_by is not None else None
        # the scheduler moves its next planned start on once it has acted on it (SQL Server Agent within
        # about 20 minutes): a next start seen before and now past was planned, even when no longer shown
        self._seen_next: datetime | None = None
        self._passed: datetime | None = None
        self._grace = timedelta(seconds=schedule.grace)
        # the latest expected start the last poll exported (None when paused or not planned): replaced
        # whole, read from the runs source's thread
        self._expected: Expected | None = None

    def expected(self, now: datetime) -> Expected | None:
        """The latest expected start the last poll exported, with the grace (see BatchInfo.expected); None
        before a poll, while the job is paused, and when the scheduler has planned none. `now` is unused:
        the plan is the scheduler's, as last read. Safe to call from any thread."""
        return self._expected

    def poll(self) -> Snapshot:
        try:
            rows = self._db.query_head(self._query, limit=1)
        except QueryError as exc:
            raise SourceError(exc.reason, f"schedule query: {exc}") from None
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        if not rows:
            raise SourceError("data", "schedule query: returned no row; expected one (latest planned start, "
                                      "next planned start, paused): is the job's name or id right?")
        out = SampleBuilder()
        if rows:
            try:
                planned, following, paused = planned_starts(rows[0], now, self._tz)
            except ValueError as exc:
                raise SourceError("data", f"schedule query: {exc}") from None
            if self._seen_next is not None and self._seen_next <= now:
                self._passed = self._seen_next if self._passed is None else max(self._passed, self._seen_next)
            self._seen_next = following
            if self._passed is not None and (planned is None or self._passed > planned):
                planned = self._passed
            self._expected = Expected(planned, self._grace) if planned is not None and not paused else None
            if planned is not None and not paused:
                out.add("batch_schedule_last_expected_timestamp_seconds", planned.timestamp(), batch=self._batch)
                if self._finish_by is not None:
                    out.add("batch_schedule_finish_deadline_timestamp_seconds",
                            self._finish_by.deadline(planned, self._tz).timestamp(), batch=self._batch)
            if following is not None and not paused:
                out.add("batch_schedule_next_expected_timestamp_seconds", following.timestamp(), batch=self._batch)
            out.add("batch_schedule_paused", 1 if paused else 0, batch=self._batch)
        return out.build(self.name)
