"""Calendars, day rules and finish_by in the configuration: each mistake located on its field with what was
expected; and `check-config --explain` listing the next expected starts, deadlines and skipped days."""
from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from batch_exporter import business_calendar, config
from batch_exporter.config import ConfigError, parse_config
from batch_exporter.explain import explain


def load(text: str) -> config.Config:
    return parse_config(textwrap.dedent(text), "conf.yml", {}, Path("/nonexistent"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return str(caught.value).splitlines()


def one_batch(schedule: str, calendars: str = "jp: {country: JP, categories: [public, bank]}") -> str:
    return f"calendars:\n  {calendars}\nbatches:\n  settle:\n    schedule: {schedule}\n"


def test_a_calendar_schedule_loads() -> None:
    loaded = load("""\
        calendars:
          jp-bank:
            country: JP
            categories: [public, bank]
            closed: [2026-06-15]
            open: ['2026-05-02']
          berlin: {country: DE, subdivision: BE, weekend: [sat, sun]}
        batches:
          settle:
            schedule: {cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: jp-bank, days: last-business-day-of-month,
                       finish_by: '06:00'}
          late:
            schedule: {cron: "30 23 * * *", timezone: Europe/Berlin, calendar: berlin, finish_by: '01:30 +1 day'}
        """)
    assert loaded.calendars["jp-bank"].closed[0].isoformat() == "2026-06-15"
    assert loaded.calendars["jp-bank"].open[0].isoformat() == "2026-05-02"
    schedule = loaded.batches["settle"].schedule
    assert schedule is not None and schedule.days == "last-business-day-of-month"


def test_an_unknown_calendar_is_named_with_the_known_ones() -> None:
    assert errors_of(one_batch('{cron: "0 2 * * *", calendar: japan}')) == [
        "conf.yml:5: batches.settle.schedule.calendar: unknown calendar 'japan' (known: jp)"]
    assert errors_of('batches:\n  settle:\n    schedule: {cron: "0 2 * * *", calendar: jp}\n') == [
        "conf.yml:3: batches.settle.schedule.calendar: unknown calendar 'jp' (known: none are configured under "
        "'calendars')"]


def test_a_scheduler_query_plans_its_own_days() -> None:
    text = """\
        calendars:
          jp: {country: JP}
        databases:
          d: {sqlite: /nonexistent.db}
        batches:
          settle:
            database: d
            schedule:
              query: "SELECT latest, next_start, paused FROM plan"
              calendar: jp
              days: business-day-after-holiday
              finish_by: '06:00'
        """
    errors = errors_of(text)
    assert len(errors) == 2
    assert errors[0].startswith("conf.yml:10: batches.settle.schedule.calendar: 'calendar' works with 'cron' only: "
                                "with 'query' the scheduler plans its own days")
    assert errors[1].startswith("conf.yml:11: batches.settle.schedule.days: 'days' works with 'cron' only")


def test_days_need_a_calendar() -> None:
    assert errors_of('batches:\n  settle:\n    schedule:\n      cron: "0 2 * * *"\n'
                     '      days: first-business-day-of-month\n') == [
        "conf.yml:5: batches.settle.schedule.days: 'days' picks among a calendar's business days: it needs "
        "'calendar'"]


def test_an_unknown_day_rule_lists_the_rules() -> None:
    (error,) = errors_of(one_batch('{cron: "0 2 * * *", calendar: jp, days: last-day-of-month}'))
    assert error.startswith("conf.yml:5: batches.settle.schedule.days: ")
    assert "'every-business-day'" in error and "'business-day-after-holiday'" in error


@pytest.mark.parametrize(("calendar", "expected"), [
    ("jp: {country: XX}", "conf.yml:2: calendars.jp.country: the holidays library knows no country 'XX': expected "
                          "an ISO 3166-1 alpha-2 code such as JP, US, GB, DE or FR"),
    ("jp: {country: jp}", "did you mean 'JP'?"),
    ("jp: {country: Japan}", "conf.yml:2: calendars.jp.country: the holidays library knows no country 'Japan'"),
    ("jp: {country: Japan}", "did you mean 'JP'?"),
    ("jp: {country: JP, subdivision: '13'}",
     "conf.yml:2: calendars.jp.subdivision: JP has no subdivision '13' in the holidays library (its subdivisions: "
     "none: leave 'subdivision' out)"),
    ("jp: {country: DE, subdivision: XX}", "(its subdivisions: BB, BE, BW, BY, HB, HE, HH, MV, NI, NW, RP, SH, "),
    ("jp: {country: US, categories: [public, bank]}",
     "conf.yml:2: calendars.jp.categories[1]: US has no holiday category 'bank' in the holidays library (its "
     "categories: government, half_day, public, unofficial)"),
    ("jp: {subdivision: BE}", "conf.yml:2: calendars.jp.subdivision: a subdivision needs 'country'"),
    ("jp: {categories: [bank]}", "conf.yml:2: calendars.jp.categories: holiday categories need 'country'"),
    ("jp: {country: JP, closed: [2026-05-07], open: [2026-05-07]}",
     "conf.yml:2: calendars.jp.open: 2026-05-07 also listed under 'closed': keep each date in one of the two lists"),
    ("jp: {country: JP, weekend: [saturday]}", "conf.yml:2: calendars.jp.weekend[0]: Input should be 'mon', "),
    ("jp: {country: JP, closed: ['2026-02-30']}", "conf.yml:2: calendars.jp.closed[0]: "),
])
def test_calendar_mistakes(calendar: str, expected: str) -> None:
    (error,) = errors_of(one_batch('{cron: "0 2 * * *", calendar: jp}', calendar))
    assert expected in error
    if expected.startswith("conf.yml"):
        assert error.startswith(expected)


@pytest.mark.parametrize(("finish_by", "expected"), [
    ("'6:00'", "'6:00' is not a finish time: expected 'HH:MM' or 'HH:MM +N days'"),
    ("'06:00 +40 days'", "'06:00 +40 days': at most +31 days"),
    ("'25:00'", "'25:00': 25:00 is no time of day"),
    ("12:30", "an unquoted time is a number in YAML (base 60: 12:30 is 750); quote it: finish_by: '12:30'"),
])
def test_a_bad_finish_by(finish_by: str, expected: str) -> None:
    (error,) = errors_of(one_batch(f'{{cron: "0 2 * * *", finish_by: {finish_by}}}'))
    assert error.startswith("conf.yml:5: batches.settle.schedule.finish_by: " + expected)


@pytest.mark.parametrize(("cron", "finish_by", "latest"), [
    ("0 2 * * *", "01:00", "02:00"),
    ("0 2 * * *", "02:00", "02:00"),  # a deadline at the start itself
    ("0 2 * * *", "01:00 +0 days", "02:00"),
    ("0 1,5 * * 1-5", "03:00", "05:00"),
    ("@hourly", "22:30", "23:00"),
    ("*/20 9-17 * * *", "17:30", "17:40"),
])
def test_a_same_day_deadline_must_come_after_every_start(cron: str, finish_by: str, latest: str) -> None:
    (error,) = errors_of(one_batch(f'{{cron: "{cron}", finish_by: "{finish_by}"}}'))
    wall = finish_by.split()[0]
    assert error == (f"conf.yml:5: batches.settle.schedule.finish_by: '{finish_by}' is not after the cron's last "
                     f"start of the day ({latest}), so the deadline would come before the run; for the next day "
                     f"write '{wall} +1 day'")


@pytest.mark.parametrize(("cron", "finish_by"), [
    ("0 2 * * *", "02:01"),
    ("0 2 * * *", "01:00 +1 day"),
    ("0 1,5 * * 1-5", "05:30"),
    ("@hourly", "23:30"),
    ("30 23 * * *", "00:30 +1 day"),
])
def test_deadlines_after_the_start_load(cron: str, finish_by: str) -> None:
    load(one_batch(f'{{cron: "{cron}", finish_by: "{finish_by}"}}'))


@pytest.mark.parametrize(("cron", "finish_by", "expected"), [
    ("0 2 * * *", "03:00 +1 day", "the run expected 2026-01-01 02:00 would be due 2026-01-02 03:00, after the next "
                                  "start 2026-01-02 02:00"),
    ("0 22 * * *", "23:00 +1 day", "the run expected 2026-01-01 22:00 would be due 2026-01-02 23:00, after the next "
                                   "start 2026-01-02 22:00"),
    ("0 */4 * * *", "06:00 +1 day", "the run expected 2026-01-01 20:00 would be due 2026-01-02 06:00, after the next "
                                    "start 2026-01-02 00:00"),
    ("*/15 * * * *", "23:59", "the run expected 2026-01-01 23:45 would be due 2026-01-01 23:59, only 1 minute before "
                              "the next start 2026-01-02 00:00"),
    ("0 2 * * 1-5", "02:00 +1 day", "the run expected 2026-01-01 02:00 would be due 2026-01-02 02:00, at the next "
                                    "start 2026-01-02 02:00"),
])
def test_a_deadline_the_next_start_would_hide_is_refused(cron: str, finish_by: str, expected: str) -> None:
    text = one_batch(f'{{cron: "{cron}", timezone: Asia/Tokyo, finish_by: "{finish_by}"}}')
    assert errors_of(text) == [
        f"conf.yml:5: batches.settle.schedule.finish_by: '{finish_by}' comes too late: {expected}: a deadline must "
        "come at least 5 minutes before the next start (the alert follows the latest expected start)"]


def test_a_deadline_too_late_on_one_night_of_the_year_is_refused_naming_it() -> None:
    (error,) = errors_of(one_batch('{cron: "30 2 * * *", timezone: Europe/Berlin, finish_by: "02:00 +1 day"}'))
    assert "the run expected 2026-03-28 02:30 would be due 2026-03-29 03:00, at the next start 2026-03-29 03:00" \
        in error
    load(one_batch('{cron: "30 2 * * *", timezone: Europe/Berlin, finish_by: "01:55 +1 day"}'))


# finish_by checked against the starts the exporter expects: those the calendar keeps, not every cron fire
PUBLIC_JP = "jp: {country: JP}"


@pytest.mark.parametrize(("calendars", "schedule"), [
    # the review's probe: refused for a run "expected" on 1 January, a holiday on which the calendar expects none
    (PUBLIC_JP, "days: last-business-day-of-month, cron: '0 22 * * *', finish_by: '09:00 +3 days'"),
    (PUBLIC_JP, "days: first-business-day-of-month, cron: '0 2 * * *', finish_by: '06:00 +2 days'"),
    # May 2026 ends on a Sunday: Friday 29's run is due Monday 1 June, weeks before the next one
    (PUBLIC_JP, "days: last-business-day-of-month, cron: '0 22 * * *', finish_by: '09:00 +25 days'"),
    # the banks' year-end closure: 30 December's run is due on 4 January, after the closure
    ("jp: {country: JP, categories: [public, bank]}",
     "days: last-business-day-of-month, cron: '0 22 * * *', finish_by: '09:00 +5 days'"),
    # Golden Week: 30 April (after Showa Day) and 7 May are the closest days after a holiday, 7 days apart
    (PUBLIC_JP, "days: business-day-after-holiday, cron: '0 5 * * *', finish_by: '09:00 +6 days'"),
])
def test_a_deadline_before_the_next_start_the_calendar_keeps_loads(calendars: str, schedule: str) -> None:
    load(one_batch(f"{{{schedule}, timezone: Asia/Tokyo, calendar: jp}}", calendars))


@pytest.mark.parametrize(("calendars", "schedule", "expected"), [
    (PUBLIC_JP, "days: last-business-day-of-month, cron: '0 22 * * *', finish_by: '09:00 +31 days'",
     "the run expected 2026-01-30 22:00 would be due 2026-03-02 09:00, after the next start 2026-02-27 22:00"),
    (PUBLIC_JP, "days: business-day-after-holiday, cron: '0 5 * * *', finish_by: '09:00 +7 days'",
     "the run expected 2026-04-30 05:00 would be due 2026-05-07 09:00, after the next start 2026-05-07 05:00"),
    # 1 to 3 January are bank holidays and the 4th a Sunday: the first run is on the 5th
    ("jp: {country: JP, categories: [public, bank]}", "cron: '0 22 * * *', finish_by: '23:00 +1 day'",
     "the run expected 2026-01-05 22:00 would be due 2026-01-06 23:00, after the next start 2026-01-06 22:00"),
    # 1 January is a public holiday: the first run is on Friday 2nd, followed by Monday's
    (PUBLIC_JP, "cron: '0 22 * * *', finish_by: '23:00 +3 days'",
     "the run expected 2026-01-02 22:00 would be due 2026-01-05 23:00, after the next start 2026-01-05 22:00"),
])
def test_a_deadline_the_next_kept_start_would_hide_is_refused_naming_a_business_day(
        calendars: str, schedule: str, expected: str) -> None:
    (error,) = errors_of(one_batch(f"{{{schedule}, timezone: Asia/Tokyo, calendar: jp}}", calendars))
    assert f"comes too late: {expected}: a deadline must come at least 5 minutes before" in error


def test_a_bad_cron_with_finish_by_is_reported_once() -> None:
    (error,) = errors_of(one_batch('{cron: "0 25 * * *", finish_by: "01:00"}'))
    assert error.startswith("conf.yml:5: batches.settle.schedule.cron: ")


EVERY_DAY = "[mon, tue, wed, thu, fri, sat, sun]"


@pytest.mark.parametrize(("calendar", "schedule", "expected"), [
    (f"c: {{weekend: {EVERY_DAY}}}", '{cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: c}',
     "conf.yml:5: batches.settle.schedule.calendar: calendar 'c' with days 'every-business-day' keeps none of the "
     "cron's starts in the 400 days from 2026-01-01, so the batch would never be expected (of the 400 days the cron "
     "fires on, 400 weekend; its weekend is every day of the week)"),
    ("c: {}", '{cron: "0 2 * * 6", timezone: Asia/Tokyo, calendar: c}',
     "conf.yml:5: batches.settle.schedule.calendar: calendar 'c' with days 'every-business-day' keeps none of the "
     "cron's starts in the 400 days from 2026-01-01, so the batch would never be expected (of the 57 days the cron "
     "fires on, 57 weekend; the cron fires only on sat, which the calendar keeps as weekend)"),
    ("c: {}", '{cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: c, days: business-day-after-holiday}',
     "conf.yml:5: batches.settle.schedule.days: calendar 'c' with days 'business-day-after-holiday' keeps none of "
     "the cron's starts in the 400 days from 2026-01-01, so the batch would never be expected (of the 400 days the "
     "cron fires on, 114 weekend, 286 not-picked; business-day-after-holiday needs a holiday or a closed date: give "
     "the calendar a country or closed dates)"),
    ("c: {country: JP}", '{cron: "0 2 15 * *", timezone: Asia/Tokyo, calendar: c, days: first-business-day-of-month}',
     "conf.yml:5: batches.settle.schedule.days: calendar 'c' with days 'first-business-day-of-month' keeps none of "
     "the cron's starts in the 400 days from 2026-01-01, so the batch would never be expected (of the 13 days the "
     "cron fires on, 4 weekend, 9 not-picked)"),
    ("c: {country: JP}", '{cron: "0 2 29 2 *", timezone: Asia/Tokyo, calendar: c}',
     "conf.yml:5: batches.settle.schedule.calendar: calendar 'c' with days 'every-business-day' keeps none of the "
     "cron's starts in the 400 days from 2026-01-01, so the batch would never be expected (the cron does not fire "
     "in them, and a schedule with a calendar looks 400 days ahead at most)"),
    (f"c: {{weekend: {EVERY_DAY}, open: [2026-05-09, 2029-05-05]}}",  # Saturdays; the cron fires on Mondays
     '{cron: "0 2 * * 1", timezone: Asia/Tokyo, calendar: c}',
     "conf.yml:5: batches.settle.schedule.calendar: calendar 'c' with days 'every-business-day' keeps none of the "
     "cron's starts in the 400 days from 2026-01-01 nor on its open dates, so the batch would never be expected "
     "(of the 57 days the cron fires on, 57 weekend; its weekend is every day of the week)"),
])
def test_a_calendar_schedule_that_never_starts_is_refused(calendar: str, schedule: str, expected: str) -> None:
    assert errors_of(one_batch(schedule, calendar)) == [expected]


@pytest.mark.parametrize(("calendar", "schedule"), [
    # open dates only, one of them a Monday years ahead: the batch runs then
    (f"c: {{weekend: {EVERY_DAY}, open: [2029-05-07]}}", '{cron: "0 2 * * 1", timezone: Asia/Tokyo, calendar: c}'),
    (f"c: {{weekend: {EVERY_DAY}, open: [2026-12-01]}}", '{cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: c}'),
    ("c: {closed: [2026-03-02]}",
     '{cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: c, days: business-day-after-holiday}'),
    ("c: {weekend: [sun]}", '{cron: "0 2 * * 6", timezone: Asia/Tokyo, calendar: c}'),
])
def test_a_calendar_schedule_with_a_start_loads(calendar: str, schedule: str) -> None:
    load(one_batch(schedule, calendar))


def test_the_config_and_the_calendar_name_the_same_rules_and_weekdays() -> None:
    assert get_args(config.DayRule) == get_args(business_calendar.DayRule)
    assert get_args(config.Weekday) == business_calendar.WEEKDAYS


# --- check-config --explain -----------------------------------------------------------------------------

EXPLAINED = """\
    calendars:
      jp-bank: {country: JP, categories: [public, bank]}
    batches:
      settle:
        schedule: {cron: "0 2 * * *", timezone: Asia/Tokyo, calendar: jp-bank, finish_by: '06:00'}
      month-end:
        schedule: {cron: "0 22 * * *", timezone: Asia/Tokyo, calendar: jp-bank, days: last-business-day-of-month,
                   finish_by: '01:30 +1 day'}
      plain:
        schedule: {cron: "0 1 * * *", timezone: America/New_York, finish_by: '02:30'}
      bare:
        schedule: {cron: "0 1 * * *"}
    """
NOW = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)  # 12:00 on Friday 1 May in Tokyo, the eve of Golden Week


def test_explain_lists_the_next_starts_deadlines_and_skipped_days() -> None:
    text = explain(load(EXPLAINED), "settle", clock=NOW.timestamp)
    assert text.splitlines()[2:11] == [
        "-- calendar jp-bank, days every-business-day; finish_by '06:00'; the next 10 expected starts after "
        "2026-05-01 Fri 12:00 +0900:",
        "--   skipped 2026-05-02 Sat (weekend)",
        "--   skipped 2026-05-03 Sun (holiday: Constitution Day)",
        "--   skipped 2026-05-04 Mon (holiday: Greenery Day)",
        "--   skipped 2026-05-05 Tue (holiday: Children's Day)",
        "--   skipped 2026-05-06 Wed (holiday: Substitute Holiday)",
        "--   start 2026-05-07 Thu 02:00 +0900, finish by 2026-05-07 Thu 06:00 +0900",
        "--   start 2026-05-08 Fri 02:00 +0900, finish by 2026-05-08 Fri 06:00 +0900",
        "--   skipped 2026-05-09 Sat to 2026-05-10 Sun (2 weekend)",
    ]
    assert sum(line.startswith("--   start ") for line in text.splitlines()) == 10


def test_explain_tells_runs_of_routine_skips_in_one_line() -> None:
    lines = explain(load(EXPLAINED), "month-end", clock=NOW.timestamp).splitlines()
    assert "--   skipped 2026-05-07 Thu to 2026-05-28 Thu (16 not-picked, 6 weekend)" in lines
    assert "--   start 2026-05-29 Fri 22:00 +0900, finish by 2026-05-30 Sat 01:30 +0900" in lines
    assert "--   start 2026-12-30 Wed 22:00 +0900, finish by 2026-12-31 Thu 01:30 +0900" in lines  # 31st: closed
    assert "--   skipped 2026-12-31 Thu (holiday: Bank Holiday)" in lines
    assert lines[-1] == "--   start 2027-02-26 Fri 22:00 +0900, finish by 2027-02-27 Sat 01:30 +0900"


def test_explain_without_a_calendar_lists_starts_and_deadlines_only_with_finish_by() -> None:
    loaded = load(EXPLAINED)
    plain = explain(loaded, "plain", clock=datetime(2026, 3, 6, 12, tzinfo=UTC).timestamp).splitlines()
    assert "--   start 2026-03-08 Sun 01:00 -0500, finish by 2026-03-08 Sun 03:30 -0400" in plain
    bare = explain(loaded, "bare", clock=NOW.timestamp).splitlines()
    assert not any("expected starts" in line for line in bare)


def test_explain_shows_the_deadline_of_a_start_the_spring_forward_jump_moved() -> None:
    loaded = load("""\
        batches:
          tight:
            schedule: {cron: "30 2 * * *", timezone: Europe/Berlin, finish_by: '03:00'}
        """)
    lines = explain(loaded, "tight", clock=datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp).splitlines()
    assert "--   start 2026-03-28 Sat 02:30 +0100, finish by 2026-03-28 Sat 03:00 +0100" in lines
    # 02:30 never came: the cron starts the run at 03:00 CEST, due 30 minutes later as on other nights
    assert "--   start 2026-03-29 Sun 03:00 +0200, finish by 2026-03-29 Sun 03:30 +0200" in lines
    assert "--   start 2026-03-30 Mon 02:30 +0200, finish by 2026-03-30 Mon 03:00 +0200" in lines
