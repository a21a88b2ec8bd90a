"""Business calendars and the cron schedules kept to them, at fixed instants: Japan's Golden Week and
year-end bank closure, month ends on a Sunday and on a holiday, the business day after a holiday, the
operator's closed and open dates, DST changes in Berlin and New York, and every hour of a day in two
zones. Then the batch info source's series, and the exporter as a process on a Japanese holiday."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest

from batch_exporter.business_calendar import (
    LOOKAHEAD_DAYS,
    SKIP_LOOKBACK,
    BusinessCalendar,
    CalendarSchedule,
    Closure,
    DayRule,
    Skip,
    SkipReason,
)
from batch_exporter.config import BatchConfig, CalendarConfig, parse_config
from batch_exporter.schedule import CronSchedule
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.batchinfo import BatchInfoSource
from exporter_process import parse_exposition

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
BANGKOK = ZoneInfo("Asia/Bangkok")
JP_BANK: dict[str, Any] = {"country": "JP", "categories": ["public", "bank"]}
JP_PUBLIC: dict[str, Any] = {"country": "JP"}


def calendar(**fields: Any) -> BusinessCalendar:
    return BusinessCalendar(CalendarConfig(**fields))


def schedule(cron: str = "0 2 * * *", zone: str = "Asia/Tokyo", days: DayRule | None = None,
             **fields: Any) -> CalendarSchedule:
    return CalendarSchedule.parse(cron, zone, calendar(**(fields or JP_BANK)), days)


def at(tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall time in `tz` as a UTC instant (the form every schedule answer takes)."""
    return datetime(year, month, day, hour, minute, tzinfo=tz).astimezone(UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


# --- the calendar's verdict on a date -----------------------------------------------------------------


def test_reasons_come_in_order_closed_holiday_weekend_and_open_wins() -> None:
    cal = calendar(country="JP", closed=["2026-06-15", "2026-05-05"], open=["2026-05-04", "2026-05-02"])
    assert cal.closure(d("2026-06-15")) == Closure("closed")  # a Monday the operator closed
    assert cal.closure(d("2026-05-05")) == Closure("closed")  # closed beats Children's Day
    assert cal.closure(d("2026-05-03")) == Closure("holiday", "Constitution Day")  # a Sunday: holiday first
    assert cal.closure(d("2026-05-09")) == Closure("weekend")
    assert cal.closure(d("2026-05-04")) is None  # Greenery Day, opened
    assert cal.closure(d("2026-05-02")) is None  # a Saturday, opened
    assert cal.is_business_day(d("2026-05-07"))
    both = calendar(country="JP", closed=["2026-05-05"], open=["2026-05-05"])
    assert both.is_business_day(d("2026-05-05"))  # open wins over everything (config refuses the pair)


def test_without_a_country_only_the_weekend_and_the_closed_dates_close() -> None:
    cal = calendar(weekend=["fri", "sat"], closed=["2026-05-05"])
    assert cal.closure(d("2026-05-03")) is None  # a Sunday, a holiday in Japan: a business day here
    assert cal.closure(d("2026-05-08")) == Closure("weekend")  # a Friday
    assert cal.closure(d("2026-05-05")) == Closure("closed")


def test_japan_bank_holidays_close_the_year_end() -> None:
    bank, public = calendar(**JP_BANK), calendar(**JP_PUBLIC)
    assert bank.closure(d("2026-12-31")) == Closure("holiday", "Bank Holiday")
    assert public.closure(d("2026-12-31")) is None
    assert bank.closure(d("2027-01-01")) == Closure("holiday", "Bank Holiday; New Year's Day")
    assert public.closure(d("2027-01-01")) == Closure("holiday", "New Year's Day")
    assert bank.closure(d("2027-01-02")) == Closure("holiday", "Bank Holiday")  # a Saturday: holiday first
    assert public.closure(d("2027-01-02")) == Closure("weekend")


def test_holiday_names_do_not_depend_on_the_machine_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.setenv(variable, "ja_JP.UTF-8")
    assert calendar(**JP_PUBLIC).closure(d("2026-05-05")) == Closure("holiday", "Children's Day")


# --- Golden Week 2026 and the year-end closure, a 02:00 Asia/Tokyo cron --------------------------------

# (date, the last expected start at 10:00 that day, the next one, the last skipped: date, reason, holiday)
Row = tuple[str, str, str, tuple[str, SkipReason, str]]
GOLDEN_WEEK: list[Row] = [
    ("2026-04-27", "2026-04-27", "2026-04-28", ("2026-04-26", "weekend", "")),
    ("2026-04-28", "2026-04-28", "2026-04-30", ("2026-04-26", "weekend", "")),
    ("2026-04-29", "2026-04-28", "2026-04-30", ("2026-04-29", "holiday", "Showa Day")),
    ("2026-04-30", "2026-04-30", "2026-05-01", ("2026-04-29", "holiday", "Showa Day")),
    ("2026-05-01", "2026-05-01", "2026-05-07", ("2026-04-29", "holiday", "Showa Day")),
    ("2026-05-02", "2026-05-01", "2026-05-07", ("2026-05-02", "weekend", "")),
    ("2026-05-03", "2026-05-01", "2026-05-07", ("2026-05-03", "holiday", "Constitution Day")),
    ("2026-05-04", "2026-05-01", "2026-05-07", ("2026-05-04", "holiday", "Greenery Day")),
    ("2026-05-05", "2026-05-01", "2026-05-07", ("2026-05-05", "holiday", "Children's Day")),
    ("2026-05-06", "2026-05-01", "2026-05-07", ("2026-05-06", "holiday", "Substitute Holiday")),
    ("2026-05-07", "2026-05-07", "2026-05-08", ("2026-05-06", "holiday", "Substitute Holiday")),
    ("2026-05-08", "2026-05-08", "2026-05-11", ("2026-05-06", "holiday", "Substitute Holiday")),
]
YEAR_END: list[Row] = [
    ("2026-12-28", "2026-12-28", "2026-12-29", ("2026-12-27", "weekend", "")),
    ("2026-12-30", "2026-12-30", "2027-01-04", ("2026-12-27", "weekend", "")),
    ("2026-12-31", "2026-12-30", "2027-01-04", ("2026-12-31", "holiday", "Bank Holiday")),
    ("2027-01-01", "2026-12-30", "2027-01-04", ("2027-01-01", "holiday", "Bank Holiday; New Year's Day")),
    ("2027-01-02", "2026-12-30", "2027-01-04", ("2027-01-02", "holiday", "Bank Holiday")),
    ("2027-01-03", "2026-12-30", "2027-01-04", ("2027-01-03", "holiday", "Bank Holiday")),
    ("2027-01-04", "2027-01-04", "2027-01-05", ("2027-01-03", "holiday", "Bank Holiday")),
    ("2027-01-05", "2027-01-05", "2027-01-06", ("2027-01-03", "holiday", "Bank Holiday")),
]


def two_am(day: str) -> datetime:
    return datetime.combine(d(day), datetime.min.time().replace(hour=2), tzinfo=TOKYO).astimezone(UTC)


@pytest.mark.parametrize(("day", "previous", "following", "skipped"), GOLDEN_WEEK + YEAR_END,
                         ids=[row[0] for row in GOLDEN_WEEK + YEAR_END])
def test_each_day_of_golden_week_and_the_year_end(day: str, previous: str, following: str,
                                                  skipped: tuple[str, SkipReason, str]) -> None:
    sched = schedule()
    now = datetime.combine(d(day), datetime.min.time().replace(hour=10), tzinfo=TOKYO)
    assert sched.fires_around(now) == (two_am(previous), two_am(following))
    skipped_day, reason, name = skipped
    assert sched.last_skipped(now) == Skip(two_am(skipped_day), d(skipped_day), reason, name)


def test_just_before_and_at_the_first_start_after_golden_week() -> None:
    sched = schedule()
    before = at(TOKYO, 2026, 5, 7, 1, 59)
    assert sched.fires_around(before) == (two_am("2026-05-01"), two_am("2026-05-07"))
    assert sched.fires_around(two_am("2026-05-07")) == (two_am("2026-05-07"), two_am("2026-05-08"))
    assert sched.last_skipped(before) == Skip(two_am("2026-05-06"), d("2026-05-06"), "holiday",
                                              "Substitute Holiday")


def test_the_year_end_is_a_business_week_with_public_holidays_only() -> None:
    sched = schedule(**JP_PUBLIC)
    now = at(TOKYO, 2026, 12, 31, 10)
    assert sched.fires_around(now) == (two_am("2026-12-31"), two_am("2027-01-04"))
    assert sched.last_skipped(at(TOKYO, 2027, 1, 2, 10)) == Skip(two_am("2027-01-02"), d("2027-01-02"), "weekend")


def test_plan_lists_golden_week_day_by_day() -> None:
    plan = schedule().plan(at(TOKYO, 2026, 4, 30, 10), starts=3)
    assert plan == [
        two_am("2026-05-01"),
        Skip(two_am("2026-05-02"), d("2026-05-02"), "weekend"),
        Skip(two_am("2026-05-03"), d("2026-05-03"), "holiday", "Constitution Day"),
        Skip(two_am("2026-05-04"), d("2026-05-04"), "holiday", "Greenery Day"),
        Skip(two_am("2026-05-05"), d("2026-05-05"), "holiday", "Children's Day"),
        Skip(two_am("2026-05-06"), d("2026-05-06"), "holiday", "Substitute Holiday"),
        two_am("2026-05-07"),
        two_am("2026-05-08"),
    ]


# --- day rules -------------------------------------------------------------------------------------


def kept_days(sched: CalendarSchedule, start: datetime, end: datetime) -> list[str]:
    """Local dates of the kept fires in (start, end]."""
    found, cursor = [], start
    while (fire := sched.next_fire(cursor)) is not None and fire <= end:
        found.append(sched.local_date(fire).isoformat())
        cursor = fire
    return found


def test_a_month_ending_on_a_sunday_runs_on_friday_the_29th() -> None:
    sched = schedule(days="last-business-day-of-month")
    assert sched.fires_around(at(TOKYO, 2026, 5, 31, 10)) == (two_am("2026-05-29"), two_am("2026-06-30"))
    assert sched.fires_around(at(TOKYO, 2026, 5, 28, 10)) == (two_am("2026-04-30"), two_am("2026-05-29"))
    assert sched.last_skipped(at(TOKYO, 2026, 5, 28, 10)) == Skip(two_am("2026-05-28"), d("2026-05-28"),
                                                                  "not-picked")
    assert sched.last_skipped(at(TOKYO, 2026, 5, 29, 10)) == Skip(two_am("2026-05-28"), d("2026-05-28"),
                                                                  "not-picked")
    assert sched.last_skipped(at(TOKYO, 2026, 5, 31, 10)) == Skip(two_am("2026-05-31"), d("2026-05-31"),
                                                                  "weekend")


def test_a_month_ending_on_a_holiday_runs_on_the_business_day_before() -> None:
    # Japan: 31 December is a bank holiday
    sched = schedule(days="last-business-day-of-month")
    assert sched.fires_around(at(TOKYO, 2026, 12, 31, 10)) == (two_am("2026-12-30"), two_am("2027-01-29"))
    assert schedule(days="last-business-day-of-month", **JP_PUBLIC).previous_fire(
        at(TOKYO, 2026, 12, 31, 10)) == two_am("2026-12-31")
    # the United States: Memorial Day 2027 is Monday 31 May
    us = schedule("0 18 * * *", "America/New_York", days="last-business-day-of-month", country="US")
    assert us.fires_around(at(NEW_YORK, 2027, 5, 31, 20)) == (at(NEW_YORK, 2027, 5, 28, 18),
                                                             at(NEW_YORK, 2027, 6, 30, 18))
    assert us.last_skipped(at(NEW_YORK, 2027, 5, 31, 20)) == Skip(at(NEW_YORK, 2027, 5, 31, 18), d("2027-05-31"),
                                                                  "holiday", "Memorial Day")


def test_first_business_day_of_month_after_new_year() -> None:
    bank = schedule(days="first-business-day-of-month")
    public = schedule(days="first-business-day-of-month", **JP_PUBLIC)
    start, end = at(TOKYO, 2025, 12, 31), at(TOKYO, 2026, 6, 30)
    assert kept_days(bank, start, end) == ["2026-01-05", "2026-02-02", "2026-03-02", "2026-04-01", "2026-05-01",
                                           "2026-06-01"]
    assert kept_days(public, start, end)[0] == "2026-01-02"
    assert kept_days(bank, at(TOKYO, 2026, 12, 1, 10), at(TOKYO, 2027, 2, 28)) == ["2027-01-04", "2027-02-01"]


def test_business_day_after_holiday_through_2026() -> None:
    sched = schedule(days="business-day-after-holiday")
    # each follows closed days holding a holiday; a Monday after a plain weekend is not one
    assert kept_days(sched, at(TOKYO, 2025, 12, 31), at(TOKYO, 2027, 1, 5)) == [
        "2026-01-05",  # after the bank holidays of 1-3 January and a Sunday
        "2026-01-13",  # the Tuesday after Coming of Age Day, a Monday
        "2026-02-12", "2026-02-24",
        "2026-03-23",  # a Monday after Friday's Vernal Equinox Day and the weekend
        "2026-04-30",
        "2026-05-07",  # after Golden Week
        "2026-07-21", "2026-08-12",
        "2026-09-24",  # after the three holidays of 21-23 September
        "2026-10-13", "2026-11-04", "2026-11-24",
        "2027-01-04",  # after the year-end closure
    ]
    assert sched.last_skipped(at(TOKYO, 2026, 7, 13, 10)) == Skip(two_am("2026-07-13"), d("2026-07-13"),
                                                                  "not-picked")


def test_closed_and_open_dates_of_the_operator() -> None:
    sched = schedule(days="business-day-after-holiday", country="JP", closed=["2026-06-15"])
    assert kept_days(sched, at(TOKYO, 2026, 6, 1), at(TOKYO, 2026, 6, 30)) == ["2026-06-16"]
    assert sched.last_skipped(at(TOKYO, 2026, 6, 15, 10)) == Skip(two_am("2026-06-15"), d("2026-06-15"), "closed")
    opened = schedule(country="JP", open=["2026-05-02", "2026-05-04"])
    assert opened.fires_around(at(TOKYO, 2026, 5, 6, 10)) == (two_am("2026-05-04"), two_am("2026-05-07"))
    assert kept_days(opened, at(TOKYO, 2026, 4, 30, 10), at(TOKYO, 2026, 5, 8, 10)) == [
        "2026-05-01", "2026-05-02", "2026-05-04", "2026-05-07", "2026-05-08"]


# --- DST changes: a 02:30 cron in Berlin and New York, on Sundays the calendar opens -------------------


def test_berlin_spring_forward_fires_at_the_jump_on_its_own_date() -> None:
    opened = schedule("30 2 * * *", "Europe/Berlin", country="DE", open=["2026-03-29", "2026-10-25"])
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 CET became 03:00 CEST
    assert opened.fires_around(at(BERLIN, 2026, 3, 29, 12)) == (jump, at(BERLIN, 2026, 3, 30, 2, 30))
    assert opened.local_date(jump) == d("2026-03-29")
    closed = schedule("30 2 * * *", "Europe/Berlin", country="DE")
    assert closed.fires_around(at(BERLIN, 2026, 3, 29, 12)) == (at(BERLIN, 2026, 3, 27, 2, 30),
                                                               at(BERLIN, 2026, 3, 30, 2, 30))
    assert closed.last_skipped(at(BERLIN, 2026, 3, 29, 12)) == Skip(jump, d("2026-03-29"), "weekend")


def test_berlin_fall_back_fires_once_at_the_first_0230() -> None:
    opened = schedule("30 2 * * *", "Europe/Berlin", country="DE", open=["2026-10-25"])
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST; 02:30 CET an hour later does not fire
    assert opened.fires_around(at(BERLIN, 2026, 10, 25, 12)) == (first, at(BERLIN, 2026, 10, 26, 2, 30))
    assert opened.fires_around(first + timedelta(minutes=90)) == (first, at(BERLIN, 2026, 10, 26, 2, 30))


def test_new_york_both_changes() -> None:
    opened = schedule("30 2 * * *", "America/New_York", country="US", open=["2026-03-08", "2026-11-01"])
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert opened.fires_around(at(NEW_YORK, 2026, 3, 8, 12)) == (jump, at(NEW_YORK, 2026, 3, 9, 2, 30))
    fall = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)  # 02:30 EST: the hour New York repeats is 01:00
    assert opened.fires_around(at(NEW_YORK, 2026, 11, 1, 12)) == (fall, at(NEW_YORK, 2026, 11, 2, 2, 30))
    closed = schedule("30 2 * * *", "America/New_York", country="US")
    assert closed.last_skipped(at(NEW_YORK, 2026, 3, 8, 12)) == Skip(jump, d("2026-03-08"), "weekend")
    assert closed.previous_fire(at(NEW_YORK, 2026, 3, 8, 12)) == at(NEW_YORK, 2026, 3, 6, 2, 30)


# --- a fire belongs to its local date ------------------------------------------------------------------


@pytest.mark.parametrize("hour", range(24))
def test_every_hour_of_a_utc_day_in_tokyo(hour: int) -> None:
    # 6 May 2026 is a holiday in Japan; from 15:00 UTC it is 7 May, a business day, in Tokyo
    sched = schedule("0 * * * *", **JP_PUBLIC)
    now = datetime(2026, 5, 6, hour, tzinfo=UTC)
    last_on_1_may = at(TOKYO, 2026, 5, 1, 23)
    if hour < 15:
        assert sched.fires_around(now) == (last_on_1_may, at(TOKYO, 2026, 5, 7, 0))
        assert sched.last_skipped(now) == Skip(now, d("2026-05-06"), "holiday", "Substitute Holiday")
    else:
        assert sched.fires_around(now) == (now, now + timedelta(hours=1))
        assert sched.last_skipped(now) == Skip(at(TOKYO, 2026, 5, 6, 23), d("2026-05-06"), "holiday",
                                               "Substitute Holiday")


@pytest.mark.parametrize("hour", range(24))
def test_every_hour_of_a_utc_day_in_utc(hour: int) -> None:
    # the same calendar read in UTC: every hour of 6 May UTC is on the holiday
    sched = schedule("0 * * * *", "UTC", **JP_PUBLIC)
    now = datetime(2026, 5, 6, hour, tzinfo=UTC)
    assert sched.fires_around(now) == (datetime(2026, 5, 1, 23, tzinfo=UTC), datetime(2026, 5, 7, tzinfo=UTC))
    assert sched.last_skipped(now) == Skip(now, d("2026-05-06"), "holiday", "Substitute Holiday")


def test_a_fire_at_0030_belongs_to_its_local_date_not_the_utc_one() -> None:
    sched = schedule("30 0 * * *", **JP_PUBLIC)
    thursday = at(TOKYO, 2026, 5, 7, 0, 30)  # 15:30 UTC on 6 May, a holiday in Japan
    assert thursday.date() == d("2026-05-06")
    assert sched.previous_fire(thursday) == thursday
    wednesday = at(TOKYO, 2026, 5, 6, 0, 30)  # 15:30 UTC on 5 May (Children's Day)
    assert sched.last_skipped(wednesday) == Skip(wednesday, d("2026-05-06"), "holiday", "Substitute Holiday")


def test_a_late_evening_fire_belongs_to_its_local_date_whose_utc_date_is_the_next() -> None:
    sched = schedule("30 23 * * *", "America/New_York", country="US")
    friday = at(NEW_YORK, 2026, 7, 3, 23, 30)  # 03:30 UTC on 4 July
    assert sched.last_skipped(friday + timedelta(hours=1)) == Skip(friday, d("2026-07-03"), "holiday",
                                                                  "Independence Day (observed)")
    assert sched.previous_fire(friday) == at(NEW_YORK, 2026, 7, 2, 23, 30)


# --- bounds, memoisation, threads, the library's limits -------------------------------------------------


def test_nothing_kept_within_the_lookahead_answers_none() -> None:
    never = schedule(country=None, categories=["public"],
                     weekend=["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    now = at(TOKYO, 2026, 5, 6, 10)
    assert never.fires_around(now) == (None, None)
    assert never.last_skipped(now) == Skip(two_am("2026-05-06"), d("2026-05-06"), "weekend")
    rare = schedule(country=None, categories=["public"], weekend=["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    open=["2025-01-06", "2027-06-01"])
    within = two_am("2025-01-06") + timedelta(days=LOOKAHEAD_DAYS)
    assert rare.previous_fire(within) == two_am("2025-01-06")
    assert rare.previous_fire(within + timedelta(days=1)) is None
    assert rare.next_fire(two_am("2027-06-01") - timedelta(days=LOOKAHEAD_DAYS + 1)) is None
    assert rare.next_fire(two_am("2027-06-01") - timedelta(days=LOOKAHEAD_DAYS - 1)) == two_am("2027-06-01")


def test_the_last_skipped_start_is_forgotten_after_32_days() -> None:
    sched = schedule(country=None, categories=["public"], weekend=[], closed=["2026-05-05"])
    skip = Skip(two_am("2026-05-05"), d("2026-05-05"), "closed")
    assert sched.last_skipped(two_am("2026-05-05") + SKIP_LOOKBACK) == skip
    assert sched.last_skipped(two_am("2026-05-05") + SKIP_LOOKBACK + timedelta(seconds=1)) is None


class CountingCalendar(BusinessCalendar):
    """Counts the calendar's verdicts: a poll between two fire times must ask for none."""

    def __init__(self, rules: CalendarConfig) -> None:
        super().__init__(rules)
        self.asked = 0

    def closure(self, day: date) -> Closure | None:
        self.asked += 1
        return super().closure(day)


@pytest.mark.parametrize("days", ["every-business-day", "last-business-day-of-month"])
def test_polls_between_two_fire_times_reuse_the_answer(days: DayRule) -> None:
    cal = CountingCalendar(CalendarConfig(**JP_BANK))
    sched = CalendarSchedule(CronSchedule.parse("0 2 * * *", "Asia/Tokyo"), cal, days)
    first = at(TOKYO, 2026, 5, 5, 10)
    previous, following = sched.fires_around(first)
    skip = sched.last_skipped(first)
    assert following is not None
    cron_next = two_am("2026-05-06")  # the cron's next fire: the last skipped start may move on then
    cal.asked = 0
    now = first
    while now < following:  # a poll every 30 seconds until the next kept start
        assert sched.fires_around(now) == (previous, following)
        if now < cron_next:
            assert sched.last_skipped(now) == skip
        now += timedelta(seconds=30)
    assert cal.asked == 0
    assert sched.last_skipped(cron_next) == Skip(cron_next, d("2026-05-06"), "holiday", "Substitute Holiday")
    assert sched.fires_around(following)[0] == following
    assert cal.asked > 0
    # going back in time is answered afresh
    earlier = {"every-business-day": (two_am("2026-04-28"), two_am("2026-04-30")),
               "last-business-day-of-month": (two_am("2026-03-31"), two_am("2026-04-30"))}
    assert sched.fires_around(at(TOKYO, 2026, 4, 28, 10)) == earlier[days]


def test_a_schedule_that_keeps_nothing_walks_the_lookahead_once_a_day() -> None:
    # a Saturday cron kept to a Saturday and Sunday weekend: every search walks 400 days in vain
    cal = CountingCalendar(CalendarConfig())
    sched = CalendarSchedule(CronSchedule.parse("0 2 * * 6", "Asia/Tokyo"), cal)
    first = at(TOKYO, 2026, 5, 6, 10)
    assert sched.fires_around(first) == (None, None)
    assert cal.asked >= LOOKAHEAD_DAYS // 7 * 2
    cal.asked = 0
    for minutes in range(0, 24 * 60, 30):  # a poll every 30 minutes for a day
        assert sched.fires_around(first + timedelta(minutes=minutes)) == (None, None)
    assert cal.asked == 0
    assert sched.fires_around(first + timedelta(days=1)) == (None, None)
    assert cal.asked > 0


def test_each_year_is_loaded_once_whatever_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    real = holidays.country_holidays
    loads: list[int] = []

    def slow(*args: Any, **kwargs: Any) -> holidays.HolidayBase:
        if kwargs.get("years") not in (None, ()):
            loads.append(kwargs["years"])
            time.sleep(0.05)  # widens the window in which two threads would both load the year
        return real(*args, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", slow)
    cal = calendar(**JP_BANK)
    start = threading.Barrier(8)
    answers: list[list[Closure | None]] = []

    def ask() -> None:
        start.wait()
        answers.append([cal.closure(date(2026, 1, 1) + timedelta(days=n)) for n in range(0, 730, 7)])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(loads) == [2026, 2027]
    assert len(answers) == 8 and all(answer == answers[0] for answer in answers)


def test_a_year_the_library_cannot_give_does_not_stop_a_poll(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    real = holidays.country_holidays

    def limited(*args: Any, **kwargs: Any) -> holidays.HolidayBase:
        if kwargs.get("years") == 2300:
            raise NotImplementedError("no data for 2300")
        return real(*args, **kwargs)

    monkeypatch.setattr(holidays, "country_holidays", limited)
    cal = calendar(**JP_BANK)
    with caplog.at_level(logging.WARNING):
        assert cal.closure(date(2300, 1, 1)) is None  # a Monday; the weekend still closes days that year
        assert cal.closure(date(2300, 1, 6)) == Closure("weekend")
    assert "no holidays known for 2300" in caplog.text
    # beyond the library's own data (Japan's ends in 2099) nothing is raised either
    assert calendar(**JP_BANK).closure(date(2150, 1, 1)) in (None, Closure("weekend"))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule().fires_around(datetime(2026, 5, 5, 10))


# --- the batch info source ----------------------------------------------------------------------------

CONFIG = """\
calendars:
  jp-bank: {country: JP, categories: [public, bank]}
  th: {country: TH}
batches:
  settlement:
    schedule: {cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: jp-bank, finish_by: "06:00"}
  month-end:
    schedule: {cron: "0 22 * * *", timezone: Asia/Tokyo, calendar: jp-bank, days: last-business-day-of-month,
               finish_by: "01:30 +1 day"}
  bangkok:
    schedule: {cron: "0 2 * * *", timezone: Asia/Bangkok, calendar: th}
  plain:
    schedule: {cron: "0 1 * * *", timezone: America/New_York, finish_by: "02:30"}
"""


def poll(batch: str, now: datetime, **kwargs: Any) -> Snapshot:
    config = parse_config(CONFIG, "calendars.yml")
    return BatchInfoSource(batch, config.batches[batch], clock=lambda: now.timestamp(),
                           calendars=config.calendars, **kwargs).poll()


def samples(snapshot: Snapshot, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in snapshot.samples if s.name == name}


def test_the_source_on_childrens_day() -> None:
    snapshot = poll("settlement", at(TOKYO, 2026, 5, 5, 10))
    batch = (("batch", "settlement"),)
    assert samples(snapshot, "batch_schedule_last_expected_timestamp_seconds") == {
        batch: two_am("2026-05-01").timestamp()}
    assert samples(snapshot, "batch_schedule_next_expected_timestamp_seconds") == {
        batch: two_am("2026-05-07").timestamp()}
    assert samples(snapshot, "batch_schedule_finish_deadline_timestamp_seconds") == {
        batch: at(TOKYO, 2026, 5, 1, 6).timestamp()}
    assert samples(snapshot, "batch_schedule_last_skipped_timestamp_seconds") == {
        (("batch", "settlement"), ("date", "2026-05-05"), ("reason", "holiday"), ("holiday", "Children's Day")):
            two_am("2026-05-05").timestamp()}


def test_the_source_on_a_month_end_and_a_deadline_the_next_day() -> None:
    snapshot = poll("month-end", at(TOKYO, 2026, 5, 31, 10))
    batch = (("batch", "month-end"),)
    assert samples(snapshot, "batch_schedule_last_expected_timestamp_seconds") == {
        batch: at(TOKYO, 2026, 5, 29, 22).timestamp()}
    assert samples(snapshot, "batch_schedule_finish_deadline_timestamp_seconds") == {
        batch: at(TOKYO, 2026, 5, 30, 1, 30).timestamp()}
    assert samples(snapshot, "batch_schedule_last_skipped_timestamp_seconds") == {
        (("batch", "month-end"), ("date", "2026-05-30"), ("reason", "weekend"), ("holiday", "")):
            at(TOKYO, 2026, 5, 30, 22).timestamp()}


def test_a_long_holiday_name_is_capped_as_a_label_value() -> None:
    # Thailand, 7 December 2026: a real name of 114 characters
    snapshot = poll("bangkok", at(BANGKOK, 2026, 12, 7, 10))
    (labels,) = samples(snapshot, "batch_schedule_last_skipped_timestamp_seconds")
    holiday = dict(labels)["holiday"]
    assert len(holiday) == 64 and holiday.startswith("HM King Bhumibol Adulyadej the Great's Birthday (in lieu)")


def test_without_a_calendar_no_skip_is_exported_and_the_deadline_reads_dst_like_the_docs_say() -> None:
    # the 01:00 cron fired at 01:00 EST on 8 March 2026; finish_by 02:30 that day, a wall time the jump to
    # summer time skipped, is 03:30 EDT
    snapshot = poll("plain", at(NEW_YORK, 2026, 3, 8, 4))
    assert samples(snapshot, "batch_schedule_last_expected_timestamp_seconds") == {
        (("batch", "plain"),): datetime(2026, 3, 8, 6, 0, tzinfo=UTC).timestamp()}
    assert samples(snapshot, "batch_schedule_finish_deadline_timestamp_seconds") == {
        (("batch", "plain"),): datetime(2026, 3, 8, 7, 30, tzinfo=UTC).timestamp()}
    assert samples(snapshot, "batch_schedule_last_skipped_timestamp_seconds") == {}


def test_a_calendar_the_source_was_not_given_is_an_error() -> None:
    batch = BatchConfig.model_validate({"schedule": {"cron": "0 2 * * *", "calendar": "jp-bank"}})
    with pytest.raises(ValueError, match="schedule.calendar 'jp-bank' is not among the calendars given"):
        BatchInfoSource("settlement", batch, clock=lambda: 0.0)


# --- the exporter as a process, under faketime, on a Japanese holiday ---------------------------------


def once_at(config: Path, instant: datetime) -> subprocess.CompletedProcess[str]:
    """`batch-exporter once` with its clock at `instant` (faketime, in UTC whatever the machine's zone)."""
    faketime = shutil.which("faketime")
    assert faketime, "faketime fixes the exporter's clock (apt-get install faketime; make test installs it)"
    return subprocess.run([faketime, "-m", instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), sys.executable,
                           "-m", "batch_exporter.cli", "once", "-c", str(config)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "TZ": "UTC"})


PROCESS_CASES: Iterable[tuple[datetime, str, str, str, str]] = [
    # now, last expected start, its local date of skip, reason's holiday name, next expected start
    (at(TOKYO, 2026, 5, 5, 10), "2026-05-01", "2026-05-05", "Children's Day", "2026-05-07"),
    (at(TOKYO, 2027, 1, 2, 10), "2026-12-30", "2027-01-02", "Bank Holiday", "2027-01-04"),
]


@pytest.mark.parametrize(("now", "last", "skipped", "name", "following"), PROCESS_CASES,
                         ids=["golden-week", "year-end"])
def test_once_on_a_japanese_holiday(tmp_path: Path, now: datetime, last: str, skipped: str, name: str,
                                    following: str) -> None:
    config = tmp_path / "calendar.yml"
    config.write_text(
        "calendars:\n  jp-bank:\n    country: JP\n    categories: [public, bank]\n"
        "batches:\n  settlement:\n    schedule:\n      cron: '0 2 * * *'\n      timezone: Asia/Tokyo\n"
        "      calendar: jp-bank\n      finish_by: '06:00'\n", encoding="utf-8")
    result = once_at(config, now)
    assert result.returncode == 0, result.stderr
    series = parse_exposition(result.stdout)
    batch = (("batch", "settlement"),)
    assert series[("batch_schedule_last_expected_timestamp_seconds", batch)] == two_am(last).timestamp()
    assert series[("batch_schedule_next_expected_timestamp_seconds", batch)] == two_am(following).timestamp()
    deadline = datetime.combine(d(last), datetime.min.time().replace(hour=6), tzinfo=TOKYO)
    assert series[("batch_schedule_finish_deadline_timestamp_seconds", batch)] == deadline.timestamp()
    skipped_labels = (("batch", "settlement"), ("date", skipped), ("holiday", name), ("reason", "holiday"))
    assert series[("batch_schedule_last_skipped_timestamp_seconds", skipped_labels)] == two_am(skipped).timestamp()
