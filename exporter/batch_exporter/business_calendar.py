"""Business calendars: which local dates a business works, and which cron fires a calendar keeps.

A date is closed when the operator lists it (`closed`), when the `holidays` library names a holiday
on it for the calendar's country, subdivision and categories, or when it falls on the weekend, in
that order of reasons; a date the operator lists as `open` is a business day whatever else holds.

A `CalendarSchedule` is a cron schedule whose fires count only on the business days its day rule
picks. A fire belongs to the local date (in the cron's time zone) it happens on, whatever its UTC
date. Searches reach LOOKAHEAD_DAYS back and forward and answer None beyond.
"""
from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import holidays

from .schedule import CronSchedule

log = logging.getLogger(__name__)

Reason = Literal["closed", "holiday", "weekend"]
SkipReason = Literal["closed", "holiday", "weekend", "not-picked"]
DayRule = Literal["every-business-day", "first-business-day-of-month", "last-business-day-of-month",
                  "business-day-after-holiday"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order

LOOKAHEAD_DAYS = 400
"""How far (in days) the expected starts are searched back and forward; None beyond."""
SKIP_LOOKBACK = timedelta(days=32)
"""How far back `last_skipped` looks for a skipped fire."""

_LOOKAHEAD = timedelta(days=LOOKAHEAD_DAYS)
_TICK = timedelta(microseconds=1)
# When no expected start lies within the lookahead, the answer is kept this long: the horizon then
# moves by at most this much between two searches, and a search that walks the whole lookahead in vain
# (tens of milliseconds) runs once a day, not at every poll.
_NONE_KEPT = timedelta(days=1)
# Holiday names are shown in English when the library has them so (label values and logs must not
# depend on the machine's locale); otherwise in the country's own language.
_PREFERRED_LANGUAGE = "en_US"


class CalendarRules(Protocol):
    """What a business calendar is made of (config.CalendarConfig)."""

    @property
    def country(self) -> str | None: ...
    @property
    def subdivision(self) -> str | None: ...
    @property
    def categories(self) -> Sequence[str]: ...
    @property
    def weekend(self) -> Sequence[str]: ...
    @property
    def closed(self) -> Sequence[date]: ...
    @property
    def open(self) -> Sequence[date]: ...


@dataclass(frozen=True)
class Closure:
    """Why a date is no business day; `holiday` is the library's name of the holiday, or ''."""

    reason: Reason
    holiday: str = ""


@dataclass(frozen=True)
class Skip:
    """A cron fire the calendar skipped: the fire (UTC), its local date, why, and the holiday's name."""

    fire: datetime
    day: date
    reason: SkipReason
    holiday: str = ""


# --- checking what the library knows ----------------------------------------------------------------


def calendar_problems(rules: CalendarRules) -> list[tuple[tuple[str | int, ...], str]]:
    """(field under the calendar, message) for a country, subdivision or category the library does not
    know; empty when the calendar can be used."""
    if rules.country is None:
        if rules.subdivision is not None:
            return [(("subdivision",), "a subdivision needs 'country'")]
        if list(rules.categories) != ["public"]:
            return [(("categories",), "holiday categories need 'country'")]
        return []
    if rules.country not in holidays.list_supported_countries():
        return [(("country",), _unknown_country(rules.country))]
    entity = holidays.country_holidays(rules.country, years=())
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if rules.subdivision is not None:
        aliases = getattr(entity, "subdivisions_aliases", {}) or {}
        if rules.subdivision not in entity.subdivisions and rules.subdivision not in aliases:
            known = ", ".join(entity.subdivisions) if entity.subdivisions else "none: leave 'subdivision' out"
            problems.append((("subdivision",), f"{rules.country} has no subdivision {rules.subdivision!r} in the "
                                               f"holidays library (its subdivisions: {known})"))
    for index, category in enumerate(rules.categories):
        if category not in entity.supported_categories:
            problems.append((("categories", index),
                             f"{rules.country} has no holiday category {category!r} in the holidays library "
                             f"(its categories: {', '.join(entity.supported_categories)})"))
    return problems


def _unknown_country(code: str) -> str:
    known = holidays.list_supported_countries(include_aliases=False)
    try:  # the library also finds a country by its English name ('Japan')
        close = [holidays.country_holidays(code, years=()).country]
    except Exception:  # anything else it cannot find, whatever it raises for it
        close = [c for c in known if c == code.upper()] or difflib.get_close_matches(code.upper(), known, n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"the holidays library knows no country {code!r}: expected an ISO 3166-1 alpha-2 code such as JP, "
            f"US, GB, DE or FR ({len(known)} countries, see holidays.list_supported_countries()){hint}")


# --- the calendar -----------------------------------------------------------------------------------


class BusinessCalendar:
    """Tells business days from closed ones. Safe to share between threads."""

    def __init__(self, rules: CalendarRules) -> None:
        problems = calendar_problems(rules)
        if problems:
            raise ValueError("; ".join(message for _, message in problems))
        self._country = rules.country
        self._subdivision = rules.subdivision
        self._categories = tuple(rules.categories)
        self._weekend = frozenset(WEEKDAYS.index(day) for day in rules.weekend)
        self._closed = frozenset(rules.closed)
        self._open = frozenset(rules.open)
        self._language: str | None = None
        if rules.country is not None:
            entity = holidays.country_holidays(rules.country, years=())
            self._language = (_PREFERRED_LANGUAGE if _PREFERRED_LANGUAGE in entity.supported_languages
                              else entity.default_language)
        # The library fills a year in on first lookup, which is no thread-safe operation; each year is
        # loaded once here, under the lock, into a dict that is never changed afterwards.
        self._years: dict[int, dict[date, str]] = {}
        self._lock = threading.Lock()

    def closure(self, day: date) -> Closure | None:
        """Why `day` is closed, or None for a business day."""
        if day in self._open:
            return None
        if day in self._closed:
            return Closure("closed")
        name = self._holidays(day.year).get(day)
        if name is not None:
            return Closure("holiday", name)
        if day.weekday() in self._weekend:
            return Closure("weekend")
        return None

    def is_business_day(self, day: date) -> bool:
        return self.closure(day) is None

    def _holidays(self, year: int) -> dict[date, str]:
        found = self._years.get(year)
        if found is None:
            with self._lock:
                found = self._years.get(year)
                if found is None:
                    found = self._load(year)
                    self._years[year] = found
        return found

    def _load(self, year: int) -> dict[date, str]:
        if self._country is None:
            return {}
        try:
            entity = holidays.country_holidays(self._country, subdiv=self._subdivision, years=year,
                                               categories=self._categories, language=self._language)
            return {day: str(name) for day, name in entity.items() if day.year == year}
        except Exception as exc:  # a year beyond the library's data must not stop a poll
            log.warning("business calendar %s: no holidays known for %d (%s); only the weekend and the "
                        "closed dates close days of that year", self._country, year, exc)
            return {}


# --- a cron schedule kept to business days ----------------------------------------------------------


@dataclass(frozen=True)
class _Bracket:
    valid_from: datetime
    valid_until: datetime
    previous: datetime | None
    next: datetime | None


@dataclass(frozen=True)
class _SkipMemo:
    valid_from: datetime
    valid_until: datetime
    skip: Skip | None


class CalendarSchedule:
    """A cron schedule that fires only on the business days `days` picks; the API of CronSchedule plus
    `last_skipped` and `plan`. Answers are kept between fire times: a poll between two is cheap."""

    def __init__(self, cron: CronSchedule, calendar: BusinessCalendar,
                 days: DayRule = "every-business-day") -> None:
        self.cron = cron
        self.calendar = calendar
        self.days: DayRule = days
        self.timezone: ZoneInfo = cron.timezone
        self._bracket: _Bracket | None = None
        self._skip_memo: _SkipMemo | None = None

    @classmethod
    def parse(cls, expression: str, timezone: str, calendar: BusinessCalendar,
              days: DayRule | None = None) -> CalendarSchedule:
        """Raises schedule.ScheduleError for a bad expression or time zone."""
        return cls(CronSchedule.parse(expression, timezone), calendar, days or "every-business-day")

    # -- the CronSchedule API --

    def previous_fire(self, now: datetime) -> datetime | None:
        """Latest kept fire <= now (UTC), or None if none within LOOKAHEAD_DAYS."""
        return self.fires_around(now)[0]

    def next_fire(self, now: datetime) -> datetime | None:
        """Earliest kept fire > now (UTC), or None if none within LOOKAHEAD_DAYS."""
        return self.fires_around(now)[1]

    def fires_around(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(previous_fire(now), next_fire(now)); `now` must be timezone-aware."""
        now = _utc(now)
        memo = self._bracket
        if memo is not None and memo.valid_from <= now < memo.valid_until:
            return memo.previous, memo.next
        previous = self._kept_at_or_before(now, now - _LOOKAHEAD)
        following = self._kept_after(now, now + _LOOKAHEAD)
        # the same answer holds from the previous fire (or now) until the next one, as long as both
        # stay within the lookahead
        valid_from = now if previous is None else previous
        valid_until = now + _NONE_KEPT if following is None else following
        if following is not None:
            valid_from = max(valid_from, following - _LOOKAHEAD)
        if previous is not None:
            valid_until = min(valid_until, previous + _LOOKAHEAD)
        self._bracket = _Bracket(min(valid_from, now), max(valid_until, now + _TICK), previous, following)
        return previous, following

    def wall_time(self, fire: datetime) -> datetime:
        """The local wall time (naive) a fire stands for (CronSchedule.wall_time)."""
        return self.cron.wall_time(fire)

    # -- what the calendar decided --

    def last_skipped(self, now: datetime) -> Skip | None:
        """The latest cron fire <= now, at most SKIP_LOOKBACK ago, whose local date the calendar skipped."""
        now = _utc(now)
        memo = self._skip_memo
        if memo is not None and memo.valid_from <= now < memo.valid_until:
            return memo.skip
        skip = None
        floor = now - SKIP_LOOKBACK
        fire = self.cron.previous_fire(now)
        while fire is not None and fire >= floor:
            day = self.local_date(fire)
            verdict = self.verdict(day)
            if verdict is not None:
                skip = Skip(fire, day, *verdict)
                break
            fire = self.cron.previous_fire(min(self._day_start(day), fire) - _TICK)
        cron_next = self.cron.next_fire(now)
        valid_until = now + _NONE_KEPT if cron_next is None else cron_next
        if skip is not None:
            valid_until = min(valid_until, skip.fire + SKIP_LOOKBACK)
        self._skip_memo = _SkipMemo(now, max(valid_until, now + _TICK), skip)
        return skip

    def verdict(self, day: date) -> tuple[SkipReason, str] | None:
        """(reason, holiday name) when the schedule skips the local date `day`, None when it runs."""
        closure = self.calendar.closure(day)
        if closure is not None:
            return closure.reason, closure.holiday
        if not self._picks(day):
            return "not-picked", ""
        return None

    def plan(self, after: datetime, starts: int) -> list[datetime | Skip]:
        """The next `starts` kept fires after `after`, in order, with a Skip (its first fire) for each local
        date between them on which the cron fires and the calendar skips; within LOOKAHEAD_DAYS."""
        cursor = _utc(after)
        ceiling = cursor + _LOOKAHEAD
        found: list[datetime | Skip] = []
        kept = 0
        while kept < starts:
            fire = self.cron.next_fire(cursor)
            if fire is None or fire > ceiling:
                break
            day = self.local_date(fire)
            verdict = self.verdict(day)
            if verdict is None:
                found.append(fire)
                kept += 1
                cursor = fire
            else:
                found.append(Skip(fire, day, *verdict))
                cursor = max(self._day_start(day + timedelta(days=1)) - _TICK, fire)
        return found

    def local_date(self, instant: datetime) -> date:
        """The local date (in the cron's time zone) an instant belongs to."""
        return instant.astimezone(self.timezone).date()

    # -- searches, a day at a time --

    def _kept_at_or_before(self, now: datetime, floor: datetime) -> datetime | None:
        fire = self.cron.previous_fire(now)
        while fire is not None and fire >= floor:
            day = self.local_date(fire)
            if self.verdict(day) is None:
                return fire
            fire = self.cron.previous_fire(min(self._day_start(day), fire) - _TICK)
        return None

    def _kept_after(self, now: datetime, ceiling: datetime) -> datetime | None:
        fire = self.cron.next_fire(now)
        while fire is not None and fire <= ceiling:
            day = self.local_date(fire)
            if self.verdict(day) is None:
                return fire
            # the next fire on a later date; max() keeps moving where a clock set back repeats a date
            fire = self.cron.next_fire(max(self._day_start(day + timedelta(days=1)) - _TICK, fire))
        return None

    def _day_start(self, day: date) -> datetime:
        """First instant of a local date (a midnight a DST jump skips reads as the jump)."""
        return datetime.combine(day, time(0), tzinfo=self.timezone).astimezone(UTC)

    def _picks(self, day: date) -> bool:
        """Whether the day rule picks the business day `day`."""
        business = self.calendar.is_business_day
        if self.days == "every-business-day":
            return True
        if self.days == "first-business-day-of-month":
            return not any(business(day.replace(day=d)) for d in range(1, day.day))
        if self.days == "last-business-day-of-month":
            later = day + timedelta(days=1)
            while later.month == day.month:
                if business(later):
                    return False
                later += timedelta(days=1)
            return True
        # business-day-after-holiday: the closed days right before include a holiday or a closed date
        earlier = day - timedelta(days=1)
        for _ in range(LOOKAHEAD_DAYS):
            closure = self.calendar.closure(earlier)
            if closure is None:
                return False
            if closure.reason != "weekend":
                return True
            earlier -= timedelta(days=1)
        return False


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"schedule times must be timezone-aware, got naive {now.isoformat()}")
    return now.astimezone(UTC)
