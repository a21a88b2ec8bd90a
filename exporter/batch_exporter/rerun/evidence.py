"""What rerun-check gathers for one batch and business date, and the pure logic that picks the attempts."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..config import CheckConfig
from ..database import Row
from ..runsummary import (
    MAX_ATTEMPTS_WITH_RECORDS,
    RunRow,
    attempt_count,
    business_date_of,
    date_key,
    in_progress,
    key_instant,
    latest_business_date,
    live,
    parse_run_row,
    presumed_dead,
    run_key_text,
    start_order,
)
from ..sources.checks import within_bounds
from .logs import LogEvidence

# A one-shot command can read more attempts than one poll of the exporter (which reads the rest on later
# polls); beyond this, the attempts are chosen as the exporter chooses them, and the verdict is UNKNOWN.
MAX_ATTEMPTS_READ = 5 * MAX_ATTEMPTS_WITH_RECORDS


@dataclass(frozen=True)
class Attempt:
    """One run of the batch: mapped status and raw code, rows by state once read."""

    row: RunRow
    raw_status: str | None
    key: object  # the run id as the database returned it, for the records query
    records: dict[str, float] | None = None
    records_error: str | None = None

    @property
    def run_id(self) -> str:
        return self.row.run_id

    def business_date(self, tz: ZoneInfo) -> str | None:
        """Its business date in the one spelling reports use (see date_key), else its local start date."""
        return business_date_of(self.row, tz)

    def duration(self, now: datetime) -> float | None:
        start, end = self.row.started_at, self.row.ended_at
        if start is None:
            return None
        if end is None:
            return max(0.0, (now - start).total_seconds()) if self.row.status in ("running", "unknown") else None
        return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class CheckResult:
    name: str
    config: CheckConfig
    value: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool | None:
        """Within bounds; None when the check could not be run."""
        return None if self.value is None else within_bounds(self.value, self.config)


@dataclass(frozen=True)
class Evidence:
    """Everything gathered for one batch and business date; `run_table_error` set when runs are unseen."""

    batch: str
    now: datetime
    timezone: str
    idempotent: bool
    requested_date: str | None
    business_date: str | None = None
    max_duration: float | None = None  # seconds; a run marked running longer is presumed dead
    business_date_note: str | None = None  # set when the run table has no business date column
    run_table_error: str | None = None
    window_start: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)  # oldest first
    other_running: list[Attempt] = field(default_factory=list)  # in progress, other business dates
    recent_dates: list[tuple[str, int]] = field(default_factory=list)  # (date, attempts), newest first
    pending_states: list[str] | None = None  # None: no records query configured
    done_states: list[str] | None = None  # None: every state that is not pending
    rerun_unfinished: str | None = None  # the command re-running only unfinished work, for this key
    attempts_not_read: int = 0  # older attempts whose rows were not queried
    checks: list[CheckResult] = field(default_factory=list)
    logs: list[LogEvidence] = field(default_factory=list)
    log_since: datetime | None = None
    log_since_reason: str = ""

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def attempt_count(self) -> int:
        """How many times the key was run: its rows, or more where a row's attempt counter says so."""
        return attempt_count([a.row for a in self.attempts])

    def _of_date(self, a: Attempt) -> bool:
        return a.business_date(ZoneInfo(self.timezone)) == self.business_date

    def in_progress(self, a: Attempt) -> bool:
        """Marked running, or possibly running (see runsummary.in_progress)."""
        return in_progress(a.row, self.max_duration, of_latest_date=self._of_date(a))

    def presumed_dead(self, a: Attempt) -> bool:
        """In progress past max_duration: its process most likely died."""
        return presumed_dead(a.row, self.now, self.max_duration, of_latest_date=self._of_date(a))

    def live(self, a: Attempt) -> bool:
        """In progress and not presumed dead: its rows are in progress, not left behind."""
        return live(a.row, self.now, self.max_duration, of_latest_date=self._of_date(a))


def window_start(now: datetime, lookback: float, tz: ZoneInfo, wanted: str | None) -> datetime:
    """Start of the run-table window: the lookback, reaching back to the day before `wanted` if older."""
    start = now - timedelta(seconds=lookback)
    key = date_key(wanted)
    if key is not None:
        try:
            day = date.fromisoformat(key)
        except ValueError:
            return start
        start = min(start, datetime.combine(day - timedelta(days=1), time(), tz).astimezone(UTC))
    return start


def parse_run(raw: Row, mapping: dict[str, Sequence[str]], tz: ZoneInfo, *, slot_keys: bool = False,
              key_tz: ZoneInfo | None = None) -> Attempt:
    """One row of the window query (run_statements.WINDOW_FIELDS) as an Attempt.

    Raises ValueError naming the column; never the value (it may be anything).
    """
    row, raw_status = parse_run_row(raw, mapping, tz, slot_keys=slot_keys, key_tz=key_tz)
    return Attempt(row=row, raw_status=raw_status, key=raw[0])


def select_attempts(runs: Sequence[Attempt], wanted: str | None, tz: ZoneInfo, now: datetime
                    ) -> tuple[str | None, list[Attempt], list[tuple[str, int]]]:
    """(run key, its attempts oldest first, recent keys with attempt counts newest first).

    Without `wanted`, the key is the one the exporter reports attempts for (see latest_business_date). A
    wanted date, where the keys are scheduled slots, picks that local date's latest slot; a wanted time
    picks the slot it names, read in `tz` when it has no offset.
    """
    ordered = sorted(runs, key=lambda a: start_order(a.row))
    keys = [a.business_date(tz) for a in ordered]
    grouped: dict[str, list[RunRow]] = {}
    for a, key in zip(ordered, keys, strict=True):
        if key is not None:
            grouped.setdefault(key, []).append(a.row)
    newest_first = sorted(grouped, key=lambda k: (key_instant(k, tz) or datetime.min.replace(tzinfo=UTC), k),
                          reverse=True)
    recent = [(key, attempt_count(grouped[key])) for key in newest_first[:7]]
    if wanted is None:
        chosen = latest_business_date([a.row for a in ordered], tz, now)
    else:
        chosen = requested_key(wanted, list(grouped), tz)
    attempts = [a for a, key in zip(ordered, keys, strict=True) if chosen is not None and key == chosen]
    return chosen, attempts, recent


def slots_of_date(wanted: str | None, runs: Sequence[Attempt], tz: ZoneInfo) -> list[str]:
    """The distinct slots of a requested date (not a time), oldest first: more than one means the request
    does not say which run key it is about."""
    if wanted is None or len(wanted.strip()) > 10:
        return []
    return _slots_of_day(date_key(wanted), {key for a in runs if (key := a.business_date(tz)) is not None}, tz)


def _slots_of_day(day: str | None, keys: Iterable[str], tz: ZoneInfo) -> list[str]:
    """The distinct slots among `keys` on the local date `day`, oldest first."""
    slots = {k for k in keys if len(k) > 10 and k[:10] == day}
    return sorted(slots, key=lambda k: key_instant(k, tz) or datetime.min.replace(tzinfo=UTC))


def requested_key(wanted: str, keys: Sequence[str], tz: ZoneInfo) -> str | None:
    """The run key a `--business-date` asks for, in the spelling of `keys` (see select_attempts)."""
    text = wanted.strip()
    if len(text) > 10:
        slot = run_key_text(text, tz, slot=True)
        return slot if slot is not None else date_key(text)
    day = date_key(text)
    slots = _slots_of_day(day, keys, tz)
    return slots[-1] if day not in keys and slots else day
