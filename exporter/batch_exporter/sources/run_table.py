"""The one reader of a batch's run table (or the SELECT returning the same columns): the exporter's runs
source and rerun-check both read it through RunTable, so they see the same columns, the same window
and the same rows, and a poll's statement budget follows from what it sends.

What one poll may send, in order:
- until the columns are known: the zero-row column probes (run_columns.max_probe_statements);
- until a start time is stored: the sample of the latest one, which shows how the table keeps its times;
- the window query (none while no start time is stored: the window is empty, whatever its type);
- the last success before the window (the caller sends it once, when the window holds none);
- the records of up to `records_per_poll` attempts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ..config import RecordsConfig, RunColumns, RunsConfig
from ..database import Consume, Row
from ..run_statements import (
    build_last_success_query,
    build_sample_query,
    build_window_query,
    last_success_params,
    window_params,
)
from ..runsummary import MAX_ATTEMPTS_WITH_RECORDS, end_after, records_by_state
from ..values import (
    EpochUnit,
    TimestampStorage,
    as_float,
    as_utc_datetime,
    check_stored_timestamps,
    epoch_number,
    read_epoch_columns,
    stored_epoch_unit,
)
from .run_columns import max_probe_statements, no_business_date_note, resolve_columns

Query = Callable[[str, Sequence[object]], list[Row]]  # runs one SELECT; raises QueryError
QueryBatches = Callable[[str, Sequence[object], Consume], None]  # the same, rows handed over batch by batch

_EPOCH_COLUMNS = {3: "started_at", 4: "ended_at", 6: "queued_at"}  # positions in the window query's rows
_EPOCH_KEY = {1: "run_key"}  # a slot stored as an epoch number, like the start times
_SAMPLES_PER_POLL = 1
_WINDOWS_PER_POLL = 1
_SUCCESS_SEARCHES_PER_POLL = 1


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


@dataclass(frozen=True)
class ResolvedColumns:
    """The columns the source really returns, and, when it has no business date, the note saying how
    attempts are counted instead."""

    columns: RunColumns
    business_date_note: str | None


def probe_columns(runs: RunsConfig, query: Query) -> ResolvedColumns:
    """Which mapped columns the source returns (zero-row probes, at most max_probe_statements of them).
    Raises MissingColumns, or the QueryError of a source that cannot be read at all."""
    columns = resolve_columns(runs, lambda sql: query(sql, ()))
    note = no_business_date_note(runs) if columns.key is None else None
    return ResolvedColumns(columns, note)


class TimestampsContradicted(ValueError):
    """The stored start times contradict runs.timestamps; the message says what to write instead."""


class UnreadableRow(ValueError):
    """A window row whose times cannot be read; `number` counts from 1, the message names the column."""

    def __init__(self, number: int, problem: ValueError) -> None:
        super().__init__(str(problem))
        self.number = number


class RunTable:
    """One batch's run table: its columns probed once, its way of keeping times sampled until a start time
    is stored, then read window by window; QueryError from `query` passes through."""

    records_per_poll = MAX_ATTEMPTS_WITH_RECORDS  # attempts whose records one poll reads, at most

    def __init__(self, batch: str, runs: RunsConfig, records: RecordsConfig | None, query: Query, *,
                 text_timestamps: bool = False) -> None:
        self.batch = batch
        self.runs = runs
        self.records_config = records
        self.tz = ZoneInfo(runs.timezone)
        self.key_tz = ZoneInfo(runs.key_timezone or runs.timezone)  # keys, dates and reports
        self._query = query
        self._text_timestamps = text_timestamps  # SQLite: see window_param
        self._timestamps: TimestampStorage = runs.timestamps
        self.epoch_unit: EpochUnit = "milliseconds" if self._timestamps == "epoch_milliseconds" else "seconds"
        self._resolved: ResolvedColumns | None = None
        self._window_sql = build_window_query(runs)
        self._sample_sql = build_sample_query(runs)
        self._success_sql = build_last_success_query(runs)
        self._sample: object = None  # the latest stored start time, once there is one

    @property
    def slot_keys(self) -> bool:
        """Whether run keys are scheduled slots (columns.run_key) rather than business dates."""
        return self.runs.columns.run_key is not None

    @property
    def columns_resolved(self) -> bool:
        return self._resolved is not None

    def columns(self) -> ResolvedColumns:
        """The columns the source returns, probed on the first call that succeeds (see probe_columns)."""
        if self._resolved is None:
            self._resolved = probe_columns(self.runs, self._query)
            self._window_sql = build_window_query(self.runs, self._resolved.columns)
        return self._resolved

    def window(self, start: datetime) -> Iterator[Row]:
        """The rows (run_statements.WINDOW_FIELDS) of runs started at or after `start` (or, when queued_at is
        mapped, not started and queued since then),
        epoch numbers read as aware UTC datetimes as each row is taken (UnreadableRow). The columns are
        probed and a start time sampled first while unknown; TimestampsContradicted when the sample
        contradicts runs.timestamps. No stored start time yet: no rows, and no window query."""
        statement = self._window_statement(start)
        if statement is None:
            return iter(())
        return self._read_times(self._query(*statement))

    def each_window_row(self, start: datetime, take: Callable[[Row], None], batches: QueryBatches) -> None:
        """window(start), each row handed to `take` as it is fetched (the statement sent with `batches`, a
        Database.query_batches): the caller never holds the whole window. What `take` raises ends the
        statement and reaches the caller."""
        statement = self._window_statement(start)
        if statement is None:
            return
        numbered = 0

        def consume(rows: list[Row]) -> None:
            nonlocal numbered
            for row in self._read_times(rows, first=numbered + 1):
                take(row)
            numbered += len(rows)

        batches(*statement, consume)

    def _window_statement(self, start: datetime) -> tuple[str, tuple[object, ...]] | None:
        """The window query and its parameters; None while no start time is stored."""
        self.columns()
        if self._sample is None:
            found = self._query(self._sample_sql, ())
            sample = next((value for value in found[0] if value is not None), None) if found else None
            try:
                check_stored_timestamps(self._timestamps, sample, f"column {self.runs.columns.started_at}")
            except ValueError as exc:
                raise TimestampsContradicted(str(exc)) from None
            self._sample = sample
        if self._sample is None:
            return None
        param = window_param(start, self.tz, text=self._text_timestamps, sample=self._sample,
                             timestamps=self._timestamps)
        return self._window_sql, window_params(self.runs, param)

    def _read_times(self, rows: list[Row], first: int = 1) -> Iterator[Row]:
        """The rows with their epoch numbers read (UnreadableRow names a row by its place in the window,
        the first of `rows` being number `first`)."""
        columns = {**_EPOCH_COLUMNS, **_EPOCH_KEY} if self.slot_keys else _EPOCH_COLUMNS
        for number, raw in enumerate(rows, first):
            try:
                yield read_epoch_columns(raw, columns, self.epoch_unit)
            except ValueError as exc:
                raise UnreadableRow(number, exc) from None

    def last_success(self) -> datetime | None:
        """End of the latest successful run in the whole table, for when the window holds none: a scan of
        the batch's history, for the caller to send once. ValueError when it cannot be read as a time."""
        found = self._query(self._success_sql, last_success_params(self.runs))
        if not found:
            return None
        moment = as_utc_datetime(found[0][0], self.tz, epoch_unit=self.epoch_unit)
        if moment is not None and self.runs.columns.duration is not None:
            moment = end_after(moment, as_float(found[0][1]) or 0.0)
        return moment

    def records(self, key: object, state_text: Callable[[str], str] = str) -> dict[str, float]:
        """Rows of one attempt by state (the records query with `key`); ValueError for rows it cannot read."""
        if self.records_config is None:
            raise ValueError(f"batch {self.batch!r} has no records section")
        return records_by_state(self._query(self.records_config.query, (key,)), state_text=state_text)

    def max_statements_per_poll(self, *, first_poll: bool = True) -> int:
        """The most statements one poll can send: the first (until the columns are known) probes them too.
        A poll abandoned at connect_timeout + this many query_timeouts has let each statement run out."""
        probes = max_probe_statements(self.runs) if first_poll else 0
        records = self.records_per_poll if self.records_config is not None else 0
        return probes + _SAMPLES_PER_POLL + _WINDOWS_PER_POLL + _SUCCESS_SEARCHES_PER_POLL + records
