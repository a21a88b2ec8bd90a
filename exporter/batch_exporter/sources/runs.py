"""Batch runs read from the user's own run table (or a SELECT returning the same columns)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..config import BatchConfig, RecordsConfig, RunColumns, RunsConfig
from ..database import Database, QueryError
from ..masking import mask_digits
from ..runsummary import (
    STATUSES,
    RunRow,
    RunSummary,
    attempts_worth_reading,
    parse_run_row,
    records_by_state,
    summarize,
)
from ..snapshot import SampleBuilder, Snapshot
from ..values import (
    EpochUnit,
    TimestampStorage,
    as_utc_datetime,
    check_stored_timestamps,
    epoch_number,
    read_epoch_columns,
    stored_epoch_unit,
)
from .errors import SourceError
from .run_columns import MissingColumns, no_business_date_note, resolve_columns, runs_from

log = logging.getLogger(__name__)

OTHER_STATE = "_other"


_runs_from = runs_from


def build_window_query(runs: RunsConfig, columns: RunColumns | None = None) -> str:
    """SELECT of the five mapped columns for runs started since a `?` boundary; `columns` as resolved
    against the source (see run_columns), by default as configured."""
    c = columns or runs.columns
    business_date = c.business_date or "NULL"
    selected = f"{c.run_id}, {business_date}, {c.status}, {c.started_at}, {c.ended_at}"
    source, where = _runs_from(runs)
    return f"SELECT {selected} FROM {source} WHERE {c.started_at} >= ?{where}"


def build_last_success_query(runs: RunsConfig) -> str:
    """End of the latest successful run, for when the window holds none."""
    c = runs.columns
    marks = ", ".join("?" for _ in runs.status.success)
    source, where = _runs_from(runs)
    return f"SELECT MAX({c.ended_at}) FROM {source} WHERE {c.status} IN ({marks}){where}"


def build_sample_query(runs: RunsConfig) -> str:
    """The latest stored start time: how the table keeps its timestamps (a datetime, text or a number), or
    NULL when no run has one yet. MAX, unlike LIMIT or TOP, is written the same on every database."""
    c = runs.columns
    source, where = _runs_from(runs)
    return f"SELECT MAX({c.started_at}) FROM {source} WHERE {c.started_at} IS NOT NULL{where}"


def window_param(start: datetime, tz: ZoneInfo, *, text: bool, sample: object = None,
                 timestamps: TimestampStorage = "auto") -> object:
    """The `?` of the window query for runs started at or after `start`, in the form the table keeps its
    start times, as `timestamps` (runs.timestamps) declares or a stored start time `sample` shows:

    - epoch numbers (declared, or a number sampled under "auto"): an integer of seconds or milliseconds,
      rounded down, which integer columns compare with on every database (PostgreSQL refuses a timestamp
      or text there, MariaDB compares a timestamp with them without matching any row);
    - text (a text sample, or `text` for SQLite when nothing was sampled: SQLite compares a number below
      any text and text by its characters): the wall time in `tz` shaped like the sample, ISO with a 'T'
      or by default 'YYYY-MM-DD HH:MM:SS';
    - otherwise the wall time in `tz`, naive as run tables keep it.
    """
    unit = stored_epoch_unit(timestamps, sample)
    if unit is not None:
        return epoch_number(start, unit)
    boundary = start.astimezone(tz).replace(tzinfo=None)
    if not (text or isinstance(sample, str)):
        return boundary
    separator = "T" if isinstance(sample, str) and len(sample) > 10 and sample[10] == "T" else " "
    return boundary.strftime(f"%Y-%m-%d{separator}%H:%M:%S")


class RunsSource:
    """Polls the run table's lookback window and the latest run's records."""

    def __init__(self, batch: str, config: BatchConfig, db: Database, *, text_timestamps: bool = False,
                 clock: Callable[[], float] = time.time, locate: Callable[[tuple[str, ...]], str] | None = None
                 ) -> None:
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
        self._sample: object = None  # the latest stored start time, once there is one (see window_param)
        self._timestamps: TimestampStorage = config.runs.timestamps
        self._epoch_unit: EpochUnit = "milliseconds" if self._timestamps == "epoch_milliseconds" else "seconds"
        self._mapping = config.runs.status.model_dump()
        self._max_duration = config.max_duration
        self._locate = locate or (lambda path: ".".join(path))
        self._columns_resolved = False
        # a success is never undone: the latest one seen stays, even once it leaves the window, and
        # the fallback query beyond the window (a scan of the batch's whole history) runs only once
        self._latest_success: datetime | None = None
        self._searched_before_window = False
        # rows by state of each attempt of the latest business date: (poll that read them, rows by state,
        # whether the attempt was in progress then)
        self._attempt_records: dict[str, tuple[int, dict[str, float], bool]] = {}
        self._polls = 0

    def poll(self) -> Snapshot:
        """Read the lookback window once and summarise it; raises SourceError on failure."""
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        if not self._columns_resolved:
            self._resolve_columns()
        if self._sample is None:
            found = self._query(self._sample_sql, ())
            sample = found[0][0] if found else None
            try:
                check_stored_timestamps(self._timestamps, sample, f"column {self._runs.columns.started_at}")
            except ValueError as exc:
                raise SourceError("data", f"batches.{self._batch}.runs.timestamps: {exc}") from None
            self._sample = sample
        start = now - timedelta(seconds=self._runs.lookback)
        rows: list[RunRow] = []
        if self._sample is not None:  # else no run has a start time yet: the window is empty, whatever its type
            param = window_param(start, self._tz, text=self._text_timestamps, sample=self._sample,
                                 timestamps=self._timestamps)
            try:
                raws = [read_epoch_columns(raw, {3: "started_at", 4: "ended_at"}, self._epoch_unit)
                        for raw in self._query(self._window_sql, (param,))]
            except ValueError as exc:
                raise SourceError("data", f"runs row: {exc}") from None
            rows = [self._row(raw) for raw in raws]
        summary = summarize(rows, now, self._tz, self._max_duration)
        self._remember_success(summary.last_success)
        return self._snapshot(summary, self._latest_success, self._records_of_attempts(summary, now))

    def _resolve_columns(self) -> None:
        """Once per source start: the columns the source really returns (a located error for a missing one)."""
        try:
            columns = resolve_columns(self._runs, lambda sql: self._db.query(sql, ()))
        except MissingColumns as exc:
            where = self._locate(("batches", self._batch, "runs", "columns", exc.missing[0][0]))
            raise SourceError("query", f"{where}: {exc}") from None
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        if columns.business_date is None:
            log.warning("batch %s: %s", self._batch, no_business_date_note(self._runs))
        self._window_sql = build_window_query(self._runs, columns)
        self._columns_resolved = True

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
            return as_utc_datetime(value, self._tz, epoch_unit=self._epoch_unit)
        except ValueError as exc:
            raise SourceError("data", f"runs column {column}: {exc}") from None

    def _row(self, raw: tuple[object, ...]) -> RunRow:
        try:
            return parse_run_row(raw, self._mapping, self._tz)[0]
        except ValueError as exc:
            raise SourceError("data", f"runs row: {exc}") from None

    def _records_of_attempts(self, summary: RunSummary, now: datetime
                             ) -> list[tuple[RunRow, dict[str, float]]] | None:
        """Records of the attempts of the latest business date, oldest first, the latest one last: a crashed
        attempt's rows must stay in view after a re-run. Past MAX_ATTEMPTS_WITH_RECORDS attempts, each poll
        reads the latest, those in progress or read while they were, then those read longest ago (see
        attempts_worth_reading); the others count with the rows they had when last read."""
        if self._records is None or summary.latest_date is None:
            return None
        attempts = summary.latest_date.attempts
        live = summary.latest_date.live
        self._polls += 1
        last_read = {run_id: poll for run_id, (poll, _, was_live) in self._attempt_records.items()
                     if not was_live and run_id not in live}
        for position in attempts_worth_reading(attempts, now, self._max_duration, last_read=last_read):
            attempt = attempts[position]
            rows = self._query(self._records.query, (attempt.run_id,))
            try:
                records = records_by_state(rows)
            except ValueError as exc:
                raise SourceError("data", f"records query (run {mask_digits(attempt.run_id)}): {exc}") from None
            self._attempt_records[attempt.run_id] = (self._polls, records, attempt.run_id in live)
        current = {a.run_id for a in attempts}
        self._attempt_records = {k: v for k, v in self._attempt_records.items() if k in current}
        return [(a, self._attempt_records[a.run_id][1]) for a in attempts if a.run_id in self._attempt_records]

    def _snapshot(self, s: RunSummary, last_success: datetime | None,
                  attempt_records: list[tuple[RunRow, dict[str, float]]] | None) -> Snapshot:
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
            out.add("batch_run_last_status_code", 1, batch=b, code=status_code_label(s.latest.code))
        out.add("batch_run_running", s.running, batch=b)
        out.add("batch_run_running_seconds", s.running_seconds, batch=b)
        out.add("batch_run_presumed_dead", s.presumed_dead, batch=b)
        out.add("batch_run_attempts", s.attempts, batch=b)
        if s.latest_date is not None and s.latest_date.business_date is not None:
            out.add("batch_run_business_date_info", 1, batch=b,
                    business_date=status_code_label(s.latest_date.business_date))
        for status, count in s.by_status.items():
            out.add("batch_runs", count, batch=b, status=status)
        if attempt_records and self._records is not None and s.latest_date is not None:
            latest_run, latest_records = attempt_records[-1]
            for state, rows_in_state in _cap_states(latest_records, self._records.max_states).items():
                out.add("batch_run_records", rows_in_state, batch=b, state=state)
            pending = left = 0.0
            for attempt, records in attempt_records:
                rows = sum(records.get(state, 0.0) for state in self._records.pending_states)
                pending += rows
                if attempt.run_id not in s.latest_date.live:
                    left += rows
            out.add("batch_run_pending_records", pending, batch=b)
            out.add("batch_run_left_pending_records", left, batch=b)
        return out.build(self.name)


MAX_CODE_LABEL = 64


def status_code_label(code: str | None) -> str:
    """A value from the run table as a label value: card-like digit runs masked, length capped, '' for
    NULL (the status code, the business date)."""
    return mask_digits(code or "")[:MAX_CODE_LABEL]


def _cap_states(counts: dict[str, float], limit: int) -> dict[str, float]:
    """Keep the `limit` largest states; fold the rest into one '_other' series."""
    if len(counts) <= limit:
        return counts
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: limit - 1])
    kept[OTHER_STATE] = sum(count for _, count in ranked[limit - 1:])
    return kept
