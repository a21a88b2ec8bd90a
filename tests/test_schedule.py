"""Schedule maths: previous and next fire times of crontab expressions, at fixed instants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batch_exporter.schedule import MAX_LOOKBACK, CronSchedule, ScheduleError

UTC = UTC
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
BERLIN = ZoneInfo("Europe/Berlin")
TICK = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def around(expression: str, zone: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    schedule = CronSchedule.parse(expression, zone)
    return schedule.previous_fire(now), schedule.next_fire(now)


# --- a daily schedule in a zone without DST ------------------------------------------------------


def test_daily_tokyo_before_fire_time() -> None:
    now = datetime(2024, 6, 5, 1, 59, tzinfo=TOKYO)
    assert around("0 2 * * *", "Asia/Tokyo", now) == (
        datetime(2024, 6, 4, 2, 0, tzinfo=TOKYO),
        datetime(2024, 6, 5, 2, 0, tzinfo=TOKYO),
    )


def test_daily_tokyo_at_fire_time_counts_as_fired() -> None:
    now = datetime(2024, 6, 5, 2, 0, tzinfo=TOKYO)
    assert around("0 2 * * *", "Asia/Tokyo", now) == (now, datetime(2024, 6, 6, 2, 0, tzinfo=TOKYO))


def test_daily_tokyo_after_fire_time() -> None:
    now = datetime(2024, 6, 5, 2, 0, 0, 1, tzinfo=TOKYO)
    assert around("0 2 * * *", "Asia/Tokyo", now) == (
        datetime(2024, 6, 5, 2, 0, tzinfo=TOKYO),
        datetime(2024, 6, 6, 2, 0, tzinfo=TOKYO),
    )


def test_answers_are_utc_whatever_zone_now_is_given_in() -> None:
    schedule = CronSchedule.parse("0 2 * * *", "Asia/Tokyo")
    in_tokyo = datetime(2024, 6, 5, 12, 0, tzinfo=TOKYO)
    in_utc = in_tokyo.astimezone(UTC)
    previous = schedule.previous_fire(in_tokyo)
    assert previous == utc(2024, 6, 4, 17, 0)
    assert previous is not None and previous.tzinfo is UTC
    assert CronSchedule.parse("0 2 * * *", "Asia/Tokyo").previous_fire(in_utc) == previous


# --- day-of-week: crontab numbering, weekends, the day-of-month / day-of-week OR ------------------


@pytest.mark.parametrize(
    ("weekday_field", "weekday"),
    [
        ("1", "Monday"),
        ("mon", "Monday"),
        ("MON", "Monday"),
        ("0", "Sunday"),
        ("7", "Sunday"),
        ("sun", "Sunday"),
        ("6", "Saturday"),
        ("5", "Friday"),
    ],
)
def test_day_of_week_uses_crontab_numbering(weekday_field: str, weekday: str) -> None:
    schedule = CronSchedule.parse(f"0 2 * * {weekday_field}", "UTC")
    following = schedule.next_fire(utc(2024, 6, 5))  # a Wednesday
    assert following is not None and following.strftime("%A") == weekday
    assert following - utc(2024, 6, 5) < timedelta(days=7)


@pytest.mark.parametrize("weekdays", ["1-5", "mon-fri", "1,2,3,4,5", "1-5/1"])
def test_weekday_schedule_skips_the_weekend(weekdays: str) -> None:
    friday = datetime(2024, 6, 7, 2, 0, tzinfo=TOKYO)
    monday = datetime(2024, 6, 10, 2, 0, tzinfo=TOKYO)
    for now in (
        datetime(2024, 6, 8, 9, 0, tzinfo=TOKYO),
        datetime(2024, 6, 9, 23, 59, tzinfo=TOKYO),
        datetime(2024, 6, 10, 1, 59, tzinfo=TOKYO),
    ):
        assert around(f"0 2 * * {weekdays}", "Asia/Tokyo", now) == (friday, monday)


def test_weekend_range_through_sunday() -> None:
    schedule = CronSchedule.parse("0 12 * * sat-sun", "UTC")
    fires = [schedule.next_fire(utc(2024, 6, day)) for day in range(3, 10)]
    assert {fire.strftime("%A") for fire in fires if fire is not None} == {"Saturday", "Sunday"}
    assert CronSchedule.parse("0 12 * * 6-7", "UTC").next_fire(utc(2024, 6, 9, 13)) == utc(2024, 6, 15, 12)


def test_day_of_week_step_counts_from_sunday() -> None:
    schedule = CronSchedule.parse("0 0 * * */2", "UTC")  # Sunday, Tuesday, Thursday, Saturday
    now, days = utc(2024, 6, 2), []
    for _ in range(5):
        fire = schedule.next_fire(now)
        assert fire is not None
        days.append(fire.strftime("%a"))
        now = fire
    assert days == ["Tue", "Thu", "Sat", "Sun", "Tue"]


def test_restricted_day_of_month_and_day_of_week_fire_on_either() -> None:
    schedule = CronSchedule.parse("0 0 1 * 1", "UTC")  # the 1st, and every Monday
    assert schedule.next_fire(utc(2024, 5, 28)) == utc(2024, 6, 1)  # a Saturday, the 1st
    assert schedule.next_fire(utc(2024, 6, 1)) == utc(2024, 6, 3)  # the next Monday
    assert schedule.previous_fire(utc(2024, 6, 2)) == utc(2024, 6, 1)


def test_star_step_day_of_month_keeps_both_conditions() -> None:
    # crontab ANDs the two day fields when either starts with '*': odd days that are Mondays.
    schedule = CronSchedule.parse("0 0 */2 * mon", "UTC")
    assert schedule.next_fire(utc(2024, 6, 1)) == utc(2024, 6, 3)
    assert schedule.next_fire(utc(2024, 6, 3)) == utc(2024, 6, 17)


# --- DST: cron's rules (fixed-time jobs once, wildcard jobs by real time) -----------------------------


def walk_forward(schedule: CronSchedule, low: datetime, high: datetime) -> list[datetime]:
    """Fire times in [low, high], stepping with next_fire."""
    fires: list[datetime] = []
    fire = schedule.next_fire(low - TICK)
    while fire is not None and fire <= high:
        fires.append(fire)
        fire = schedule.next_fire(fire)
    return fires


def walk_backward(schedule: CronSchedule, low: datetime, high: datetime) -> list[datetime]:
    """Fire times in [low, high], stepping back with previous_fire (returned oldest first)."""
    fires: list[datetime] = []
    fire = schedule.previous_fire(high)
    while fire is not None and fire >= low:
        fires.append(fire)
        fire = schedule.previous_fire(fire - TICK)
    return fires[::-1]


@dataclass(frozen=True)
class ChangeDay:
    """A DST change, and when daily schedules fire the day before, on the day and the day after."""

    name: str
    zone: str
    change: datetime  # the first instant with the new UTC offset
    fires: dict[str, tuple[datetime, datetime, datetime]]


# 2026, in UTC. Berlin: 02:00 CET -> 03:00 CEST on 29 March, 03:00 CEST -> 02:00 CET on 25 October.
# New York: 02:00 EST -> 03:00 EDT on 8 March, 02:00 EDT -> 01:00 EST on 1 November.
CHANGE_DAYS = [
    ChangeDay(
        "berlin-spring",
        "Europe/Berlin",
        utc(2026, 3, 29, 1),
        {
            "0 2 * * *": (utc(2026, 3, 28, 1), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)),
            "30 2 * * *": (utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),  # 03:00 CEST
            "30 1 * * *": (utc(2026, 3, 28, 0, 30), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 23, 30)),
        },
    ),
    ChangeDay(
        "berlin-autumn",
        "Europe/Berlin",
        utc(2026, 10, 25, 1),
        {
            "0 2 * * *": (utc(2026, 10, 24, 0), utc(2026, 10, 25, 0), utc(2026, 10, 26, 1)),  # CEST, not CET
            "30 2 * * *": (utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
            "30 1 * * *": (utc(2026, 10, 23, 23, 30), utc(2026, 10, 24, 23, 30), utc(2026, 10, 26, 0, 30)),
        },
    ),
    ChangeDay(
        "new-york-spring",
        "America/New_York",
        utc(2026, 3, 8, 7),
        {
            "0 2 * * *": (utc(2026, 3, 7, 7), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6)),
            "30 2 * * *": (utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),  # 03:00 EDT
            "30 1 * * *": (utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)),
        },
    ),
    ChangeDay(
        "new-york-autumn",
        "America/New_York",
        utc(2026, 11, 1, 6),
        {
            "0 2 * * *": (utc(2026, 10, 31, 6), utc(2026, 11, 1, 7), utc(2026, 11, 2, 7)),
            "30 2 * * *": (utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)),
            "30 1 * * *": (utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),  # EDT, not EST
        },
    ),
]
# Offsets from the change: before it, inside the hour a fall back repeats, and after it.
PROBES = [
    *(timedelta(minutes=m) for m in (-22 * 60, -90, -61, -60, -31, -30, -1, 0, 1, 15, 29, 30, 31, 45, 60, 61, 90)),
    *(timedelta(hours=h) for h in (3, 12, 22)),
    -TICK,
    TICK,
]


@pytest.mark.parametrize("day", CHANGE_DAYS, ids=lambda day: day.name)
def test_daily_jobs_before_inside_and_after_each_change(day: ChangeDay) -> None:
    for expression, fires in day.fires.items():
        polled = CronSchedule.parse(expression, day.zone)
        assert walk_forward(polled, fires[0], fires[2]) == list(fires), expression
        assert walk_backward(polled, fires[0], fires[2]) == list(fires), expression
        for probe in PROBES:
            now = day.change + probe
            expected = (max(f for f in fires if f <= now), min(f for f in fires if f > now))
            assert CronSchedule.parse(expression, day.zone).fires_around(now) == expected, (expression, probe)
            assert polled.fires_around(now) == expected, (expression, probe)  # polled out of order


def test_issue_examples_in_berlin() -> None:
    # `0 2 * * *` on the autumn change: cron runs once, at 02:00 CEST; 02:00 CET is no missed run.
    # (Ambiguous local times never compare equal across zones, hence UTC.)
    daily = CronSchedule.parse("0 2 * * *", "Europe/Berlin")
    cest_two, cet_two = (datetime(2026, 10, 25, 2, 0, fold=f, tzinfo=BERLIN).astimezone(UTC) for f in (0, 1))
    assert (cest_two, cet_two) == (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1))
    assert daily.previous_fire(cet_two + timedelta(minutes=30)) == cest_two
    assert daily.next_fire(cet_two - timedelta(minutes=1)) == datetime(2026, 10, 26, 2, 0, tzinfo=BERLIN)
    # `30 2 * * *` on the spring change: cron runs it right after the jump, at 03:00 CEST.
    half_past = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    after_jump = datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert half_past.next_fire(datetime(2026, 3, 29, 1, 59, tzinfo=BERLIN)) == after_jump
    assert half_past.previous_fire(datetime(2026, 3, 29, 3, 29, tzinfo=BERLIN)) == after_jump


@pytest.mark.parametrize(
    ("zone_name", "spring", "autumn", "repeated_hour"),
    [
        ("Europe/Berlin", utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), 2),
        ("America/New_York", utc(2026, 3, 8, 7), utc(2026, 11, 1, 6), 1),
    ],
)
def test_wildcard_jobs_follow_real_time(zone_name: str, spring: datetime, autumn: datetime, repeated_hour: int) -> None:
    zone = ZoneInfo(zone_name)
    every_quarter = CronSchedule.parse("*/15 * * * *", zone_name)
    for change in (spring, autumn):
        low, high = change - timedelta(hours=2), change + timedelta(hours=2)
        quarters = [low + timedelta(minutes=15 * n) for n in range(17)]
        assert walk_forward(every_quarter, low, high) == quarters
        assert walk_backward(every_quarter, low, high) == quarters
        assert every_quarter.fires_around(change + timedelta(minutes=20)) == (
            change + timedelta(minutes=15),
            change + timedelta(minutes=30),
        )
    # A wildcard minute makes a wildcard job even with a fixed hour: the skipped 02:xx never runs...
    day = spring.astimezone(zone).date()
    assert CronSchedule.parse("*/15 2 * * *", zone_name).fires_around(spring + timedelta(hours=2)) == (
        datetime.combine(day - timedelta(days=1), time(2, 45), zone),
        datetime.combine(day + timedelta(days=1), time(2, 0), zone),
    )
    # ...and the hour a fall back repeats runs in both passes, as does @hourly.
    repeated = CronSchedule.parse(f"*/15 {repeated_hour} * * *", zone_name)
    passes = [autumn + timedelta(minutes=15 * n) for n in range(-4, 4)]
    assert walk_forward(repeated, autumn - timedelta(hours=2), autumn + timedelta(hours=2)) == passes
    assert walk_backward(repeated, autumn - timedelta(hours=2), autumn + timedelta(hours=2)) == passes
    hourly = CronSchedule.parse("@hourly", zone_name)
    assert hourly.fires_around(autumn + timedelta(minutes=1)) == (autumn, autumn + timedelta(hours=1))
    assert hourly.fires_around(autumn - timedelta(minutes=1)) == (autumn - timedelta(hours=1), autumn)


def test_new_york_spring_forward_runs_the_skipped_half_hour_at_the_jump() -> None:
    # 2024-03-10 02:00 EST jumps to 03:00 EDT; 02:30 does not exist and the job fires at 03:00 EDT.
    fire = datetime(2024, 3, 10, 3, 0, tzinfo=NEW_YORK)
    assert fire == utc(2024, 3, 10, 7, 0)
    assert around("30 2 * * *", "America/New_York", utc(2024, 3, 10, 6, 59)) == (utc(2024, 3, 9, 7, 30), fire)
    assert around("30 2 * * *", "America/New_York", utc(2024, 3, 10, 7, 10)) == (
        fire,
        datetime(2024, 3, 11, 2, 30, tzinfo=NEW_YORK),
    )


def test_new_york_fall_back_fires_once_at_the_first_occurrence() -> None:
    # 2024-11-03 02:00 EDT falls back to 01:00 EST; 01:30 happens twice and fires at 01:30 EDT only.
    first, second = utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)
    following = datetime(2024, 11, 4, 1, 30, tzinfo=NEW_YORK)
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    assert schedule.fires_around(utc(2024, 11, 3, 6, 0)) == (first, following)
    assert CronSchedule.parse("30 1 * * *", "America/New_York").fires_around(second) == (first, following)
    assert CronSchedule.parse("30 1 * * *", "America/New_York").next_fire(first) == following


def test_new_york_midnight_after_spring_forward_is_not_skipped() -> None:
    # APScheduler 3.11 stepping in the zone itself goes from 2024-03-10 00:00 EST to 03-12.
    schedule = CronSchedule.parse("0 0 * * *", "America/New_York")
    midnight_edt = datetime(2024, 3, 11, 0, 0, tzinfo=NEW_YORK)
    assert schedule.fires_around(utc(2024, 3, 10, 6)) == (
        datetime(2024, 3, 10, 0, 0, tzinfo=NEW_YORK),
        midnight_edt,
    )
    assert (
        CronSchedule.parse("0 0 * * *", "America/New_York").previous_fire(utc(2024, 3, 11, 12))
        == midnight_edt
    )


def test_skipped_fixed_times_collapse_into_one_fire_at_the_jump() -> None:
    schedule = CronSchedule.parse("0,15,30,45 2 * * *", "America/New_York")
    assert walk_forward(schedule, utc(2024, 3, 10, 6), utc(2024, 3, 11, 6, 59)) == [
        datetime(2024, 3, 10, 3, 0, tzinfo=NEW_YORK),
        *(datetime(2024, 3, 11, 2, minute, tzinfo=NEW_YORK) for minute in (0, 15, 30, 45)),
    ]
    # The jump's own wall time matching too still makes one run.
    assert CronSchedule.parse("0,30 2,3 * * *", "America/New_York").fires_around(utc(2024, 3, 10, 7, 10)) == (
        utc(2024, 3, 10, 7, 0),
        utc(2024, 3, 10, 7, 30),
    )


def test_half_hour_jump_in_lord_howe() -> None:
    # 2024-10-06 02:00 (+10:30) jumps to 02:30 (+11): 02:10 fires at the jump, then 02:35.
    schedule = CronSchedule.parse("10,35 2 * * *", "Australia/Lord_Howe")
    assert schedule.fires_around(utc(2024, 10, 5, 15, 32)) == (utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 15, 35))
    assert schedule.fires_around(utc(2024, 10, 5, 15, 37)) == (utc(2024, 10, 5, 15, 35), utc(2024, 10, 6, 15, 10))


def test_two_hour_fall_back_fires_once() -> None:
    # Antarctica/Troll goes from +02 back to +00 at 2024-10-27 01:00 UTC: 01:45 fires at 01:45 +02.
    schedule = CronSchedule.parse("45 1 * * *", "Antarctica/Troll")
    assert schedule.fires_around(utc(2024, 10, 27, 2, 0)) == (
        utc(2024, 10, 26, 23, 45),
        utc(2024, 10, 28, 1, 45),
    )


def test_london_daily_follows_summer_time() -> None:
    schedule = CronSchedule.parse("0 2 * * *", "Europe/London")
    assert schedule.next_fire(utc(2024, 1, 15, 12)) == utc(2024, 1, 16, 2)  # GMT
    assert schedule.next_fire(utc(2024, 7, 15, 12)) == utc(2024, 7, 16, 1)  # BST
    assert schedule.previous_fire(utc(2024, 7, 15, 12)) == datetime(2024, 7, 15, 2, 0, tzinfo=LONDON)


def test_london_transition_days() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "Europe/London")
    # 2024-03-31 01:00 GMT jumps to 02:00 BST: 01:30 does not exist, fires at 02:00 BST (01:00 UTC).
    assert schedule.fires_around(utc(2024, 3, 31, 0, 59)) == (utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 0))
    assert schedule.fires_around(utc(2024, 3, 31, 1, 0)) == (utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30))
    # 2024-10-27 02:00 BST falls back to 01:00 GMT: 01:30 BST only.
    assert schedule.fires_around(utc(2024, 10, 27, 1, 0)) == (utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30))
    assert schedule.fires_around(utc(2024, 10, 27, 1, 31)) == (utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30))


# --- dense, sparse and shorthand schedules ---------------------------------------------------------


def test_every_five_minutes() -> None:
    schedule = CronSchedule.parse("*/5 * * * *", "Europe/London")
    assert schedule.fires_around(utc(2024, 6, 8, 12, 7, 30)) == (
        utc(2024, 6, 8, 12, 5),
        utc(2024, 6, 8, 12, 10),
    )
    assert schedule.fires_around(utc(2024, 6, 8, 12, 10)) == (
        utc(2024, 6, 8, 12, 10),
        utc(2024, 6, 8, 12, 15),
    )
    assert schedule.fires_around(utc(2024, 6, 8, 23, 59, 59)) == (
        utc(2024, 6, 8, 23, 55),
        utc(2024, 6, 9, 0, 0),
    )


def test_leap_day_schedule_reaches_back_years() -> None:
    assert around("0 0 29 2 *", "UTC", utc(2025, 6, 1)) == (utc(2024, 2, 29), utc(2028, 2, 29))
    # 2100 is not a leap year: an eight-year gap.
    assert around("0 0 29 2 *", "UTC", utc(2101, 6, 1)) == (utc(2096, 2, 29), utc(2104, 2, 29))


def test_every_minute_of_leap_day_finds_the_last_minute() -> None:
    # 1,440 fire times in one day, then four years of nothing.
    now = utc(2024, 3, 1, 0, 0, 30)
    assert around("* * 29 2 *", "UTC", now) == (utc(2024, 2, 29, 23, 59), utc(2028, 2, 29))
    assert around("* * 29 2 *", "UTC", utc(2024, 2, 29, 13, 45, 10)) == (
        utc(2024, 2, 29, 13, 45),
        utc(2024, 2, 29, 13, 46),
    )


def test_long_after_a_dense_cluster_finds_its_last_minute() -> None:
    assert around("* * 29 2 *", "UTC", utc(2024, 3, 1, 12)) == (utc(2024, 2, 29, 23, 59), utc(2028, 2, 29))
    assert around("* 9 * * *", "Asia/Tokyo", datetime(2024, 6, 5, 23, 0, tzinfo=TOKYO)) == (
        datetime(2024, 6, 5, 9, 59, tzinfo=TOKYO),
        datetime(2024, 6, 6, 9, 0, tzinfo=TOKYO),
    )


def test_summer_time_months_away_is_found_between_winters() -> None:
    # The only 01:30 on 3 November 2024 that fires is the first of the two (EDT), from either side.
    schedule = CronSchedule.parse("30 1 3 11 *", "America/New_York")
    assert schedule.next_fire(utc(2024, 1, 15)) == utc(2024, 11, 3, 5, 30)
    assert CronSchedule.parse("30 1 3 11 *", "America/New_York").previous_fire(utc(2025, 1, 15)) == utc(
        2024, 11, 3, 5, 30
    )


def test_a_fire_at_the_jump_can_be_the_last_of_the_year() -> None:
    # Lord Howe, 6 October 2024: the skipped 02:10 fires at the jump, 02:30 (+11), 15:30 UTC.
    schedule = CronSchedule.parse("10 2 6 10 *", "Australia/Lord_Howe")
    assert schedule.previous_fire(utc(2024, 12, 1)) == utc(2024, 10, 5, 15, 30)
    assert schedule.next_fire(utc(2024, 1, 1)) == utc(2024, 10, 5, 15, 30)


def test_previous_fire_is_none_beyond_the_lookback() -> None:
    # 29 February that is also a Sunday: 2004, then 2032.
    schedule = CronSchedule.parse("0 0 29 2 */7", "UTC")
    assert schedule.fires_around(utc(2019, 6, 1)) == (utc(2004, 2, 29), utc(2032, 2, 29))
    now = utc(2031, 6, 1)  # same instance: the remembered answer must not outlive the lookback
    assert now - utc(2004, 2, 29) > MAX_LOOKBACK
    assert schedule.fires_around(now) == (None, utc(2032, 2, 29))
    assert CronSchedule.parse("0 0 29 2 */7", "UTC").fires_around(now) == (None, utc(2032, 2, 29))


@pytest.mark.parametrize(
    ("macro", "expected_next"),
    [
        ("@hourly", utc(2024, 6, 5, 11)),
        ("@daily", utc(2024, 6, 6)),
        ("@midnight", utc(2024, 6, 6)),
        ("@weekly", utc(2024, 6, 9)),
        ("@monthly", utc(2024, 7, 1)),
        ("@yearly", utc(2025, 1, 1)),
    ],
)
def test_shorthand_schedules(macro: str, expected_next: datetime) -> None:
    assert CronSchedule.parse(macro, "UTC").next_fire(utc(2024, 6, 5, 10, 30)) == expected_next


def test_or_of_two_fields_drops_the_impossible_side() -> None:
    # 30 February never happens; cron still fires on Mondays in February.
    assert around("0 0 30 2 mon", "UTC", utc(2024, 6, 1)) == (utc(2024, 2, 26), utc(2025, 2, 3))


# --- repeated polls ------------------------------------------------------------------------------


def test_repeated_polls_move_on_when_a_fire_time_passes_and_when_time_goes_back() -> None:
    schedule = CronSchedule.parse("0 2 * * *", "Asia/Tokyo")
    day = [datetime(2024, 6, d, 2, 0, tzinfo=TOKYO) for d in (4, 5, 6)]
    assert schedule.fires_around(day[1] - timedelta(seconds=30)) == (day[0], day[1])
    assert schedule.fires_around(day[1] - timedelta(seconds=1)) == (day[0], day[1])
    assert schedule.fires_around(day[1]) == (day[1], day[2])
    assert schedule.fires_around(day[1] - timedelta(hours=30)) == (
        datetime(2024, 6, 3, 2, 0, tzinfo=TOKYO),
        day[0],
    )


def test_schedules_compare_by_expression_and_zone() -> None:
    assert CronSchedule.parse("0 2 * * *", "Asia/Tokyo") == CronSchedule("0 2 * * *", TOKYO)
    assert hash(CronSchedule.parse("0 2 * * *", "Asia/Tokyo")) == hash(CronSchedule("0 2 * * *", TOKYO))
    assert CronSchedule.parse("0 2 * * *", "Asia/Tokyo") != CronSchedule.parse("0 2 * * *", "UTC")


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        ("0 2 * *", ["4 field(s)", "expected 5", "minute hour day-of-month month day-of-week"]),
        ("0 2 * * * *", ["6 field(s)", "expected 5"]),
        ("", ["0 field(s)"]),
        ("@reboot", ["1 field(s)", "@daily"]),
        ("60 2 * * *", ["minute field '60'", "expected 0-59"]),
        ("0 24 * * *", ["hour field '24'", "expected 0-23"]),
        ("0 2 32 * *", ["day-of-month field '32'", "expected 1-31"]),
        ("0 2 0 * *", ["day-of-month field '0'", "expected 1-31"]),
        ("0 2 * 13 *", ["month field '13'", "expected 1-12 or jan-dec"]),
        ("0 2 * * 8", ["day-of-week field '8'", "0 and 7 are Sunday"]),
        ("0 2 * * funday", ["day-of-week field 'funday'", "'funday' is not a day"]),
        ("0 2 * * fri-mon", ["runs backwards", "5-7"]),
        ("0 2 * * */0", ["step must be at least 1"]),
        ("*/0 2 * * *", ["minute field '*/0'"]),
        ("x 2 * * *", ["minute field 'x'"]),
        ("0 2 L * *", ["day-of-month field 'L'"]),
        ("0 0 30 2 *", ["never fires", "day-of-month '30'", "month '2'"]),
        ("0 0 31 4,6,9,11 *", ["never fires"]),
    ],
)
def test_bad_expressions_say_what_was_expected(expression: str, fragments: list[str]) -> None:
    with pytest.raises(ScheduleError) as caught:
        CronSchedule.parse(expression, "UTC")
    message = str(caught.value)
    assert repr(expression) in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "zone", ["Nowhere/City", "asia/tokyo", "", "Asia", "../etc/passwd", "/etc/passwd", "zone.tab"]
)
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone .*expected an IANA name"):
        CronSchedule.parse("0 2 * * *", zone)


def test_time_zone_must_be_a_zoneinfo() -> None:
    with pytest.raises(ScheduleError, match="ZoneInfo"):
        CronSchedule("0 2 * * *", "Asia/Tokyo")  # type: ignore[arg-type]


def test_schedule_errors_are_value_errors() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize("method", ["previous_fire", "next_fire", "fires_around"])
def test_naive_now_is_rejected(method: str) -> None:
    schedule = CronSchedule.parse("0 2 * * *", "Asia/Tokyo")
    with pytest.raises(ValueError, match="timezone-aware"):
        getattr(schedule, method)(datetime(2024, 6, 5, 2, 0))


# --- properties ----------------------------------------------------------------------------------


def cron_matcher(expression: str) -> Callable[[datetime], bool]:
    """A deliberately plain crontab matcher (numbers only) to check the module against."""

    def values(text: str, low: int, high: int) -> set[int]:
        found: set[int] = set()
        for item in text.split(","):
            span, _, step = item.partition("/")
            first, last = (low, high) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
            found.update(range(first, last + 1, int(step or 1)))
        return found

    minute, hour, day, month, weekday = expression.split()
    minutes, hours, months = values(minute, 0, 59), values(hour, 0, 23), values(month, 1, 12)
    days, weekdays = values(day, 1, 31), {d % 7 for d in values(weekday, 0, 7)}
    either = not day.startswith("*") and not weekday.startswith("*")

    def matches(wall: datetime) -> bool:
        if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            return False
        on_day, on_weekday = wall.day in days, wall.isoweekday() % 7 in weekdays
        return (on_day or on_weekday) if either else (on_day and on_weekday)

    return matches


def cron_fires(expression: str, zone: ZoneInfo, low: datetime, high: datetime) -> set[datetime]:
    """Fire times in [low, high] as cron's main loop (Vixie cron, cronie) finds them, waking each real
    minute: when the wall clock jumps forward it runs wildcard jobs for the new minute and fixed-time
    jobs for every minute skipped; when it goes back, only wildcard jobs until it has caught up."""
    matches, fires = cron_matcher(expression), set[datetime]()
    minute_field, hour_field = expression.split()[:2]
    wildcard = minute_field.startswith("*") or hour_field.startswith("*")
    minute = timedelta(minutes=1)
    instant = low.replace(second=0, microsecond=0) - timedelta(hours=3)
    done = instant.astimezone(zone).replace(tzinfo=None)  # the latest wall minute jobs were run for
    while instant < high:
        instant += minute
        wall = instant.astimezone(zone).replace(tzinfo=None)
        if wall - done > 5 * minute:
            if wildcard and matches(wall):
                fires.add(instant)
            while done < wall:
                done += minute
                if not wildcard and matches(done):
                    fires.add(instant)
        elif wall > done:
            while done < wall:
                done += minute
                if matches(done):
                    fires.add(instant)
        elif wildcard and matches(wall):
            fires.add(instant)
    return {fire for fire in fires if low <= fire <= high}


def offset_changes(zone: str, year: int) -> list[datetime]:
    """The instants in `year` at which `zone` changes its UTC offset (they are whole minutes)."""
    tz, changes = ZoneInfo(zone), list[datetime]()
    day = utc(year, 1, 1)
    while day.year == year:
        following = day + timedelta(days=1)
        old = day.astimezone(tz).utcoffset()
        if following.astimezone(tz).utcoffset() != old:
            low, high = 0, 24 * 60  # minutes into the day: the old offset at low, the new one at high
            while high - low > 1:
                middle = (low + high) // 2
                if (day + timedelta(minutes=middle)).astimezone(tz).utcoffset() == old:
                    low = middle
                else:
                    high = middle
            changes.append(day + timedelta(minutes=high))
        day = following
    return changes


# (crontab expression, zone, the same schedule as plain APScheduler triggers whose fire times are unioned)
PROPERTY_SCHEDULES = [
    ("0 2 * * *", "Asia/Tokyo", ["0 2 * * *"]),
    ("0 2 * * 1-5", "Asia/Tokyo", ["0 2 * * mon-fri"]),
    ("30 1 * * *", "America/New_York", ["30 1 * * *"]),
    ("30 2 * * *", "America/New_York", ["30 2 * * *"]),
    ("0 0 * * *", "America/New_York", ["0 0 * * *"]),
    ("*/5 * * * *", "America/New_York", ["*/5 * * * *"]),
    ("* 1-2 * * *", "America/New_York", ["* 1-2 * * *"]),
    ("0 2 * * *", "Europe/Berlin", ["0 2 * * *"]),
    ("0,30 1-3 * * *", "Europe/Berlin", ["0,30 1-3 * * *"]),
    ("*/15 * * * *", "Europe/Berlin", ["*/15 * * * *"]),
    ("30 1 * * 0", "Europe/London", ["30 1 * * sun"]),
    ("15 */6 * * 6,0", "Europe/London", ["15 */6 * * sat,sun"]),
    ("0 9 1 * 1", "Europe/London", ["0 9 1 * *", "0 9 * * mon"]),
    ("10,35 2 * * *", "Australia/Lord_Howe", ["10,35 2 * * *"]),
    ("0 0 29 2 *", "UTC", ["0 0 29 2 *"]),
]
SHARED = {
    (expression, zone): CronSchedule.parse(expression, zone) for expression, zone, _ in PROPERTY_SCHEDULES
}

TRANSITIONS = [
    t
    for zone, years in (
        ("America/New_York", (2024, 2025, 2026)),
        ("Europe/London", (2024, 2025)),
        ("Australia/Lord_Howe", (2024, 2025)),
        ("Europe/Berlin", (2026,)),
    )
    for year in years
    for t in offset_changes(zone, year)
]
assert len(TRANSITIONS) == 16

instants = st.one_of(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)),
    st.builds(
        lambda base, offset: base + timedelta(microseconds=offset),
        st.sampled_from(TRANSITIONS),
        st.integers(-30 * 3_600_000_000, 30 * 3_600_000_000),
    ),
)


def aps_next(triggers: list[CronTrigger], instant: datetime) -> datetime:
    """Earliest fire time >= instant by plain APScheduler in the zone, in UTC."""
    fires = [trigger.get_next_fire_time(None, instant) for trigger in triggers]
    return min(fire.astimezone(UTC) for fire in fires if fire is not None)


def near_offset_change(zone: ZoneInfo, instant: datetime) -> bool:
    day = timedelta(days=1)
    return (instant - day).astimezone(zone).utcoffset() != (instant + day).astimezone(zone).utcoffset()


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(PROPERTY_SCHEDULES), now=instants)
def test_fire_times_bracket_now(case: tuple[str, str, list[str]], now: datetime) -> None:
    expression, zone, aps_expressions = case
    fresh = CronSchedule.parse(expression, zone)
    previous, following = fresh.fires_around(now)

    assert previous is not None and following is not None
    assert previous <= now < following
    # APScheduler, stepping from previous, sees no fire up to now (it can only see fewer than we do),
    # except around DST changes, where it has rules of its own.
    triggers = [CronTrigger.from_crontab(text, timezone=ZoneInfo(zone)) for text in aps_expressions]
    aps = aps_next(triggers, previous + TICK)
    assert aps > now or near_offset_change(ZoneInfo(zone), aps)
    if following - previous <= timedelta(days=3):
        assert cron_fires(expression, ZoneInfo(zone), previous, following) == {previous, following}
    at_previous = CronSchedule.parse(expression, zone)
    assert at_previous.next_fire(previous) == following
    assert at_previous.previous_fire(previous) == previous
    assert SHARED[(expression, zone)].fires_around(now) == (previous, following)


DST_ZONES = ("Europe/Berlin", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Antarctica/Troll")
DST_CHANGES = [
    (zone, change) for zone in DST_ZONES for year in range(2005, 2038) for change in offset_changes(zone, year)
]
DST_EXPRESSIONS = [
    "0 2 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "0,30 1-3 * * *",
    "10,35 2 * * 0",
    "*/15 * * * *",
    "*/20 2 * * *",
    "0 * * * *",
]


@settings(max_examples=150, deadline=None)
@given(
    expression=st.sampled_from(DST_EXPRESSIONS),
    change=st.sampled_from(DST_CHANGES),
    start=st.integers(-30 * 3600, 3 * 3600),  # seconds from the change
    length=st.integers(0, 36 * 3600),
)
@example(expression="0 2 * * *", change=("Europe/Berlin", utc(2026, 10, 25, 1)), start=-2 * 3600, length=4 * 3600)
@example(expression="30 2 * * *", change=("America/New_York", utc(2026, 3, 8, 7)), start=-3600, length=7200)
@example(expression="*/20 2 * * *", change=("Europe/Berlin", utc(2026, 3, 29, 1)), start=-3600, length=7200)
def test_walks_forward_and_backward_agree_with_cron_around_dst_changes(
    expression: str, change: tuple[str, datetime], start: int, length: int
) -> None:
    zone, instant = change
    low = instant + timedelta(seconds=start)
    high = low + timedelta(seconds=length)
    schedule = CronSchedule.parse(expression, zone)
    forward = walk_forward(schedule, low, high)
    assert walk_backward(schedule, low, high) == forward  # the same instance: its memo goes backwards too
    assert forward == sorted(cron_fires(expression, ZoneInfo(zone), low, high))


@settings(max_examples=150, deadline=None)
@given(change=st.sampled_from(DST_CHANGES), hour=st.integers(0, 23), minute=st.integers(0, 59))
@example(change=("Europe/Berlin", utc(2026, 10, 25, 1)), hour=2, minute=0)
@example(change=("America/New_York", utc(2026, 11, 1, 6)), hour=1, minute=30)
def test_fixed_time_daily_jobs_fire_once_per_local_day_on_change_days(
    change: tuple[str, datetime], hour: int, minute: int
) -> None:
    zone_name, instant = change
    zone = ZoneInfo(zone_name)
    day = instant.astimezone(zone).date()
    low = datetime.combine(day, time(0), zone)
    high = datetime.combine(day + timedelta(days=1), time(0), zone) - TICK
    schedule = CronSchedule.parse(f"{minute} {hour} * * *", zone_name)
    fires = walk_forward(schedule, low, high)
    assert len(fires) == 1
    assert walk_backward(schedule, low, high) == fires
    wall_time = datetime.combine(day, time(hour, minute), zone)  # fold=0: the first of two
    exists = wall_time.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall_time.replace(tzinfo=None)
    assert fires[0] == (wall_time.astimezone(UTC) if exists else instant)
