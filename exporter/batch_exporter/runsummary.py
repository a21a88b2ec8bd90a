"""Pure logic: from the rows of a run table to the numbers of the metric contract."""
from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from .values import as_float, as_text, as_utc_datetime

STATUSES = ("success", "failed", "running", "queued", "unknown")


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run, status already mapped, timestamps aware UTC."""

    run_id: str
    business_date: str | None  # its run key (see run_key_text): a business date or a scheduled slot
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    code: str | None = None  # the status as the table holds it
    attempt: int | None = None  # its number within its run key, where the table keeps a counter
    queued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LatestRun:
    """The latest run, and the end of the latest other run (any run key) that ended at or before its start;
    None when there is none. Lines such a run wrote just before its end are read after the latest run's
    start (sources.run_log_evidence)."""

    run: RunRow
    previous_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunsOfDate:
    """The attempts of the latest run key (business date or slot), in start order, and which of them are
    in progress or queued."""

    business_date: str | None
    attempts: tuple[RunRow, ...]
    live: frozenset[str]  # run ids in progress (see in_progress) and not yet presumed dead


@dataclass(frozen=True, slots=True)
class UsualDuration:
    """How long a successful run usually takes (seconds), and how many runs that rests on."""

    runs: int
    median: float | None = None  # None below 2 runs
    high: float | None = None  # the 0.9 quantile; None below 2 runs

    def quantiles(self, min_runs: int) -> tuple[float, float] | None:
        """(median, 0.9 quantile) once they rest on `min_runs` runs (runs.min_history); None before."""
        if self.runs < min_runs or self.median is None or self.high is None:
            return None
        return self.median, self.high


@dataclass(frozen=True, slots=True)
class Expected:
    """The schedule's latest expected start and its grace, as the batch's schedule series export them
    (batch_schedule_last_expected_timestamp_seconds, batch_schedule_grace_seconds): what summarize needs to
    tell the run of this start from a re-run of an earlier one (see earlier_keys)."""

    at: datetime
    grace: timedelta
    before: datetime | None = None  # the expected start before `at`, when the schedule says

    @property
    def opens(self) -> datetime:
        """The earliest start that counts as this start's run: up to `grace` early, as in the alert rules."""
        return self.at - self.grace


@dataclass(frozen=True, slots=True)
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
    presumed_dead: int = 0
    latest_date: RunsOfDate | None = None
    queued: int = 0
    earlier_rerun: tuple[str, int] | None = None  # (key, attempts) of an earlier key re-run lately
    usual: UsualDuration = UsualDuration(0)
    previous_end: datetime | None = None  # see LatestRun
    # with an Expected: the ends of the successes passed over as re-runs of an earlier run key (see
    # earlier_keys), which a remembered latest success must not bring back
    passed_over: frozenset[datetime] = frozenset()
    key_work: float | None = None  # see key_work


def map_status(raw: str | None, mapping: dict[str, Sequence[str]], *, ended: bool = False) -> str:
    """Our status word for a raw DB status value; 'unknown' when unmapped, and 'failed' when unmapped on a
    run that has ended: a finished run that did not report a mapped success pages as a failure would."""
    if raw is not None:
        for status, values in mapping.items():
            if raw in values:
                return status
    return "failed" if ended else "unknown"


def parse_run_row(raw: Sequence[object], mapping: dict[str, Sequence[str]], tz: ZoneInfo, *,
                  slot_keys: bool = False, key_tz: ZoneInfo | None = None) -> tuple[RunRow, str | None]:
    """One row of the window query (run_statements.WINDOW_FIELDS: run_id, key, status, started_at,
    ended_at, and optionally attempt, queued_at, duration): the run, and its status code as the table holds
    it. Naive timestamps are read in `tz`; the key is a business date, or with `slot_keys` a scheduled slot
    (see run_key_text), spelled in `key_tz` (default `tz`). An end is the start plus the duration where the
    table keeps one.

    Raises ValueError naming the column, never the value (it may be anything, a card number too).
    """
    if len(raw) < 5:
        raise ValueError(f"expected 5 columns, got {len(raw)}")
    run_id, key, status, started, ended = raw[:5]
    attempt, queued, duration = (tuple(raw[5:8]) + (None, None, None))[:3]
    # one row at a time, in the order the message names them: `column` is the one being read
    column = "run_id"
    try:
        run_text = as_text(run_id)
        column = "status"
        code = as_text(status)
        code = None if code is None else sys.intern(code)  # a handful of codes in many rows
        column = "started_at"
        started_at = as_utc_datetime(started, tz)
        column = "ended_at"
        ended_at = as_utc_datetime(ended, tz)
        column = "run_key" if slot_keys else "business_date"
        run_key = run_key_text(key, tz, slot=slot_keys, key_tz=key_tz)
        run_key = None if run_key is None else sys.intern(run_key)  # one copy of a key many rows share
        column = "attempt"
        number = _attempt_number(attempt)
        column = "queued_at"
        queued_at = as_utc_datetime(queued, tz)
        column = "duration"
        seconds = as_float(duration)
    except ValueError as exc:
        raise ValueError(f"column {column}: {exc}") from None
    if seconds is not None and started_at is not None:
        ended_at = end_after(started_at, seconds)
    mapped = map_status(code, mapping, ended=ended_at is not None)
    row = RunRow(run_id=run_text or "", business_date=run_key, status=mapped, started_at=started_at,
                 ended_at=ended_at, code=code, attempt=number, queued_at=queued_at)
    return row, code


def end_after(start: datetime, duration: float) -> datetime:
    """The end of a run that keeps a duration (seconds) instead of an end; ValueError naming the column
    for one no datetime can hold."""
    try:
        return start + timedelta(seconds=max(0.0, duration))
    except (OverflowError, ValueError):
        raise ValueError("column duration: out of range (expected the seconds a run took)") from None


def run_seconds(row: RunRow) -> float | None:
    """How long a run took: None without a start or an end, and for an end before the start (a clock or
    time zone defect of the table, not a run that took no time)."""
    if row.started_at is None or row.ended_at is None or row.ended_at < row.started_at:
        return None
    return (row.ended_at - row.started_at).total_seconds()


def began_at(row: RunRow) -> datetime | None:
    """When a run began: its start, or its queueing before it starts."""
    return row.started_at or row.queued_at


def _attempt_number(value: object) -> int | None:
    number = as_float(value)
    if number is None:
        return None
    if not number.is_integer() or not 1 <= number <= 1_000_000:
        raise ValueError("expected a whole number from 1 (the first attempt)")
    return int(number)


_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def run_key_text(value: object, tz: ZoneInfo, *, slot: bool = False, key_tz: ZoneInfo | None = None) -> str | None:
    """A run key in one spelling, in `key_tz` (by default `tz`); naive timestamps are read in `tz`.

    A business date (`slot` False) is 'YYYY-MM-DD': an aware timestamp (or text with an offset) is cut
    to its date in `key_tz`, a naive one keeps its own wall date (a date stored as midnight stays that
    date). A scheduled slot keeps its time, 'YYYY-MM-DDTHH:MM:SS+HH:MM'; a date is its midnight, so that
    one slot written as a date and as a timestamp is one key. Other text stays as it is (see date_key).
    """
    if value is None:
        return None
    key_tz = key_tz or tz
    if isinstance(value, datetime):
        naive = value.tzinfo is None
        moment = as_utc_datetime(value, tz)
    elif isinstance(value, date):
        return _midnight_slot(value, key_tz) if slot else value.isoformat()
    else:
        text = as_text(value)
        if text is None:
            return None
        stripped = text.strip()
        if len(stripped) <= 10:
            day = date_key(stripped)
            if slot and day is not None:
                try:
                    return _midnight_slot(date.fromisoformat(day), key_tz)
                except ValueError:
                    return day
            return day
        try:
            moment = as_utc_datetime(stripped, tz)
        except ValueError:
            return stripped if slot else date_key(stripped)
        naive = _OFFSET.search(stripped) is None
    assert moment is not None
    if not slot and naive:
        return moment.astimezone(tz).date().isoformat()
    local = moment.astimezone(key_tz)
    return local.isoformat(timespec="seconds") if slot else local.date().isoformat()


def _midnight_slot(day: date, tz: ZoneInfo) -> str:
    return datetime.combine(day, time(), tz).isoformat(timespec="seconds")


def records_by_state(rows: Iterable[Sequence[object]], state_text: Callable[[str], str] = str
                     ) -> dict[str, float]:
    """Rows of a records query (state, count) summed by state, the state as `state_text` shows it.

    A NULL state is '' and a NULL count 0. Raises ValueError for a row without two columns or with a
    state or count of the wrong type, naming the row, never the value.
    """
    counts: dict[str, float] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise ValueError(f"expected two columns, state and count (row {number} has {len(row)})")
        try:
            state = state_text(as_text(row[0]) or "")
            count = as_float(row[1]) or 0.0
        except ValueError as exc:
            raise ValueError(f"row {number}: {exc}") from None
        counts[state] = counts.get(state, 0.0) + count
    return counts


_DATE_TEXT = re.compile(r"(\d{4})[-/.](\d{2})[-/.](\d{2})(?:[ T].*)?")


def date_key(text: str | None) -> str | None:
    """A business date in one spelling, 'YYYY-MM-DD', from ISO dates (also '20261126'), '2026/11/26' and a
    date with a time of day ('2026-11-26 00:00:00', as SQLite keeps DATETIME); other text stays as it is."""
    if text is None:
        return None
    stripped = text.strip()
    try:
        return date.fromisoformat(stripped).isoformat()
    except ValueError:
        pass
    match = _DATE_TEXT.fullmatch(stripped)
    if match:
        try:
            return date(int(match[1]), int(match[2]), int(match[3])).isoformat()
        except ValueError:
            pass
    return stripped


def business_date_of(row: RunRow, tz: ZoneInfo) -> str | None:
    """The row's run key (a business date in date_key's spelling, or a slot), or the local date of its start
    (of its queueing, before it starts) when the table has none."""
    if row.business_date is not None:
        return row.business_date if _is_slot(row.business_date) else date_key(row.business_date)
    moment = began_at(row)
    return moment.astimezone(tz).date().isoformat() if moment is not None else None


def _is_slot(key: str) -> bool:
    return len(key) > 10 and key[10] == "T" and key[:4].isdigit()


def key_instant(key: str | None, tz: ZoneInfo) -> datetime | None:
    """When a run key begins: a slot's instant, a date's local midnight; None for other text."""
    if key is None:
        return None
    try:
        if _is_slot(key):
            moment = datetime.fromisoformat(key)
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
        return datetime.combine(date.fromisoformat(key), time(), tz)
    except ValueError:
        return None


# the jobs of a fleet share their keys (dates, slots): one datetime each, not one per job
_shared_instant = lru_cache(maxsize=4096)(key_instant)


def start_order(row: RunRow) -> tuple[float, str]:
    """Sort key putting runs in the order they started (a run not started yet by its queueing, unknown
    starts first, ties by run id)."""
    moment = began_at(row)
    return (moment.timestamp() if moment else float("-inf"), row.run_id)


def latest_business_date(rows: Sequence[RunRow], tz: ZoneInfo, now: datetime) -> str | None:
    """The run key the batch is on: the latest business date or slot among the runs' keys, so that a re-run
    of an older key does not hide the current one's attempts.

    Keys more than a day ahead of `now` are passed over (a mistyped year must not take over the window), and
    so are keys that are neither dates nor slots; a run without a key counts by its local start date only
    when no run has one. When no key qualifies: the key of the run that started last.
    """
    ordered = sorted(rows, key=start_order)
    keys = _keys_of(ordered, tz)
    return _latest_key(ordered, keys, _instants_of(keys, tz), tz, now)


def _keys_of(ordered: Sequence[RunRow], tz: ZoneInfo) -> list[str | None]:
    """business_date_of of each row, each distinct stored key spelled once."""
    spelled: dict[str, str | None] = {}
    keys: list[str | None] = []
    for row in ordered:
        stored = row.business_date
        if stored is None:
            keys.append(business_date_of(row, tz))
            continue
        if stored not in spelled:
            spelled[stored] = _interned(business_date_of(row, tz))
        keys.append(spelled[stored])
    return keys


def _interned(key: str | None) -> str | None:
    return None if key is None else sys.intern(key)


def _instants_of(keys: Iterable[str | None], tz: ZoneInfo) -> dict[str | None, datetime | None]:
    """key_instant of each distinct key (None's is None)."""
    instants: dict[str | None, datetime | None] = {None: None}
    for key in keys:
        if key not in instants:
            instants[key] = _shared_instant(key, tz)
    return instants


def _latest_key(ordered: Sequence[RunRow], keys: Sequence[str | None], instants: Mapping[str | None, datetime | None],
                tz: ZoneInfo, now: datetime) -> str | None:
    """latest_business_date of rows in start order, their keys and the keys' instants worked out."""
    keyed = any(r.business_date is not None for r in ordered)
    candidates = [key for r, key in zip(ordered, keys, strict=True)
                  if key is not None and (r.business_date is not None or not keyed)]
    if not candidates:
        return None
    horizon = _horizon(now, tz)
    best: tuple[datetime, str] | None = None
    for key in candidates:
        instant = instants[key]
        if instant is not None and instant <= horizon and (best is None or instant > best[0]):
            best = (instant, key)
    return best[1] if best is not None else candidates[-1]


def _horizon(now: datetime, tz: ZoneInfo) -> datetime:
    """The latest key taken for the batch's own: tomorrow's date, or a slot up to a day ahead."""
    return max(datetime.combine(now.astimezone(tz).date() + timedelta(days=1), time(), tz), now + timedelta(days=1))


def in_progress(row: RunRow, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """Marked running; or, on the latest business date of a batch with a max_duration, with a status
    runs.status does not map and no end yet: it may still be running, and is presumed dead past
    max_duration. Elsewhere such a run would stay "in progress" for good, hiding its rows and holding a
    running count nobody can clear: it counts as not in progress."""
    if row.status == "running":
        return True
    return of_latest_date and max_duration is not None and row.status == "unknown" and row.ended_at is None


def presumed_dead(row: RunRow, now: datetime, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """A run still in progress past its max_duration: its process most likely died without a word."""
    return (in_progress(row, max_duration, of_latest_date=of_latest_date) and max_duration is not None
            and row.started_at is not None and (now - row.started_at).total_seconds() > max_duration)


def live(row: RunRow, now: datetime, max_duration: float | None, *, of_latest_date: bool = True) -> bool:
    """Queued, or in progress and not presumed dead: its pending rows are work under way or waiting to be
    done, not rows left behind."""
    return row.status == "queued" or (in_progress(row, max_duration, of_latest_date=of_latest_date)
                                      and not presumed_dead(row, now, max_duration, of_latest_date=of_latest_date))


MAX_ATTEMPTS_WITH_RECORDS = 20  # records queries per poll, and per rerun-check


def attempts_worth_reading(attempts: Sequence[RunRow], now: datetime, max_duration: float | None,
                           limit: int = MAX_ATTEMPTS_WITH_RECORDS, last_read: Mapping[str, int] | None = None
                           ) -> list[int]:
    """Positions (ascending) of the attempts of one business date whose rows to read when there may be more
    than `limit`: always the latest; then those never read before (`last_read`: run id -> when, leaving
    out what must be read again), then those read longest ago, and among equals first the ones that did
    not succeed and are not running (they may have left rows behind), newest first. Read again and again,
    as the exporter does, every attempt comes round: a crashed attempt's rows stay in view however often
    the batch was re-run after it."""
    if not attempts:
        return []
    last_read = last_read or {}
    latest = len(attempts) - 1

    def priority(position: int) -> tuple[int, int, int]:
        row = attempts[position]
        settled_failure = row.status != "success" and not live(row, now, max_duration)
        return (last_read.get(row.run_id, -1), 0 if settled_failure else 1, -position)

    others = sorted(range(latest), key=priority)
    return sorted([latest, *others[:max(0, limit - 1)]])


def attempt_count(attempts: Sequence[RunRow]) -> int:
    """How many times one run key was run: its rows, or more where a row's counter says so (a scheduler
    that re-runs a key on the same row, as Airflow's clear_number does)."""
    return max([len(attempts), *(r.attempt for r in attempts if r.attempt is not None)])


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What summarize works out from a window's rows and its latest key alone, whatever the time: kept
    with the rows (KeyedRuns.facts) while the latest key stays, so that a fleet's unchanged jobs are not
    worked through again each poll."""

    same: tuple[RunRow, ...]  # the latest key's attempts
    latest: RunRow | None
    maybe_live: tuple[RunRow, ...]  # of `same`, queued or in progress: live unless presumed dead
    running: tuple[tuple[RunRow, bool], ...]  # runs in progress, and whether of the latest key
    earliest_running_start: datetime | None
    last_end: datetime | None
    last_success: datetime | None
    last_duration: float | None
    attempts: int
    counts: tuple[int, ...]  # by status, in STATUSES order
    rerun: tuple[datetime, str, int] | None  # see _earlier_rerun_candidate
    usual: UsualDuration
    previous_end: datetime | None
    key_work: float | None


@dataclass(frozen=True, slots=True)
class KeyedRuns:
    """A window's runs in start order, each row's run key (business_date_of) and each key's instant: what
    summarize works out from the rows alone, which a fleet keeps while a job's rows stay the same. It
    keeps what follows from them (the latest key and start while the horizon stays between the same key
    instants, the KeyFacts of the latest key), so that a kept one is summarised again at a new time with
    little work."""

    ordered: tuple[RunRow, ...]
    keys: tuple[str | None, ...]
    instants: Mapping[str | None, datetime | None]
    _memo: _Memo = field(default_factory=lambda: _Memo(), compare=False, repr=False)

    def by_horizon(self, horizon: datetime, tz: ZoneInfo, now: datetime) -> tuple[str | None, datetime | None]:
        """The latest key (_latest_key) and the latest start (_latest_keyed_start) at `horizon`. Both depend on
        it only through which key instants lie at or before it: kept for the horizons between two instants."""
        memo = self._memo
        low, high = memo.horizons
        if (low is None or low <= horizon) and (high is None or horizon < high) and memo.has_horizons:
            return memo.at_horizon
        instants = [instant for instant in self.instants.values() if instant is not None]
        memo.horizons = (max((i for i in instants if i <= horizon), default=None),
                         min((i for i in instants if i > horizon), default=None))
        memo.at_horizon = (_latest_key(self.ordered, self.keys, self.instants, tz, now),
                           _latest_keyed_start(self.ordered, self.keys, self.instants, horizon))
        memo.has_horizons = True
        return memo.at_horizon

    def facts(self, latest_key: str | None, max_duration: float | None) -> KeyFacts:
        """The KeyFacts of `latest_key` (the last two asked for are kept)."""
        memo = self._memo
        wanted = (latest_key, max_duration)
        found = memo.facts.get(wanted)
        if found is None:
            for old in list(memo.facts)[:-1]:
                del memo.facts[old]
            found = memo.facts[wanted] = _key_facts(self, latest_key, max_duration)
        return found

    def as_expected(self, expected: Expected, tz: ZoneInfo, horizon: datetime, now: datetime
                    ) -> tuple[datetime | None, datetime | None, frozenset[datetime]]:
        """(latest start, latest success, the success ends passed over) of the runs that count for
        `expected` (see summarize), with the horizon's latest key (by_horizon); the last one asked for is
        kept, for the horizons between the same two key instants."""
        latest_key, _ = self.by_horizon(horizon, tz, now)
        memo = self._memo
        wanted = (expected, tz, latest_key, memo.horizons)
        if memo.expected is None or memo.expected[0] != wanted:
            earlier = earlier_keys(self.ordered, self.keys, self.instants, expected, tz)
            memo.expected = (wanted, _as_expected(self, earlier, expected.opens, latest_key, horizon))
        return memo.expected[1]


class _Memo:
    """What a KeyedRuns has worked out so far."""

    __slots__ = ("at_horizon", "expected", "facts", "has_horizons", "horizons")

    def __init__(self) -> None:
        self.has_horizons = False
        self.horizons: tuple[datetime | None, datetime | None] = (None, None)
        self.at_horizon: tuple[str | None, datetime | None] = (None, None)
        self.facts: dict[tuple[str | None, float | None], KeyFacts] = {}
        self.expected: tuple[object, tuple[datetime | None, datetime | None, frozenset[datetime]]] | None = None


def keyed_runs(rows: Iterable[RunRow], tz: ZoneInfo) -> KeyedRuns:
    ordered = tuple(sorted(rows, key=start_order))
    keys = tuple(_keys_of(ordered, tz))
    return KeyedRuns(ordered, keys, _instants_of(keys, tz))


def summarize(rows: Sequence[RunRow], now: datetime, tz: ZoneInfo, max_duration: float | None = None,
              expected: Expected | None = None) -> RunSummary:
    """Summarise the lookback window. The attempts are those of the latest run key (see
    latest_business_date), and the latest run is the last of them to start (ties by start); the latest
    start is that of the latest key with a started run, so that re-running an older key now neither moves
    the batch back to it nor hides a missed start.

    With the schedule's latest `expected` start, the latest start and the latest success are those that
    count for it: a run of a run key that belongs to an earlier expected start (earlier_keys) that began
    from `expected.opens` on is a re-run of that earlier start, not this one's run, and is passed over
    (so is such a key's success ending from then on), even while that key is the latest one: yesterday's
    business date re-run this morning leaves today's missing run missing. It still counts as a run of its
    own key (the attempts, the latest run and its status, batch_run_earlier_key_attempts).
    """
    return summarize_keyed(keyed_runs(rows, tz), now, tz, max_duration, expected)


def summarize_keyed(runs: KeyedRuns, now: datetime, tz: ZoneInfo, max_duration: float | None = None,
                    expected: Expected | None = None) -> RunSummary:
    """summarize, the rows' keys worked out (keyed_runs); what needs no `now` comes from runs.facts."""
    horizon = _horizon(now, tz)
    latest_date, last_start = runs.by_horizon(horizon, tz, now)
    facts = runs.facts(latest_date, max_duration)
    last_success, passed_over = facts.last_success, frozenset[datetime]()
    if expected is not None:
        last_start, last_success, passed_over = runs.as_expected(expected, tz, horizon, now)
    of_date = None
    if facts.latest is not None:
        of_date = RunsOfDate(latest_date, facts.same,
                             frozenset(r.run_id for r in facts.maybe_live if live(r, now, max_duration)))
    started = facts.earliest_running_start
    rerun = facts.rerun
    return RunSummary(
        latest=facts.latest,
        last_start=last_start,
        last_end=facts.last_end,
        last_success=last_success,
        last_duration=facts.last_duration,
        running=len(facts.running),
        running_seconds=max(0.0, (now - started).total_seconds()) if started is not None else 0.0,
        attempts=facts.attempts,
        by_status=dict(zip(STATUSES, facts.counts, strict=True)),
        presumed_dead=sum(1 for r, of_latest in facts.running
                          if presumed_dead(r, now, max_duration, of_latest_date=of_latest)),
        latest_date=of_date,
        queued=facts.counts[STATUSES.index("queued")],
        earlier_rerun=(rerun[1], rerun[2]) if rerun is not None and now - rerun[0] <= EARLIER_RERUN_WINDOW else None,
        usual=facts.usual,
        previous_end=facts.previous_end,
        passed_over=passed_over,
        key_work=facts.key_work,
    )


def _key_facts(runs: KeyedRuns, latest_date: str | None, max_duration: float | None) -> KeyFacts:
    ordered, keys, instants = runs.ordered, runs.keys, runs.instants
    dated = [(r, key == latest_date) for r, key in zip(ordered, keys, strict=True)]
    same = tuple(r for r, of_latest in dated if of_latest)
    latest = same[-1] if same else (ordered[-1] if ordered else None)
    finished = [(r, key) for r, key in zip(ordered, keys, strict=True)
                if r.status not in ("running", "queued") and r.ended_at is not None]
    last_finished = finished[-1][0] if finished else None
    successes = [(r, instants[key]) for r, key in finished if r.status == "success"]
    running = tuple((r, of_date) for r, of_date in dated if in_progress(r, max_duration, of_latest_date=of_date))
    running_starts = [r.started_at for r, _ in running if r.started_at is not None]
    counts = Counter(r.status for r in ordered)
    return KeyFacts(
        same=same,
        latest=latest,
        maybe_live=tuple(r for r in same if r.status == "queued" or in_progress(r, max_duration)),
        running=running,
        earliest_running_start=min(running_starts) if running_starts else None,
        last_end=last_finished.ended_at if last_finished else None,
        last_success=_latest_keyed_success(successes, same, instants[latest_date]),
        last_duration=run_seconds(last_finished) if last_finished is not None else None,
        attempts=attempt_count(same),
        counts=tuple(counts.get(status, 0) for status in STATUSES),
        rerun=_earlier_rerun_candidate(ordered, keys, latest_date),
        usual=_usual_duration(zip(ordered, keys, strict=True), latest_date),
        previous_end=_previous_end(ordered, latest),
        key_work=key_work(same),
    )


def earlier_keys(ordered: Sequence[RunRow], keys: Sequence[str | None],
                 instants: Mapping[str | None, datetime | None], expected: Expected, tz: ZoneInfo
                 ) -> frozenset[str]:
    """The run keys (of runs in start order, their keys and the keys' instants) whose work belongs to an
    expected start before `expected`, so that a run of one of them beginning from `expected.opens` on is a
    re-run of that earlier start: every key up to the greatest one (by instant, not past `expected.opens`:
    a run of a later date started ahead of its time does not count) whose first run began before
    `expected.opens`.

    A key whose first run is not in view (an attempt counter says earlier attempts ran: a scheduler that
    re-runs on the same row, as Airflow does, or one whose first attempt left the window) is taken to have
    first begun as long after its key's instant as the other keys' first runs did (the median of those
    lags): yesterday's business date (or slot) cleared and re-run on its row this morning still began
    yesterday.

    One exception, for a batch scheduled more than once a day under one business date (the start before
    `expected` is on its local date too): a date that is the local date of `expected` and of its own first
    run stays this start's. A daily batch gets no exception: a night run for the next business date that
    began after midnight, a little late, shares its key's date, and the next night's blind re-run of that
    key would otherwise stand for the night's missing run. A business date processed on a later or an
    earlier day than its runs start is not this exception either: its key's first run began on another
    date.

    None when the table keeps no run key (the key is then the local start date, which a re-run after
    midnight shares with the day's scheduled run: they cannot be told apart), or when a key is neither a
    date nor a slot (keys are not ordered then).
    """
    opens = expected.opens
    rows_of: dict[str, list[RunRow]] = {}
    for row, key in zip(ordered, keys, strict=True):
        if row.business_date is not None and key is not None:
            rows_of.setdefault(key, []).append(row)
    if not rows_of or any(instants[key] is None for key in rows_of):
        return frozenset()
    first: dict[str, datetime] = {}
    lags: list[float] = []
    unseen: list[str] = []  # keys whose first attempt is not in view
    for key, rows in rows_of.items():
        began = [moment for r in rows if (moment := began_at(r)) is not None]
        instant = instants[key]
        if not began or instant is None:
            continue
        first[key] = min(began)
        if attempt_count(rows) > len(rows):
            unseen.append(key)
        else:
            lags.append((first[key] - instant).total_seconds())
    if lags:
        lag = timedelta(seconds=statistics.median(lags))
        for key in unseen:
            instant = instants[key]
            if instant is not None:
                first[key] = min(first[key], instant + lag)
    ceiling: datetime | None = None
    for key, moment in first.items():
        instant = instants[key]
        if moment < opens and instant is not None and instant <= opens and (ceiling is None or instant > ceiling):
            ceiling = instant
    if ceiling is None:
        return frozenset()
    today = expected.at.astimezone(tz).date().isoformat()
    several_today = expected.before is not None and expected.before.astimezone(tz).date().isoformat() == today
    earlier = set()
    for key in rows_of:
        instant = instants[key]
        if instant is None or instant > ceiling:
            continue
        own = first.get(key)
        if (several_today and key == today and not _is_slot(key) and own is not None
                and own.astimezone(tz).date().isoformat() == key):
            continue
        earlier.add(key)
    return frozenset(earlier)


def _as_expected(runs: KeyedRuns, earlier: frozenset[str], opens: datetime, latest_key: str | None,
                 horizon: datetime) -> tuple[datetime | None, datetime | None, frozenset[datetime]]:
    """KeyedRuns.as_expected, the earlier keys worked out."""
    ordered, keys, instants = runs.ordered, runs.keys, runs.instants
    kept_rows: list[RunRow] = []
    kept_keys: list[str | None] = []
    successes: list[tuple[RunRow, datetime | None]] = []
    passed_over: set[datetime] = set()
    for row, key in zip(ordered, keys, strict=True):
        rerun = key in earlier and row.business_date is not None
        began = began_at(row)
        if not (rerun and began is not None and began >= opens):
            kept_rows.append(row)
            kept_keys.append(key)
        if row.status == "success" and row.ended_at is not None:
            if rerun and row.ended_at >= opens:
                passed_over.add(row.ended_at)
            else:
                successes.append((row, instants[key]))
    same = [row for row, key in zip(ordered, keys, strict=True) if key == latest_key]
    last_start = _latest_keyed_start(kept_rows, kept_keys, instants, horizon)
    last_success = _latest_keyed_success(successes, same, instants[latest_key])
    return last_start, last_success, frozenset(passed_over)


def key_work(attempts: Sequence[RunRow]) -> float | None:
    """How long the attempts of one run key (in start order) worked in all, once its latest one has ended:
    the time during which at least one of them was running, so that a re-run that only finishes what a
    failed attempt left is judged on the key's whole work, and two rows of one run count once. An attempt
    without an end (its process died) counts nothing: how far it got is unknown, and a crash followed by
    a 5-second "success" is exactly what the check is for. None while the latest attempt has not
    ended, when its end is before its start, and when a row's attempt counter says earlier attempts ran
    whose rows are not in view (a scheduler that re-runs on the same row): their share is not known."""
    if not attempts:
        return None
    latest = attempts[-1]
    if latest.status in ("running", "queued") or run_seconds(latest) is None:
        return None
    if attempt_count(attempts) > len(attempts):
        return None
    spans: list[tuple[datetime, datetime]] = []
    for row in attempts:
        if row.started_at is None:
            continue
        end = row.ended_at
        if end is None or end < row.started_at:
            continue
        spans.append((row.started_at, end))
    spans.sort()
    total = 0.0
    current: tuple[datetime, datetime] | None = None
    for start, end in spans:
        if current is not None and start <= current[1]:
            current = (current[0], max(current[1], end))
            continue
        if current is not None:
            total += (current[1] - current[0]).total_seconds()
        current = (start, end)
    if current is not None:
        total += (current[1] - current[0]).total_seconds()
    return total


def _previous_end(rows: Sequence[RunRow], latest: RunRow | None) -> datetime | None:
    """The latest end, at or before `latest`'s start, of the other runs (see LatestRun)."""
    if latest is None or latest.started_at is None:
        return None
    return max((r.ended_at for r in rows if r is not latest and r.ended_at is not None
                and r.ended_at <= latest.started_at), default=None)


def usual_duration(rows: Iterable[RunRow], tz: ZoneInfo, latest_key: str | None) -> UsualDuration:
    """The usual duration of a successful run: of the successful runs with a start and an end not before it
    (see run_seconds: an end before the start is a defect of the table, not a run that took no time),
    leaving out those of `latest_key` (the run key being judged must not be its own yardstick), the count,
    the median and the 0.9 quantile.

    The quantile is the "inclusive" one of `statistics.quantiles` (linear interpolation between the sorted
    durations, the lowest being quantile 0 and the highest quantile 1; numpy's default, Hyndman and Fan's
    type 7): 0.9 of 10 runs lies nine tenths of the way from the 9th to the 10th. Both are None below 2 runs.
    """
    return _usual_duration(((r, business_date_of(r, tz)) for r in rows), latest_key)


def _usual_duration(keyed: Iterable[tuple[RunRow, str | None]], latest_key: str | None) -> UsualDuration:
    durations = sorted(
        seconds
        for r, key in keyed
        if r.status == "success" and (seconds := run_seconds(r)) is not None
        and (latest_key is None or key != latest_key)
    )
    if len(durations) < 2:
        return UsualDuration(len(durations))
    high = statistics.quantiles(durations, n=10, method="inclusive")[8]
    return UsualDuration(len(durations), statistics.median(durations), high)


EARLIER_RERUN_WINDOW = timedelta(hours=24)


def earlier_key_rerun(ordered: Sequence[RunRow], keys: Sequence[str | None], latest_key: str | None,
                      now: datetime) -> tuple[str, int] | None:
    """A key other than the latest that was run again after the latest one began: (key, its attempts) of
    the one whose newest attempt started (or was queued) last, within EARLIER_RERUN_WINDOW of `now`, when
    it has 2 attempts or more. Attempts count only the latest key, so that re-running an older key does
    not move the batch back to it; this is how such a re-run (clearing one 15-minute slot of an Airflow
    DAG while the next one exists, re-running yesterday after today's run) still shows. A re-run made
    while its key was still the latest was counted then, and is not reported again."""
    best = _earlier_rerun_candidate(ordered, keys, latest_key)
    if best is None or now - best[0] > EARLIER_RERUN_WINDOW:
        return None
    return best[1], best[2]


def _earlier_rerun_candidate(ordered: Sequence[RunRow], keys: Sequence[str | None], latest_key: str | None
                             ) -> tuple[datetime, str, int] | None:
    """earlier_key_rerun without its time limit: (when it was last active, key, attempts) of the earlier key
    re-run last. The time limit needs no other: when this one is past it, so are all the others."""
    by_key: dict[str, list[RunRow]] = {}
    for row, key in zip(ordered, keys, strict=True):
        if key is not None:
            by_key.setdefault(key, []).append(row)
    latest_began = [moment for r in by_key.get(latest_key or "", []) if (moment := began_at(r)) is not None]
    if not latest_began:
        return None
    first_began = min(latest_began)
    best: tuple[datetime, str, int] | None = None
    for key, rows in by_key.items():
        if key == latest_key:
            continue
        active = max((moment for r in rows if (moment := began_at(r)) is not None), default=None)
        if active is None or active <= first_began or (best is not None and active <= best[0]):
            continue
        attempts = attempt_count(rows)
        if attempts >= 2:
            best = (active, key, attempts)
    return best


def _latest_keyed_success(successes: Sequence[tuple[RunRow, datetime | None]], current: Sequence[RunRow],
                          current_instant: datetime | None) -> datetime | None:
    """The end of the latest success of the latest key (or a later one); when the latest key has none, the
    latest success that ended before its first attempt began: a re-run of an older key that succeeds now
    is not the success the current key is waiting for. By end alone when a key is neither a date nor a
    slot. `successes` come with their keys' instants; `current_instant` is the latest key's."""
    ends = [(r, instant) for r, instant in successes if r.ended_at is not None]
    if not ends:
        return None
    floor = current_instant if current else None
    if floor is None or any(instant is None for _, instant in ends):
        return max(r.ended_at for r, _ in ends if r.ended_at is not None)
    of_current = [r.ended_at for r, instant in ends if r.ended_at is not None and instant is not None
                  and instant >= floor]
    if of_current:
        return max(of_current)
    began = [moment for r in current if (moment := began_at(r)) is not None]
    before = [r.ended_at for r, _ in ends if r.ended_at is not None and (not began or r.ended_at <= min(began))]
    return max(before, default=None)


def _latest_keyed_start(ordered: Sequence[RunRow], keys: Sequence[str | None],
                        instants: Mapping[str | None, datetime | None], horizon: datetime) -> datetime | None:
    """The latest start among runs of the latest key that has a started run, or of a later key (one past
    `horizon` too: it did start); runs of older keys do not count. By start alone when a key is neither a
    date nor a slot."""
    started = [(r, instants[key]) for r, key in zip(ordered, keys, strict=True) if r.started_at is not None]
    if any(instant is None for _, instant in started):
        return max(r.started_at for r, _ in started if r.started_at is not None)
    current = [instant for _, instant in started if instant is not None and instant <= horizon]
    floor = max(current) if current else None
    starts = [r.started_at for r, instant in started
              if r.started_at is not None and (floor is None or (instant is not None and instant >= floor))]
    return max(starts, default=None)
