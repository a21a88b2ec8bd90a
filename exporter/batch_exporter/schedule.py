"""Cron schedule maths: when a batch last should have started, and when it is next due.

A schedule fires whenever the local wall clock matches the expression, and around DST changes it
does what Vixie cron and cronie do (as if crond ran in the schedule's time zone). They tell two kinds
of job apart by the first character of the minute and hour fields:

- fixed-time jobs, neither field starting with `*` (`0 2 * * *`, `30 1 * * 1-5`): a wall time that
  happens twice fires once, at its first occurrence (`30 1 * * *` in America/New_York on the
  fall-back day: 01:30 EDT only). Wall times a spring-forward jump skips all fire once, at the jump
  (`30 2 * * *` there on the spring-forward day: 03:00 EDT; `0,30 2,3 * * *`: 03:00 EDT, 03:30 EDT).
- wildcard jobs, either field starting with `*` (`*/15 * * * *`, `* 2 * * *`, `@hourly`): real time
  rules, so a repeated wall time fires in both passes and a skipped one does not fire at all.

cronie takes a jump of more than 3 hours for a clock reset and runs no skipped job; such changes
(a zone crossing the date line, as Pacific/Apia did on 2011-12-30) are treated here like any other.

APScheduler's CronTrigger is used for wall-clock matching only, in UTC: stepping through a DST
change in the zone itself, APScheduler 3.11 skips runs (`0 0 * * *` in America/New_York, walked
from 2024-03-10 00:00, next fires on 03-12). Wall times are mapped to instants here instead, one
UTC-offset period at a time.

Two deliberate differences from `CronTrigger.from_crontab` make expressions mean what they mean
in crontab(5): day-of-week numbers count from Sunday (0 or 7), and when both day-of-month and
day-of-week are restricted a day matching either one fires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

MAX_LOOKBACK = timedelta(days=16 * 366)
"""How far back `previous_fire` looks before answering None. A schedule on fixed dates fires at least
every 8 years (29 February across 2100); only contrived ones such as "29 February when it is a Sunday"
(`0 0 29 2 */7`, 28 years) go further, and for those an expected run that long ago means nothing."""

_TICK = timedelta(microseconds=1)
_FIRST_WINDOW = timedelta(minutes=1)  # cron's resolution; backward searches double from here
_WALK_STEPS = 32  # matches stepped through one by one before bisecting a dense cluster
# UTC-offset changes in tzdata since 1970 are at least 6.9 days apart, so probing every 3 days never
# steps over a pair; none moves the clock by more than 24 hours (Pacific/Apia skipped 2011-12-30).
_ZONE_STEP = timedelta(days=3)
_MAX_JUMP = timedelta(days=1, hours=1)
_FLOOR = datetime(1970, 1, 2, tzinfo=UTC)  # CronTrigger computes no year before 1970
_NEVER_PROBE_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # any 28 years hold every date/weekday pairing

_FIELD_NAMES = ("minute", "hour", "day", "month", "day_of_week")
_FIELD_LABELS = {
    "minute": ("minute", "0-59"),
    "hour": ("hour", "0-23"),
    "day": ("day-of-month", "1-31"),
    "month": ("month", "1-12 or jan-dec"),
    "day_of_week": ("day-of-week", "0-7 (0 and 7 are Sunday) or sun-sat"),
}
_APS_PREFIX = re.compile(r"^Error validating expression '[^']*': ")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler 3: Monday is 0
_WEEKDAY_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<first>\w+)(?:-(?P<last>\w+))?)(?:/(?P<step>\d+))?")


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class _Bracket:
    """Fire times around the instants in [valid_from, valid_until)."""

    valid_from: datetime
    valid_until: datetime
    previous: datetime | None
    next: datetime


@dataclass(frozen=True)
class CronSchedule:
    """A standard 5-field crontab expression read in one time zone."""

    expression: str
    timezone: ZoneInfo
    _wall: _WallClock = field(init=False, repr=False, compare=False)
    # Holds the last answer: every poll between two fire times reuses it.
    _memo: list[_Bracket | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, ZoneInfo):
            raise ScheduleError(f"time zone must be a ZoneInfo, got {type(self.timezone).__name__}")
        object.__setattr__(self, "_wall", _wall_clock(self.expression))
        object.__setattr__(self, "_memo", [None])

    @classmethod
    def parse(cls, expression: str, timezone: str) -> CronSchedule:
        """Validate a crontab expression and an IANA time zone name; raises ScheduleError."""
        return cls(expression, _zone(timezone))

    def previous_fire(self, now: datetime) -> datetime | None:
        """Latest fire time <= now (UTC), or None if there was none within MAX_LOOKBACK."""
        return self.fires_around(now)[0]

    def next_fire(self, now: datetime) -> datetime | None:
        """Earliest fire time > now (UTC)."""
        return self.fires_around(now)[1]

    def wall_time(self, fire: datetime) -> datetime:
        """The local wall time (naive) a fire of this schedule stands for: its own, except for a fire at a
        spring-forward jump that stands in for wall times the jump skipped (`30 2 * * *` at 03:00 EDT on
        New York's change night stands for 02:30): the latest of those."""
        if fire.tzinfo is None or fire.utcoffset() is None:
            raise ValueError(f"schedule times must be timezone-aware, got naive {fire.isoformat()}")
        fire = fire.astimezone(UTC)
        offset = _offset(self.timezone, fire)
        wall = fire + offset
        before = _offset(self.timezone, fire - _TICK)
        if before < offset and self._wall.next_at_or_after(wall) != wall:
            skipped = self._wall.last_at_or_before(wall - _TICK, fire + before)
            if skipped is not None:
                wall = skipped
        return wall.replace(tzinfo=None)

    def fires_around(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(previous_fire(now), next_fire(now)) in one call; `now` must be timezone-aware."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"schedule times must be timezone-aware, got naive {now.isoformat()}")
        now = now.astimezone(UTC)
        memo = self._memo[0]
        if memo is not None and memo.valid_from <= now < memo.valid_until:
            return memo.previous, memo.next
        previous = _previous_fire(self._wall, self.timezone, now)
        following = _next_fire(self._wall, self.timezone, now + _TICK)
        if following is not None:
            valid_from = now if previous is None else previous
            valid_until = following if previous is None else min(following, previous + MAX_LOOKBACK)
            self._memo[0] = _Bracket(valid_from, valid_until, previous, following)
        return previous, following


# --- instants: wall-clock matches mapped through the zone's UTC-offset periods ---------------------


def _next_fire(wall: _WallClock, zone: ZoneInfo, cursor: datetime) -> datetime | None:
    """Earliest fire time >= cursor."""
    offset = _offset(zone, cursor)
    start = _period_start(zone, cursor, cursor - _MAX_JUMP)
    before = None if start is None else _offset(zone, start - _TICK)
    while True:
        wall_from = cursor + offset
        if start is not None and before is not None:
            if start == cursor and _skips_a_match(wall, start, before, offset):
                return start
            wall_from = max(wall_from, _first_new_wall(wall, start, before, offset))
        match = wall.next_at_or_after(wall_from)
        change = None
        if match is not None:
            change = _period_end(zone, cursor, match - offset)
            if change is None:
                return match - offset
        if change is None:
            return None
        before, offset, start, cursor = offset, _offset(zone, change), change, change


def _previous_fire(wall: _WallClock, zone: ZoneInfo, now: datetime) -> datetime | None:
    """Latest fire time <= now, looking back at most MAX_LOOKBACK."""
    floor = max(now - MAX_LOOKBACK, _FLOOR)
    cursor, offset = now, _offset(zone, now)
    searched: tuple[datetime, datetime | None] | None = None  # (wall bound, last match <= it)
    while cursor >= floor:
        bound = cursor + offset
        if searched is not None and bound <= searched[0] and (searched[1] is None or searched[1] <= bound):
            match = searched[1]  # still the last one: saves a search per DST period for sparse schedules
        else:
            match = wall.last_at_or_before(bound, floor + offset)
            searched = (bound, match)
        fire = None if match is None else match - offset
        # The period's start matters if it is after `fire`, or close enough before it that `fire` may
        # repeat a wall time the period before already had.
        start = _period_start(zone, cursor, (floor if fire is None else fire) - _MAX_JUMP)
        if start is None:
            return fire
        before = _offset(zone, start - _TICK)
        if match is not None and match >= _first_new_wall(wall, start, before, offset):
            return fire
        if start >= floor and _skips_a_match(wall, start, before, offset):
            return start
        cursor, offset = start - _TICK, before
    return None


def _first_new_wall(wall: _WallClock, start: datetime, before: timedelta, offset: timedelta) -> datetime:
    """Earliest wall time that may fire in the period from `start` (UTC offset `before`, then `offset`).

    After a fall back a fixed-time job's repeated wall times fired in the period before."""
    if wall.fixed_time:
        return start + max(before, offset)
    return start + offset


def _skips_a_match(wall: _WallClock, start: datetime, before: timedelta, offset: timedelta) -> bool:
    """Whether the jump at `start` skips a wall time that fires at `start` (fixed-time jobs only)."""
    if not wall.fixed_time or before >= offset:
        return False
    skipped = wall.next_at_or_after(start + before)
    return skipped is not None and skipped < start + offset


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always answers
    return offset


def _period_end(zone: ZoneInfo, start: datetime, limit: datetime) -> datetime | None:
    """First instant in (start, limit] whose UTC offset differs from start's, if any."""
    base, low = _offset(zone, start), start
    while low < limit:
        high = min(low + _ZONE_STEP, limit)
        if _offset(zone, high) != base:
            return _change_between(zone, low, high)
        low = high
    return None


def _period_start(zone: ZoneInfo, end: datetime, limit: datetime) -> datetime | None:
    """Start of the UTC-offset period holding `end`, if it starts in (limit, end]."""
    base, high = _offset(zone, end), end
    while high > limit:
        low = max(high - _ZONE_STEP, limit)
        if _offset(zone, low) != base:
            return _change_between(zone, low, high)
        high = low
    return None


def _change_between(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant the offset changes, given one change in (low, high]."""
    before = _offset(zone, low)
    while high - low > _TICK:
        middle = low + (high - low) / 2
        if _offset(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


# --- wall clock: which local times match, by APScheduler in UTC (no DST to step through) ----------


class _WallClock:
    """Local wall times matching the expression, written as UTC datetimes."""

    def __init__(self, triggers: tuple[CronTrigger, ...], fixed_time: bool) -> None:
        self._triggers = triggers
        self.fixed_time = fixed_time  # cron's "fixed-time" job, as opposed to a "wildcard" one

    def next_at_or_after(self, wall: datetime) -> datetime | None:
        fires = [fire for trigger in self._triggers if (fire := trigger.get_next_fire_time(None, wall))]
        return min(fires, default=None)

    def last_at_or_before(self, wall: datetime, floor: datetime) -> datetime | None:
        fires = [fire for trigger in self._triggers if (fire := _last_match(trigger, wall, floor))]
        return max(fires, default=None)


def _last_match(trigger: CronTrigger, wall: datetime, floor: datetime) -> datetime | None:
    """Latest match in [floor, wall]: a window doubling back from one minute, then forward."""
    window = _FIRST_WINDOW
    while True:
        start = max(wall - window, floor, _FLOOR)
        match = trigger.get_next_fire_time(None, start)
        if match is not None and match <= wall:
            return _step_to_last(trigger, match, wall)
        if start <= floor or start <= _FLOOR:
            return None
        window *= 2


def _step_to_last(trigger: CronTrigger, match: datetime, wall: datetime) -> datetime:
    for _ in range(_WALK_STEPS):
        following = trigger.get_next_fire_time(None, match + _TICK)
        if following is None or following > wall:
            return match
        match = following
    # A dense cluster (every minute of 29 February): bisect instead of stepping through each one.
    high = wall + _TICK  # invariant: match <= wall; nothing matches in [high, wall]
    while high - match > _TICK:
        middle = match + (high - match) / 2
        found = trigger.get_next_fire_time(None, middle)
        if found is not None and found <= wall:
            match = found
        else:
            high = middle
    return match


# --- parsing ---------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ScheduleError(
            f"unknown time zone {name!r}; expected an IANA name such as 'Asia/Tokyo' or 'UTC'"
        ) from None


def _wall_clock(expression: str) -> _WallClock:
    """One wall-clock trigger, or two when day-of-month and day-of-week both restrict (cron ORs them).

    Like Vixie cron, a minute or hour field starting with `*` makes a wildcard job (`@hourly` too)."""
    if not isinstance(expression, str):
        raise ScheduleError(f"cron expression must be a string, got {type(expression).__name__}")
    fields = _MACROS.get(expression.strip().lower(), expression).split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron expression {expression!r} has {len(fields)} field(s); expected 5: minute hour "
            "day-of-month month day-of-week (or @hourly, @daily, @weekly, @monthly, @yearly)"
        )
    minute, hour, day, month, cron_weekdays = fields
    for name, value in zip(_FIELD_NAMES[:4], fields[:4], strict=True):
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as error:
            raise _field_error(expression, name, value, _APS_PREFIX.sub("", str(error))) from None
    weekdays = _weekdays(expression, cron_weekdays)
    if day.startswith("*") or cron_weekdays.startswith("*"):
        variants = [(day, weekdays)]
    else:
        variants = [(day, "*"), ("*", weekdays)]
    triggers = [
        CronTrigger.from_crontab(f"{minute} {hour} {d} {month} {w}", timezone=UTC) for d, w in variants
    ]
    firing = tuple(t for t in triggers if t.get_next_fire_time(None, _NEVER_PROBE_FROM) is not None)
    if not firing:
        raise ScheduleError(
            f"cron expression {expression!r} never fires: "
            f"day-of-month {day!r} does not occur in month {month!r}"
        )
    return _WallClock(firing, fixed_time=not (minute.startswith("*") or hour.startswith("*")))


def _weekdays(expression: str, text: str) -> str:
    """Translate crontab's day-of-week field (0 or 7 = Sunday) into APScheduler weekday names."""
    if text == "*":
        return "*"
    days: set[int] = set()
    for item in text.lower().split(","):
        match = _WEEKDAY_ITEM.fullmatch(item)
        if match is None:
            raise _field_error(expression, "day_of_week", text, f"{item!r} is not a day, range or step")
        step = int(match["step"] or 1)
        if step == 0:
            raise _field_error(expression, "day_of_week", text, "a step must be at least 1")
        if match["star"]:
            first, last = 0, 7
        else:
            first = _weekday_number(expression, text, match["first"])
            if match["last"] is not None:
                last = _weekday_number(expression, text, match["last"])
                if match["last"] == "sun" and first > 0:
                    last = 7  # "mon-sun" means through Sunday
            else:
                last = 7 if match["step"] else first
            if first > last:
                raise _field_error(
                    expression, "day_of_week", text, f"range {item!r} runs backwards (write 5-7 for fri-sun)"
                )
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_APS_WEEKDAYS[(day - 1) % 7] for day in sorted(days, key=lambda d: (d - 1) % 7))


def _weekday_number(expression: str, text: str, token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS[token]
    raise _field_error(expression, "day_of_week", text, f"{token!r} is not a day")


def _field_error(expression: str, name: str, value: str, reason: str) -> ScheduleError:
    label, allowed = _FIELD_LABELS[name]
    return ScheduleError(
        f"cron expression {expression!r}: {label} field {value!r} is invalid ({reason}); "
        f"expected {allowed}, as a value, list, range or step such as */15"
    )
