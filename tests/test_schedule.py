"""Schedule maths: previous and next fire times of crontab expressions, at fixed instants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_exporter.schedule import MAX_LOOKBACK, CronSchedule, ScheduleError

UTC = UTC
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


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


# --- DST ---------------------------------------------------------------------------------------


def test_new_york_spring_forward_runs_the_missing_half_hour_an_hour_late() -> None:
    # 2024-03-10 02:00 EST jumps to 03:00 EDT; 02:30 does not exist and the job fires at 03:30 EDT.
    fire = datetime(2024, 3, 10, 3, 30, tzinfo=NEW_YORK)
    assert fire == utc(2024, 3, 10, 7, 30)
    assert around("30 2 * * *", "America/New_York", utc(2024, 3, 10, 7, 10)) == (
        utc(2024, 3, 9, 7, 30),
        fire,
    )
    assert around("30 2 * * *", "America/New_York", utc(2024, 3, 10, 7, 45)) == (
        fire,
        datetime(2024, 3, 11, 2, 30, tzinfo=NEW_YORK),
    )


def test_new_york_fall_back_fires_twice() -> None:
    # 2024-11-03 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    first, second = utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6, 30)
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    assert (schedule.previous_fire(utc(2024, 11, 3, 6, 0)), schedule.next_fire(utc(2024, 11, 3, 6, 0))) == (
        first,
        second,
    )
    after_second = utc(2024, 11, 3, 6, 31)
    assert CronSchedule.parse("30 1 * * *", "America/New_York").fires_around(after_second) == (
        second,
        datetime(2024, 11, 4, 1, 30, tzinfo=NEW_YORK),
    )
    assert CronSchedule.parse("30 1 * * *", "America/New_York").previous_fire(second) == second


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


def test_each_skipped_wall_time_fires_as_long_after_the_jump() -> None:
    schedule = CronSchedule.parse("*/15 2 * * *", "America/New_York")
    fires, now = [], utc(2024, 3, 10, 6)
    for _ in range(5):
        fire = schedule.next_fire(now)
        assert fire is not None
        fires.append(fire.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z"))
        now = fire
    assert fires == [
        "03-10 03:00 EDT",
        "03-10 03:15 EDT",
        "03-10 03:30 EDT",
        "03-10 03:45 EDT",
        "03-11 02:00 EDT",
    ]


def test_half_hour_jump_in_lord_howe() -> None:
    # 2024-10-06 02:00 (+10:30) jumps to 02:30 (+11): 02:10 fires at 02:40, after 02:35.
    schedule = CronSchedule.parse("10,35 2 * * *", "Australia/Lord_Howe")
    assert schedule.fires_around(utc(2024, 10, 5, 15, 37)) == (
        utc(2024, 10, 5, 15, 35),
        utc(2024, 10, 5, 15, 40),
    )


def test_two_hour_fall_back_fires_twice() -> None:
    # Antarctica/Troll goes from +02 back to +00 at 2024-10-27 01:00 UTC.
    schedule = CronSchedule.parse("45 1 * * *", "Antarctica/Troll")
    assert schedule.fires_around(utc(2024, 10, 27, 0, 0)) == (
        utc(2024, 10, 26, 23, 45),
        utc(2024, 10, 27, 1, 45),
    )


def test_london_daily_follows_summer_time() -> None:
    schedule = CronSchedule.parse("0 2 * * *", "Europe/London")
    assert schedule.next_fire(utc(2024, 1, 15, 12)) == utc(2024, 1, 16, 2)  # GMT
    assert schedule.next_fire(utc(2024, 7, 15, 12)) == utc(2024, 7, 16, 1)  # BST
    assert schedule.previous_fire(utc(2024, 7, 15, 12)) == datetime(2024, 7, 15, 2, 0, tzinfo=LONDON)


def test_london_transition_days() -> None:
    schedule = CronSchedule.parse("30 1 * * *", "Europe/London")
    # 2024-03-31 01:00 GMT jumps to 02:00 BST: 01:30 does not exist, fires at 02:30 BST (01:30 UTC).
    assert schedule.fires_around(utc(2024, 3, 31, 1, 0)) == (utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 30))
    # 2024-10-27 02:00 BST falls back to 01:00 GMT: 01:30 BST and 01:30 GMT.
    assert schedule.fires_around(utc(2024, 10, 27, 1, 0)) == (
        utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 27, 1, 30),
    )
    assert schedule.fires_around(utc(2024, 10, 27, 1, 31)) == (
        utc(2024, 10, 27, 1, 30),
        utc(2024, 10, 28, 1, 30),
    )


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
    # From January, the next 01:30 on 3 November is the first of the two (EDT), not the EST one.
    schedule = CronSchedule.parse("30 1 3 11 *", "America/New_York")
    assert schedule.next_fire(utc(2024, 1, 15)) == utc(2024, 11, 3, 5, 30)
    assert CronSchedule.parse("30 1 3 11 *", "America/New_York").previous_fire(utc(2025, 1, 15)) == utc(
        2024, 11, 3, 6, 30
    )


def test_skipped_wall_time_can_be_the_last_fire_of_the_year() -> None:
    # Lord Howe, 6 October 2024: 02:35 (+11) fires at 15:35 UTC, the skipped 02:10 at 15:40 UTC.
    schedule = CronSchedule.parse("10,35 2 6 10 *", "Australia/Lord_Howe")
    assert schedule.previous_fire(utc(2024, 12, 1)) == utc(2024, 10, 5, 15, 40)


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


def brute_force_fires(expression: str, zone: ZoneInfo, low: datetime, high: datetime) -> set[datetime]:
    """Fire times in [low, high], minute by minute over the wall clock: a wall time that happens twice
    fires twice, one skipped by a jump fires with the offset from before the jump (fold=0)."""
    matches, fires = cron_matcher(expression), set[datetime]()
    wall = low.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
    end = high.astimezone(zone).replace(tzinfo=None) + timedelta(hours=3)
    while wall <= end:
        if matches(wall):
            images = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
            real = [u for u in images if u.astimezone(zone).replace(tzinfo=None) == wall]
            fires.update(u for u in real or images[:1] if low <= u <= high)
        wall += timedelta(minutes=1)
    return fires


# (crontab expression, zone, the same schedule as plain APScheduler triggers whose fire times are unioned)
PROPERTY_SCHEDULES = [
    ("0 2 * * *", "Asia/Tokyo", ["0 2 * * *"]),
    ("0 2 * * 1-5", "Asia/Tokyo", ["0 2 * * mon-fri"]),
    ("30 1 * * *", "America/New_York", ["30 1 * * *"]),
    ("30 2 * * *", "America/New_York", ["30 2 * * *"]),
    ("0 0 * * *", "America/New_York", ["0 0 * * *"]),
    ("*/5 * * * *", "America/New_York", ["*/5 * * * *"]),
    ("* 1-2 * * *", "America/New_York", ["* 1-2 * * *"]),
    ("30 1 * * 0", "Europe/London", ["30 1 * * sun"]),
    ("15 */6 * * 6,0", "Europe/London", ["15 */6 * * sat,sun"]),
    ("0 9 1 * 1", "Europe/London", ["0 9 1 * *", "0 9 * * mon"]),
    ("10,35 2 * * *", "Australia/Lord_Howe", ["10,35 2 * * *"]),
    ("0 0 29 2 *", "UTC", ["0 0 29 2 *"]),
]
SHARED = {
    (expression, zone): CronSchedule.parse(expression, zone) for expression, zone, _ in PROPERTY_SCHEDULES
}


def offset_changes(zone: str, year: int) -> list[datetime]:
    tz, changes = ZoneInfo(zone), []
    instant = utc(year, 1, 1)
    while instant.year == year:
        later = instant + timedelta(minutes=30)
        if later.astimezone(tz).utcoffset() != instant.astimezone(tz).utcoffset():
            changes.append(later)
        instant = later
    return changes


TRANSITIONS = [
    t
    for zone in ("America/New_York", "Europe/London", "Australia/Lord_Howe")
    for year in (2024, 2025)
    for t in offset_changes(zone, year)
]
assert len(TRANSITIONS) == 12

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


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(PROPERTY_SCHEDULES), now=instants)
def test_fire_times_bracket_now(case: tuple[str, str, list[str]], now: datetime) -> None:
    expression, zone, aps_expressions = case
    fresh = CronSchedule.parse(expression, zone)
    previous, following = fresh.fires_around(now)

    assert previous is not None and following is not None
    assert previous <= now < following
    # APScheduler, stepping from previous, sees no fire up to now (it can only see fewer than we do).
    triggers = [CronTrigger.from_crontab(text, timezone=ZoneInfo(zone)) for text in aps_expressions]
    assert aps_next(triggers, previous + timedelta(microseconds=1)) > now
    if following - previous <= timedelta(days=3):
        assert brute_force_fires(expression, ZoneInfo(zone), previous, following) == {previous, following}
    at_previous = CronSchedule.parse(expression, zone)
    assert at_previous.next_fire(previous) == following
    assert at_previous.previous_fire(previous) == previous
    assert SHARED[(expression, zone)].fires_around(now) == (previous, following)
