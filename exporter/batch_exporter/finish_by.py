"""schedule.finish_by: the wall time by which an expected run's work must have succeeded.

Written 'HH:MM' (on the local date of the expected start) or 'HH:MM +N day(s)' (N days later, N from 0
to 31), in the schedule's time zone. `late_deadline` finds, for a cron (kept to a business calendar or
not), a start whose deadline would come too close to the next start (or after it) for the deadline to be
seen passed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from .business_calendar import CalendarSchedule
from .schedule import CronSchedule, ScheduleError

MAX_DAYS = 31
FORMAT_HINT = "expected 'HH:MM' or 'HH:MM +N days' (00:00 to 23:59, N from 0 to 31), e.g. '06:00' or '01:30 +1 day'"
MIN_MISSED_WINDOW = timedelta(minutes=5)
"""How long before the next start a deadline must come. The exported deadline is that of the latest
expected start, so it moves on at the next start; BatchFinishDeadlineMissed needs it passed for 2 minutes
(its `for:`), seen through polls, scrapes and rule evaluations each up to a minute or so apart."""
CHECKED_YEAR = 2026
"""The year whose starts `late_deadline` checks: a fixed one, so that a configuration is accepted or
refused whatever the date it is checked on (2026 has a DST change in each direction in zones with DST)."""

_FORM = re.compile(r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?: +\+(?P<days>[0-9]{1,2}) +days?)?")
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class FinishBy:
    """A wall time `days` after the local date of an expected start."""

    at: time
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> FinishBy:
        """Raises ValueError saying what was expected."""
        if not isinstance(text, str):
            raise ValueError(f"finish_by must be text, got {type(text).__name__}; {FORMAT_HINT}")
        match = _FORM.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a finish time: {FORMAT_HINT}")
        hour, minute = int(match["hour"]), int(match["minute"])
        if hour > 23 or minute > 59:
            raise ValueError(f"{text!r}: {match['hour']}:{match['minute']} is no time of day; {FORMAT_HINT}")
        days = int(match["days"] or 0)
        if days > MAX_DAYS:
            raise ValueError(f"{text!r}: at most +{MAX_DAYS} days; {FORMAT_HINT}")
        return cls(time(hour, minute), days)

    def deadline(self, start: datetime, tz: ZoneInfo, planned: datetime | None = None) -> datetime:
        """The deadline (UTC) of a run expected at `start`: this wall time on start's local date in `tz`
        plus `days`; when that is not after the start (a scheduler's catch-up run at 09:00 with a
        finish_by of '06:00'), the same wall time a day later, and so on until it is after the start.

        A wall time a DST change skips is read with the UTC offset before the change: 02:30 on New
        York's spring-forward day is 03:30 EDT (07:30 UTC), an hour after the 02:30 that never came. A
        wall time a DST change repeats is its first occurrence: 01:30 on New York's fall-back day is
        01:30 EDT; or its second (01:30 EST) for a start between the two.

        `planned` is the local wall time (naive) the start stands for, when a spring-forward jump moved
        it (CronSchedule.wall_time: a `30 2 * * *` cron fires at the jump, 03:00, for the 02:30 that
        never came). When the jump put this wall time at or before the moved start (finish_by '03:00'),
        the run keeps the time it has on other days: due at the start plus the span from `planned` to
        this wall time (03:30 for 02:30 to 03:00), not a day later. A wall time still after the moved
        start is kept ('04:00' stays 04:00)."""
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got naive {start.isoformat()}")
        local = start.astimezone(tz)
        day: date = local.date() + timedelta(days=self.days)
        while True:
            # fold=0 reads a skipped wall time with the earlier offset and a repeated one as the first;
            # fold=1 gives the second of a repeated one (and an earlier instant for a skipped one)
            for fold in (0, 1):
                candidate = datetime.combine(day, self.at, tzinfo=tz).replace(fold=fold).astimezone(UTC)
                if candidate > start:
                    return candidate
            if planned is not None and planned != local.replace(tzinfo=None):
                span = datetime.combine(planned.date() + timedelta(days=self.days), self.at) - planned
                if span > timedelta(0):
                    return start.astimezone(UTC) + span
                planned = None  # a wall time before the planned start too: the next day, as for any start
            day += timedelta(days=1)

    def __str__(self) -> str:
        text = self.at.strftime("%H:%M")
        return text if self.days == 0 else f"{text} +{self.days} day{'s' if self.days != 1 else ''}"


@dataclass(frozen=True)
class LateDeadline:
    """A start whose deadline comes less than MIN_MISSED_WINDOW before the next start (or after it)."""

    start: datetime
    deadline: datetime
    next_start: datetime

    def describe(self, tz: ZoneInfo) -> str:
        def shown(instant: datetime) -> str:
            return f"{instant.astimezone(tz):%Y-%m-%d %H:%M}"

        gap = self.next_start - self.deadline
        if gap < timedelta(0):
            where = "after"
        elif gap == timedelta(0):
            where = "at"
        else:
            where = f"only {_minutes(gap)} before"
        return (f"the run expected {shown(self.start)} would be due {shown(self.deadline)}, {where} the next start "
                f"{shown(self.next_start)}: a deadline must come at least {_minutes(MIN_MISSED_WINDOW)} before the "
                f"next start (the alert follows the latest expected start)")


def late_deadline(schedule: CronSchedule | CalendarSchedule, finish: FinishBy) -> LateDeadline | None:
    """The first start in CHECKED_YEAR (local dates in the schedule's zone) whose deadline comes less than
    MIN_MISSED_WINDOW before the schedule's next start, or None. The starts are those the exporter expects:
    a cron's, or with a business calendar those its day rule keeps (Friday's run is next followed by
    Monday's, a month-end run by the next month's). Only the last start of each day is checked: the day's
    earlier starts share its deadline (bar those in the first pass of an hour a DST change repeats, whose
    own deadline the last one's then follows), so their next start, of the same day, leaves the exported
    deadline as it was. A schedule that does not fire in that year has its first start after it checked
    (within the calendar's lookahead)."""
    cron = schedule.cron if isinstance(schedule, CalendarSchedule) else schedule
    latest = latest_start_of_day(cron.expression)
    if latest is None:
        return None
    tz = schedule.timezone
    end = datetime(CHECKED_YEAR + 1, 1, 1, tzinfo=tz).astimezone(UTC)
    fire = schedule.next_fire(datetime(CHECKED_YEAR, 1, 1, tzinfo=tz).astimezone(UTC) - _TICK)
    checked = False
    while fire is not None and (fire < end or not checked):
        last, following = last_fire_of_day(schedule, fire, latest)
        if following is None:
            return None
        deadline = finish.deadline(last, tz, cron.wall_time(last))
        if following - deadline < MIN_MISSED_WINDOW:
            return LateDeadline(last, deadline, following)
        checked = True
        fire = following
    return None


def latest_start_of_day(expression: str) -> time | None:
    """The latest wall time of day a cron fires at (the same on every day it fires: its minute and hour
    fields do not depend on the date), or None for a cron that does not parse or never fires."""
    try:
        schedule = CronSchedule.parse(expression, "UTC")
    except ScheduleError:
        return None
    first = schedule.next_fire(datetime(2000, 1, 1, tzinfo=UTC))
    if first is None:
        return None
    last = schedule.previous_fire(datetime.combine(first.date(), time.max, tzinfo=UTC))
    return None if last is None else last.time()


def last_fire_of_day(cron: CronSchedule | CalendarSchedule, fire: datetime,
                     latest: time) -> tuple[datetime, datetime | None]:
    """(the last fire on the local date of `fire`, the next fire after it), given the cron's latest wall
    time of day (`latest_start_of_day`): the fire at that wall time, then any later one on the same date
    (the second pass of an hour a DST change repeats); a backward search, ten times dearer, only where a
    DST change put the latest wall time after the day's last fire. With a business calendar, a day it keeps
    keeps all the cron's fires, and the next fire is on the next day it keeps."""
    tz = cron.timezone
    day = fire.astimezone(tz).date()
    target = datetime.combine(day, latest, tzinfo=tz).astimezone(UTC)
    last = cron.next_fire(max(fire, target) - _TICK)
    if last is None:
        return fire, None
    if last.astimezone(tz).date() != day:
        return cron.previous_fire(last - _TICK) or fire, last
    following = cron.next_fire(last)
    while following is not None and following.astimezone(tz).date() == day:
        last, following = following, cron.next_fire(following)
    return last, following


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
