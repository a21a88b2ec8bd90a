"""schedule.finish_by: the wall time by which an expected run's work must have succeeded.

Written 'HH:MM' (on the local date of the expected start) or 'HH:MM +N day(s)' (N days later, N from 0
to 31), in the schedule's time zone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MAX_DAYS = 31
FORMAT_HINT = "expected 'HH:MM' or 'HH:MM +N days' (00:00 to 23:59, N from 0 to 31), e.g. '06:00' or '01:30 +1 day'"

_FORM = re.compile(r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})(?: +\+(?P<days>[0-9]{1,2}) +days?)?")


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

    def deadline(self, start: datetime, tz: ZoneInfo) -> datetime:
        """The deadline (UTC) of a run expected at `start`: this wall time on start's local date in `tz`
        plus `days`.

        A wall time a DST change skips is read with the UTC offset before the change: 02:30 on New
        York's spring-forward day is 03:30 EDT (07:30 UTC), an hour after the 02:30 that never came. A
        wall time a DST change repeats is its first occurrence: 01:30 on New York's fall-back day is
        01:30 EDT."""
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, got naive {start.isoformat()}")
        day: date = start.astimezone(tz).date() + timedelta(days=self.days)
        # fold=0 is what reads a skipped wall time with the earlier offset and a repeated one as the first
        return datetime.combine(day, self.at, tzinfo=tz).replace(fold=0).astimezone(UTC)

    def __str__(self) -> str:
        text = self.at.strftime("%H:%M")
        return text if self.days == 0 else f"{text} +{self.days} day{'s' if self.days != 1 else ''}"
