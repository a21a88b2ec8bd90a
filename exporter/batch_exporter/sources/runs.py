"""Batch runs read from the user's own run table (or a SELECT returning the same columns)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

from ..config import BatchConfig, RecordsConfig
from ..database import Database, QueryError
from ..masking import mask_digits
from ..runsummary import (
    STATUSES,
    Expected,
    LatestRun,
    RunRow,
    RunSummary,
    attempts_worth_reading,
    parse_run_row,
    summarize,
)
from ..snapshot import SampleBuilder, Snapshot
from .errors import SourceError
from .run_columns import MissingColumns
from .run_table import RunTable, TimestampsContradicted

log = logging.getLogger(__name__)

OTHER_STATE = "_other"


class RunsSource:
    """Polls the run table's lookback window and the latest run's records."""

    def __init__(self, batch: str, config: BatchConfig, db: Database, *, text_timestamps: bool = False,
                 clock: Callable[[], float] = time.time, locate: Callable[[tuple[str, ...]], str] | None = None,
                 expected: Callable[[datetime], Expected | None] | None = None) -> None:
        """`expected` gives the schedule's latest expected start at a time (BatchInfo.expected, or
        ScheduleTableSource.expected for a schedule query): with it, a re-run of an earlier run key does not
        count as that start's run (see runsummary.summarize). Without it (no schedule), every run counts."""
        if config.runs is None:
            raise ValueError(f"batch {batch!r} has no runs section")
        self.name = f"runs:{batch}"
        self._batch = batch
        self._records: RecordsConfig | None = config.records
        self._table = RunTable(batch, config.runs, config.records, db.query, text_timestamps=text_timestamps)
        self._clock = clock
        self._lookback = timedelta(seconds=config.runs.lookback)
        self._mapping = config.runs.status.model_dump()
        self._max_duration = config.max_duration
        self._min_history = config.runs.min_history
        self._locate = locate or (lambda path: ".".join(path))
        self._expected = expected
        # a success is never undone: the latest one seen stays, even once it leaves the window, and
        # the fallback query beyond the window (a scan of the batch's whole history) runs only once
        self._latest_success: datetime | None = None
        self._searched_before_window = False
        # rows by state of each attempt of the latest business date: (poll that read them, rows by state,
        # whether the attempt was in progress then)
        self._attempt_records: dict[str, tuple[int, dict[str, float], bool]] = {}
        self._polls = 0
        # the latest run as the last successful poll saw it, for the log evidence source's thread
        self._latest_run: LatestRun | None = None
        self._latest_lock = threading.Lock()

    def latest_run(self) -> LatestRun | None:
        """The latest run (see runsummary.summarize: start, end, mapped status, run id) of the last poll that
        succeeded, with the end of the run before it; None before one, or when the window holds no run. Both
        come from the same poll. Safe to call from any thread."""
        with self._latest_lock:
            return self._latest_run

    @property
    def max_statements_per_poll(self) -> int:
        """The most statements any poll sends (the first, which probes the columns too): for its deadline."""
        return self._table.max_statements_per_poll(first_poll=True)

    def poll(self) -> Snapshot:
        """Read the lookback window once and summarise it; raises SourceError on failure."""
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        if not self._table.columns_resolved:
            self._resolve_columns()
        try:
            raws = list(self._table.window(now - self._lookback))
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        except TimestampsContradicted as exc:
            raise SourceError("data", f"batches.{self._batch}.runs.timestamps: {exc}") from None
        except ValueError as exc:  # UnreadableRow
            raise SourceError("data", f"runs row: {exc}") from None
        rows = [self._row(raw) for raw in raws]
        expected = self._expected(now) if self._expected is not None else None
        summary = summarize(rows, now, self._table.key_tz, self._max_duration, expected)
        self._remember_success(summary.last_success, window_has_success=summary.by_status["success"] > 0,
                               passed_over=summary.passed_over)
        snapshot = self._snapshot(summary, self._latest_success, self._records_of_attempts(summary, now))
        latest = LatestRun(summary.latest, summary.previous_end) if summary.latest is not None else None
        with self._latest_lock:
            self._latest_run = latest
        return snapshot

    def _resolve_columns(self) -> None:
        """Once per source start: the columns the source really returns (a located error for a missing one)."""
        try:
            resolved = self._table.columns()
        except MissingColumns as exc:
            where = self._locate(("batches", self._batch, "runs", "columns", exc.missing[0][0]))
            raise SourceError("query", f"{where}: {exc}") from None
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        if resolved.business_date_note is not None:
            log.warning("batch %s: %s", self._batch, resolved.business_date_note)

    def _remember_success(self, in_window: datetime | None, *, window_has_success: bool,
                          passed_over: Collection[datetime] = ()) -> None:
        if needs_search_before_window(in_window, window_has_success=window_has_success,
                                      searched=self._searched_before_window):
            try:
                in_window = self._table.last_success()
            except QueryError as exc:
                raise SourceError(exc.reason, str(exc)) from None
            except ValueError as exc:
                raise SourceError("data", f"runs, the latest success before the window: {exc}") from None
            self._searched_before_window = True
        self._latest_success = later(self._latest_success, in_window, passed_over)

    def _row(self, raw: tuple[object, ...]) -> RunRow:
        try:
            return parse_run_row(raw, self._mapping, self._table.tz, slot_keys=self._table.slot_keys,
                                 key_tz=self._table.key_tz)[0]
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
        for position in attempts_worth_reading(attempts, now, self._max_duration,
                                               limit=self._table.records_per_poll, last_read=last_read):
            attempt = attempts[position]
            try:
                records = self._table.records(attempt.run_id)
            except QueryError as exc:
                raise SourceError(exc.reason, str(exc)) from None
            except ValueError as exc:
                raise SourceError("data", f"records query (run {mask_digits(attempt.run_id)}): {exc}") from None
            self._attempt_records[attempt.run_id] = (self._polls, records, attempt.run_id in live)
        current = {a.run_id for a in attempts}
        self._attempt_records = {k: v for k, v in self._attempt_records.items() if k in current}
        return [(a, self._attempt_records[a.run_id][1]) for a in attempts if a.run_id in self._attempt_records]

    def _snapshot(self, s: RunSummary, last_success: datetime | None,
                  attempt_records: list[tuple[RunRow, dict[str, float]]] | None) -> Snapshot:
        out = SampleBuilder()
        add_run_samples(out, self._batch, s, last_success, self._min_history, self._records, attempt_records)
        return out.build(self.name)


def add_run_samples(out: SampleBuilder, batch: str, s: RunSummary, last_success: datetime | None,
                    min_history: int, records_config: RecordsConfig | None = None,
                    attempt_records: list[tuple[RunRow, dict[str, float]]] | None = None) -> None:
    """The runs series of `batch` from the summary of its window (a batch's runs source, and each job of
    a fleet): `last_success` as remembered across polls, and the records of the latest key's attempts,
    oldest first, when the batch reads them."""
    b = batch
    if s.last_start is not None:
        out.add("batch_run_last_start_timestamp_seconds", s.last_start.timestamp(), batch=b)
    if s.last_end is not None:
        out.add("batch_run_last_end_timestamp_seconds", s.last_end.timestamp(), batch=b)
    if last_success is not None:
        out.add("batch_run_last_success_timestamp_seconds", last_success.timestamp(), batch=b)
    if s.last_duration is not None:
        out.add("batch_run_last_duration_seconds", s.last_duration, batch=b)
    if s.key_work is not None:
        out.add("batch_run_key_work_seconds", s.key_work, batch=b)
    if s.latest is not None:
        for status in STATUSES:
            out.add("batch_run_last_status", 1 if s.latest.status == status else 0, batch=b, status=status)
        out.add("batch_run_last_status_code", 1, batch=b, code=status_code_label(s.latest.code))
    out.add("batch_run_running", s.running, batch=b)
    out.add("batch_run_queued", s.queued, batch=b)
    out.add("batch_run_running_seconds", s.running_seconds, batch=b)
    out.add("batch_run_presumed_dead", s.presumed_dead, batch=b)
    out.add("batch_run_attempts", s.attempts, batch=b)
    if s.latest_date is not None and s.latest_date.business_date is not None:
        out.add("batch_run_business_date_info", 1, batch=b,
                business_date=status_code_label(s.latest_date.business_date))
    if s.earlier_rerun is not None:
        key, attempts = s.earlier_rerun
        out.add("batch_run_earlier_key_attempts", attempts, batch=b, business_date=status_code_label(key))
    for status, count in s.by_status.items():
        out.add("batch_runs", count, batch=b, status=status)
    out.add("batch_run_usual_duration_runs", s.usual.runs, batch=b)
    out.add("batch_run_usual_duration_min_runs", min_history, batch=b)
    usual = s.usual.quantiles(min_history)
    if usual is not None:
        out.add("batch_run_usual_duration_seconds", usual[0], batch=b, quantile="0.5")
        out.add("batch_run_usual_duration_seconds", usual[1], batch=b, quantile="0.9")
    if attempt_records and records_config is not None and s.latest_date is not None:
        latest_run, latest_records = attempt_records[-1]
        for state, rows_in_state in _cap_states(latest_records, records_config.max_states).items():
            out.add("batch_run_records", rows_in_state, batch=b, state=state)
        pending = left = 0.0
        for attempt, records in attempt_records:
            rows = sum(records.get(state, 0.0) for state in records_config.pending_states)
            pending += rows
            if attempt.run_id not in s.latest_date.live:
                left += rows
        out.add("batch_run_pending_records", pending, batch=b)
        out.add("batch_run_left_pending_records", left, batch=b)


def needs_search_before_window(in_window: datetime | None, *, window_has_success: bool, searched: bool) -> bool:
    """Whether the latest success is to be looked for before the window: once, for a window without any
    success. It reads no keys: a window whose successes are re-runs of older keys (summarize passes those
    over) has its success."""
    return in_window is None and not window_has_success and not searched


def later(remembered: datetime | None, found: datetime | None, passed_over: Collection[datetime] = ()
          ) -> datetime | None:
    """The latest success to export: a success is never undone, so the one remembered stays until a later
    one is found, even once it has left the window (or its row was reset for a re-run). Unless the window
    still holds it as a success that summarize passed over (`passed_over`, RunSummary.passed_over): a
    re-run of an earlier run key that ended in the grace before the latest expected start counted for the
    start before it, and no longer does."""
    if remembered is not None and remembered in passed_over:
        remembered = None
    if found is not None and (remembered is None or found > remembered):
        return found
    return remembered


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
