"""Batch runs read from the user's own run table (or a SELECT returning the same columns)."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..config import BatchConfig, RecordsConfig, RunsConfig
from ..database import Database, QueryError
from ..runsummary import STATUSES, RunRow, RunSummary, parse_run_row, records_by_state, summarize
from ..snapshot import SampleBuilder, Snapshot
from ..values import as_utc_datetime
from .errors import SourceError

OTHER_STATE = "_other"


def _runs_from(runs: RunsConfig) -> tuple[str, str]:
    """(FROM part, extra AND condition) of the run table or the user's query."""
    if runs.query is not None:
        # on lines of their own: a trailing `-- comment` in the user's query must not swallow ours
        return f"(\n{runs.query.strip().rstrip(';')}\n) runs_q", ""
    return str(runs.table), f" AND ({runs.where})" if runs.where else ""


def build_window_query(runs: RunsConfig) -> str:
    """SELECT of the five mapped columns for runs started since a `?` boundary."""
    c = runs.columns
    business_date = c.business_date or "NULL"
    columns = f"{c.run_id}, {business_date}, {c.status}, {c.started_at}, {c.ended_at}"
    source, where = _runs_from(runs)
    return f"SELECT {columns} FROM {source} WHERE {c.started_at} >= ?{where}"


def build_last_success_query(runs: RunsConfig) -> str:
    """End of the latest successful run, for when the window holds none."""
    c = runs.columns
    marks = ", ".join("?" for _ in runs.status.success)
    source, where = _runs_from(runs)
    return f"SELECT MAX({c.ended_at}) FROM {source} WHERE {c.status} IN ({marks}){where}"


def build_sample_query(runs: RunsConfig) -> str:
    """One stored start time (SQLite only: how the table keeps its timestamps)."""
    c = runs.columns
    source, where = _runs_from(runs)
    return f"SELECT {c.started_at} FROM {source} WHERE {c.started_at} IS NOT NULL{where} LIMIT 1"


def window_param(start: datetime, tz: ZoneInfo, *, text: bool, sample: object = None) -> object:
    """The `?` of the window query for runs started at or after `start`: the wall time in `tz`, naive as
    run tables keep it. With `text` (SQLite, which compares a number below any text and text by its
    characters) it takes the shape of a stored `sample`: epoch seconds for a number, ISO text with a 'T'
    or, by default, 'YYYY-MM-DD HH:MM:SS'."""
    if text and isinstance(sample, int | float) and not isinstance(sample, bool):
        return start.timestamp()
    boundary = start.astimezone(tz).replace(tzinfo=None)
    if not text:
        return boundary
    separator = "T" if isinstance(sample, str) and len(sample) > 10 and sample[10] == "T" else " "
    return boundary.strftime(f"%Y-%m-%d{separator}%H:%M:%S")


class RunsSource:
    """Polls the run table's lookback window and the latest run's records."""

    def __init__(self, batch: str, config: BatchConfig, db: Database, *, text_timestamps: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        if config.runs is None:
            raise ValueError(f"batch {batch!r} has no runs section")
        self.name = f"runs:{batch}"
        self._batch = batch
        self._runs: RunsConfig = config.runs
        self._records: RecordsConfig | None = config.records
        self._db = db
        self._clock = clock
        self._tz = ZoneInfo(config.runs.timezone)
        self._text_timestamps = text_timestamps  # see window_param
        self._window_sql = build_window_query(config.runs)
        self._success_sql = build_last_success_query(config.runs)
        self._sample_sql = build_sample_query(config.runs)
        self._sample: object = None
        self._sampled = not text_timestamps
        self._mapping = config.runs.status.model_dump()
        # a success is never undone: the latest one seen stays, even once it leaves the window, and
        # the fallback query beyond the window (a scan of the batch's whole history) runs only once
        self._latest_success: datetime | None = None
        self._searched_before_window = False

    def poll(self) -> Snapshot:
        """Read the lookback window once and summarise it; raises SourceError on failure."""
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        if not self._sampled:
            found = self._query(self._sample_sql, ())
            self._sample, self._sampled = (found[0][0] if found else None), bool(found)
        start = now - timedelta(seconds=self._runs.lookback)
        param = window_param(start, self._tz, text=self._text_timestamps, sample=self._sample)
        rows = [self._row(raw) for raw in self._query(self._window_sql, (param,))]
        summary = summarize(rows, now, self._tz)
        self._remember_success(summary.last_success)
        records = self._records_of(summary.latest)
        return self._snapshot(summary, self._latest_success, records)

    def _remember_success(self, in_window: datetime | None) -> None:
        if in_window is None and not self._searched_before_window:
            found = self._query(self._success_sql, tuple(self._runs.status.success))
            in_window = self._timestamp(found[0][0], "ended_at") if found else None
            self._searched_before_window = True
        if in_window is not None and (self._latest_success is None or in_window > self._latest_success):
            self._latest_success = in_window

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return self._db.query(sql, params)
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None

    def _timestamp(self, value: object, column: str) -> datetime | None:
        try:
            return as_utc_datetime(value, self._tz)
        except ValueError as exc:
            raise SourceError("data", f"runs column {column}: {exc}") from None

    def _row(self, raw: tuple[object, ...]) -> RunRow:
        try:
            return parse_run_row(raw, self._mapping, self._tz)[0]
        except ValueError as exc:
            raise SourceError("data", f"runs row: {exc}") from None

    def _records_of(self, latest: RunRow | None) -> dict[str, float] | None:
        if self._records is None or latest is None:
            return None
        rows = self._query(self._records.query, (latest.run_id,))
        try:
            return records_by_state(rows)
        except ValueError as exc:
            raise SourceError("data", f"records query: {exc}") from None

    def _snapshot(self, s: RunSummary, last_success: datetime | None,
                  records: dict[str, float] | None) -> Snapshot:
        out = SampleBuilder()
        b = self._batch
        if s.last_start is not None:
            out.add("batch_run_last_start_timestamp_seconds", s.last_start.timestamp(), batch=b)
        if s.last_end is not None:
            out.add("batch_run_last_end_timestamp_seconds", s.last_end.timestamp(), batch=b)
        if last_success is not None:
            out.add("batch_run_last_success_timestamp_seconds", last_success.timestamp(), batch=b)
        if s.last_duration is not None:
            out.add("batch_run_last_duration_seconds", s.last_duration, batch=b)
        if s.latest is not None:
            for status in STATUSES:
                out.add("batch_run_last_status", 1 if s.latest.status == status else 0, batch=b, status=status)
        out.add("batch_run_running", s.running, batch=b)
        out.add("batch_run_running_seconds", s.running_seconds, batch=b)
        out.add("batch_run_attempts", s.attempts, batch=b)
        for status, count in s.by_status.items():
            out.add("batch_runs", count, batch=b, status=status)
        if records is not None and self._records is not None:
            for state, count in _cap_states(records, self._records.max_states).items():
                out.add("batch_run_records", count, batch=b, state=state)
            pending = sum(records.get(state, 0.0) for state in self._records.pending_states)
            out.add("batch_run_pending_records", pending, batch=b)
        return out.build(self.name)


def _cap_states(counts: dict[str, float], limit: int) -> dict[str, float]:
    """Keep the `limit` largest states; fold the rest into one '_other' series."""
    if len(counts) <= limit:
        return counts
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: limit - 1])
    kept[OTHER_STATE] = sum(count for _, count in ranked[limit - 1:])
    return kept
