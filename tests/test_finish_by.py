"""schedule.finish_by: its forms, its refusals, and the deadline it gives, around DST changes in Berlin and
New York and for a start later in its day than the wall time; the starts of a cron whose deadline would come
too late to be seen passed; then the deadline of the scheduler's planned start (schedule.query)."""
from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.finish_by import (
    MIN_MISSED_WINDOW,
    FinishBy,
    LateDeadline,
    last_fire_of_day,
    late_deadline,
    latest_start_of_day,
)
from batch_exporter.schedule import CronSchedule
from batch_exporter.sources.batchinfo import BatchInfoSource
from batch_exporter.sources.schedule_table import ScheduleTableSource

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("text", "at", "days"), [
    ("06:00", time(6, 0), 0),
    ("00:00", time(0, 0), 0),
    ("23:59", time(23, 59), 0),
    ("01:30 +1 day", time(1, 30), 1),
    ("01:30 +2 days", time(1, 30), 2),
    ("01:30 +0 days", time(1, 30), 0),
    ("07:15 +31 days", time(7, 15), 31),
    ("  06:00  ", time(6, 0), 0),
])
def test_forms(text: str, at: time, days: int) -> None:
    assert FinishBy.parse(text) == FinishBy(at, days)


@pytest.mark.parametrize(("text", "fragment"), [
    ("6:00", "is not a finish time"),
    ("0600", "is not a finish time"),
    ("06:00:00", "is not a finish time"),
    ("24:00", "is no time of day"),
    ("06:60", "is no time of day"),
    ("06:00 +32 days", "at most +31 days"),
    ("06:00 +1 week", "is not a finish time"),
    ("06:00 + 1 day", "is not a finish time"),
    ("06:00 -1 day", "is not a finish time"),
    ("06:00+1 day", "is not a finish time"),
    ("06:00 +1", "is not a finish time"),
    ("", "is not a finish time"),
    ("noon", "is not a finish time"),
    ("０６:００", "is not a finish time"),  # full-width digits
])
def test_refusals_say_what_was_expected(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        FinishBy.parse(text)
    assert fragment in str(caught.value)
    assert "expected 'HH:MM' or 'HH:MM +N days'" in str(caught.value)


def test_text_round_trips() -> None:
    for text in ("06:00", "01:30 +1 day", "01:30 +2 days"):
        assert str(FinishBy.parse(text)) == text


def test_a_deadline_is_on_the_local_date_of_the_start() -> None:
    # 23:30 in Tokyo is 14:30 UTC: the deadline's date is Tokyo's
    start = datetime(2026, 5, 7, 23, 30, tzinfo=TOKYO)
    assert FinishBy.parse("23:50").deadline(start, TOKYO) == utc(2026, 5, 7, 14, 50)
    assert FinishBy.parse("01:30 +1 day").deadline(start, TOKYO) == utc(2026, 5, 7, 16, 30)
    # a start given in another zone: its local date in the schedule's zone counts
    assert FinishBy.parse("06:00").deadline(utc(2026, 5, 6, 17, 0), TOKYO) == utc(2026, 5, 6, 21, 0)


def test_berlin_spring_forward() -> None:
    # 29 March 2026: 02:00 CET became 03:00 CEST; a 02:30 cron fired at the jump (01:00 UTC)
    jump = utc(2026, 3, 29, 1, 0)
    assert FinishBy.parse("02:30").deadline(jump, BERLIN) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert FinishBy.parse("02:30").deadline(utc(2026, 3, 28, 23, 30), BERLIN) == utc(2026, 3, 29, 1, 30)
    assert FinishBy.parse("01:30 +1 day").deadline(jump, BERLIN) == utc(2026, 3, 29, 23, 30)  # 01:30 CEST
    # the day before, a 02:30 CET start: its deadline falls before the change
    assert FinishBy.parse("01:30 +1 day").deadline(utc(2026, 3, 28, 1, 30), BERLIN) == utc(2026, 3, 29, 0, 30)


def test_berlin_fall_back() -> None:
    # 25 October 2026: 03:00 CEST became 02:00 CET; 02:30 happened twice, first at 00:30 UTC
    start = utc(2026, 10, 24, 22, 15)  # 00:15 CEST on the 25th
    assert FinishBy.parse("02:30").deadline(start, BERLIN) == utc(2026, 10, 25, 0, 30)
    assert FinishBy.parse("01:30 +1 day").deadline(utc(2026, 10, 24, 0, 30), BERLIN) == utc(2026, 10, 24, 23, 30)
    assert FinishBy.parse("01:30 +1 day").deadline(utc(2026, 10, 25, 0, 30), BERLIN) == utc(2026, 10, 26, 0, 30)


def test_new_york_spring_forward_reads_a_skipped_time_with_the_offset_before() -> None:
    # 8 March 2026: 02:00 EST became 03:00 EDT; 02:30 never happened and is read as 02:30 EST
    deadline = FinishBy.parse("02:30").deadline(utc(2026, 3, 8, 6, 0), NEW_YORK)  # a 01:00 EST start
    assert deadline == utc(2026, 3, 8, 7, 30)
    assert deadline.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"
    assert FinishBy.parse("01:30 +1 day").deadline(utc(2026, 3, 7, 7, 30), NEW_YORK) == utc(2026, 3, 8, 6, 30)


def test_new_york_fall_back_takes_the_first_of_a_repeated_time() -> None:
    # 1 November 2026: 02:00 EDT became 01:00 EST; 01:30 happened at 05:30 and 06:30 UTC
    deadline = FinishBy.parse("01:30 +1 day").deadline(utc(2026, 10, 31, 6, 30), NEW_YORK)  # 02:30 EDT start
    assert deadline == utc(2026, 11, 1, 5, 30)
    assert deadline.astimezone(NEW_YORK).strftime("%H:%M %Z") == "01:30 EDT"
    assert FinishBy.parse("02:30").deadline(utc(2026, 11, 1, 4, 30), NEW_YORK) == utc(2026, 11, 1, 7, 30)


def test_the_docstring_tells_how_dst_changes_are_read() -> None:
    doc = FinishBy.deadline.__doc__ or ""
    assert "offset before the change" in doc and "first occurrence" in doc
    assert "a day later" in doc and "after the start" in doc


# --- the night a spring-forward jump moves a start -----------------------------------------------------

# (zone, cron, finish_by, the jump the cron fires at (UTC), the wall time that start stands for): a fixed-time
# cron whose wall time the jump skips fires at the jump, which is the finish_by wall time itself
JUMP_NIGHTS = [
    ("Europe/Berlin", "30 2 * * *", "03:00", utc(2026, 3, 29, 1, 0), time(2, 30)),
    ("America/New_York", "30 2 * * *", "03:00", utc(2026, 3, 8, 7, 0), time(2, 30)),
    ("Europe/London", "30 1 * * *", "02:00", utc(2026, 3, 29, 1, 0), time(1, 30)),
    ("Australia/Sydney", "30 2 * * *", "03:00", utc(2026, 10, 3, 16, 0), time(2, 30)),  # the southern spring
    ("Pacific/Chatham", "0 3 * * *", "03:45", utc(2026, 9, 26, 14, 0), time(3, 0)),  # 02:45 became 03:45
    ("Australia/Lord_Howe", "15 2 * * *", "02:30", utc(2026, 10, 3, 15, 30), time(2, 15)),  # a 30-minute jump
    ("America/Santiago", "30 0 * * *", "01:00", utc(2026, 9, 6, 4, 0), time(0, 30)),  # midnight became 01:00
]


@pytest.mark.parametrize(("zone", "cron", "finish_by", "jump", "planned"), JUMP_NIGHTS)
def test_a_start_the_jump_moved_to_its_deadline_keeps_its_usual_time(zone: str, cron: str, finish_by: str,
                                                                     jump: datetime, planned: time) -> None:
    schedule = CronSchedule.parse(cron, zone)
    assert schedule.next_fire(jump - timedelta(hours=3)) == jump
    assert jump.astimezone(schedule.timezone).strftime("%H:%M") == finish_by  # due at once by the wall clock
    wall = schedule.wall_time(jump)
    assert wall == datetime.combine(jump.astimezone(schedule.timezone).date(), planned)
    finish = FinishBy.parse(finish_by)
    usual = datetime.combine(wall.date(), finish.at) - wall  # 30 minutes on every other night
    assert finish.deadline(jump, schedule.timezone, wall) == jump + usual
    # check-config: the run of that night is due before the next night's start
    assert late_deadline(schedule, finish) is None
    parse_config(f'batches:\n  b:\n    schedule: {{cron: "{cron}", timezone: {zone}, finish_by: "{finish_by}"}}\n'
                 "    max_duration: 20m\n", "config.yml")


def test_a_wall_time_still_after_the_moved_start_is_kept() -> None:
    jump = utc(2026, 3, 29, 1, 0)  # Berlin: '30 2 * * *' fires at 03:00 CEST, standing for 02:30
    wall = CronSchedule.parse("30 2 * * *", "Europe/Berlin").wall_time(jump)
    assert wall == datetime(2026, 3, 29, 2, 30)
    assert FinishBy.parse("03:15").deadline(jump, BERLIN, wall) == utc(2026, 3, 29, 1, 15)  # 03:15 CEST
    assert FinishBy.parse("04:00").deadline(jump, BERLIN, wall) == utc(2026, 3, 29, 2, 0)  # 04:00 CEST
    # a skipped wall time is read with the offset before the change, as for any start: 02:45 CET, 03:45 CEST
    assert FinishBy.parse("02:45").deadline(jump, BERLIN, wall) == utc(2026, 3, 29, 1, 45)
    assert FinishBy.parse("01:00 +1 day").deadline(jump, BERLIN, wall) == local(BERLIN, 2026, 3, 30, 1)
    # a start no jump moved, at its deadline's wall time (a catch-up run): the next day, as before
    assert FinishBy.parse("03:00").deadline(jump, BERLIN) == local(BERLIN, 2026, 3, 30, 3)
    assert FinishBy.parse("03:00").deadline(jump, BERLIN, datetime(2026, 3, 29, 3, 0)) == local(BERLIN, 2026, 3, 30, 3)
    # a finish_by before the planned start is the next day's, as for any start
    assert FinishBy.parse("02:00").deadline(jump, BERLIN, wall) == local(BERLIN, 2026, 3, 30, 2)


def test_the_wall_time_a_fire_stands_for() -> None:
    new_york = "America/New_York"
    jump = utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    # several skipped wall times fire once at the jump: it stands for the latest
    assert CronSchedule.parse("0,30 2 * * *", new_york).wall_time(jump) == datetime(2026, 3, 8, 2, 30)
    # a cron that matches 03:00 itself fires then for its own sake
    assert CronSchedule.parse("0,30 2,3 * * *", new_york).wall_time(jump) == datetime(2026, 3, 8, 3, 0)
    # wildcard crons skip the hour; the other fires stand for themselves, in both passes of a repeated hour
    quarter = CronSchedule.parse("*/15 * * * *", new_york)
    assert quarter.next_fire(jump - timedelta(minutes=14)) == jump  # 01:45 EST, then 03:00 EDT
    assert quarter.wall_time(jump) == datetime(2026, 3, 8, 3, 0)
    assert quarter.wall_time(utc(2026, 11, 1, 5, 30)) == datetime(2026, 11, 1, 1, 30)
    assert quarter.wall_time(utc(2026, 11, 1, 6, 30)) == datetime(2026, 11, 1, 1, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        quarter.wall_time(datetime(2026, 3, 8, 3, 0))


def batch_info_deadline(schedule: str, now: datetime) -> datetime:
    """The finish deadline the exporter's config source exports at `now`."""
    config = parse_config(f"batches:\n  b:\n    schedule: {schedule}\n    max_duration: 1h\n", "config.yml")
    source = BatchInfoSource("b", config.batches["b"], clock=now.timestamp, watching_since=0.0)
    (value,) = [s.value for s in source.poll().samples if s.name == "batch_schedule_finish_deadline_timestamp_seconds"]
    return datetime.fromtimestamp(value, tz=UTC)


@pytest.mark.parametrize(("zone", "jump"), [("Europe/Berlin", utc(2026, 3, 29, 1, 0)),
                                            ("America/New_York", utc(2026, 3, 8, 7, 0))])
def test_the_exporter_exports_the_moved_start_s_deadline(zone: str, jump: datetime) -> None:
    schedule = f'{{cron: "30 2 * * *", timezone: {zone}, finish_by: "03:00"}}'
    assert batch_info_deadline(schedule, jump + timedelta(minutes=10)) == jump + timedelta(minutes=30)
    # the night before and the night after: 03:00 on the start's date
    tz = ZoneInfo(zone)
    for day in (jump.astimezone(tz).date() - timedelta(days=1), jump.astimezone(tz).date() + timedelta(days=1)):
        start = datetime.combine(day, time(2, 40), tzinfo=tz)
        assert batch_info_deadline(schedule, start) == datetime.combine(day, time(3, 0), tzinfo=tz).astimezone(UTC)


def test_fall_back_in_berlin_02_30_happens_twice() -> None:
    # 25 October 2026: 03:00 CEST became 02:00 CET; 02:30 was 00:30 UTC and 01:30 UTC; 03:00 once, 02:00 UTC
    schedule = '{cron: "30 2 * * *", timezone: Europe/Berlin, finish_by: "03:00"}'
    # the cron fires at the first 02:30 only; the run has the repeated hour on top of its usual half hour
    assert CronSchedule.parse("30 2 * * *", "Europe/Berlin").next_fire(utc(2026, 10, 25, 0, 0)) == \
        utc(2026, 10, 25, 0, 30)
    assert batch_info_deadline(schedule, utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 2, 0)
    # a scheduler that starts it at the second 02:30 (CET): due 30 minutes later
    assert FinishBy.parse("03:00").deadline(utc(2026, 10, 25, 1, 30), BERLIN) == utc(2026, 10, 25, 2, 0)
    assert late("30 2 * * *", "03:00", "Europe/Berlin") is None


def test_fall_back_in_new_york_01_30_happens_twice() -> None:
    # 1 November 2026: 02:00 EDT became 01:00 EST; 01:30 was 05:30 UTC and 06:30 UTC; 02:00 once, 07:00 UTC
    assert batch_info_deadline('{cron: "30 1 * * *", timezone: America/New_York, finish_by: "02:00"}',
                               utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 7, 0)
    assert FinishBy.parse("02:00").deadline(utc(2026, 11, 1, 6, 30), NEW_YORK) == utc(2026, 11, 1, 7, 0)
    # a 02:30 batch due by 03:00: 02:30 happens once, in EST
    assert batch_info_deadline('{cron: "30 2 * * *", timezone: America/New_York, finish_by: "03:00"}',
                               utc(2026, 11, 1, 7, 45)) == utc(2026, 11, 1, 8, 0)
    assert late("30 1 * * *", "02:00", "America/New_York") is None
    assert late("30 2 * * *", "03:00", "America/New_York") is None


# --- a start at or after its day's wall time ------------------------------------------------------------


def test_a_start_later_in_its_day_than_the_wall_time_is_due_the_next_day() -> None:
    six = FinishBy.parse("06:00")
    # a scheduler's catch-up run at 09:00 Tokyo: due at 06:00 the next morning, not 3 hours before it began
    assert six.deadline(datetime(2026, 11, 30, 9, 0, 10, tzinfo=TOKYO), TOKYO) == \
        datetime(2026, 12, 1, 6, 0, tzinfo=TOKYO).astimezone(UTC)
    # a start at the wall time itself would be due at once: the next day too
    assert six.deadline(datetime(2026, 11, 30, 6, 0, tzinfo=TOKYO), TOKYO) == \
        datetime(2026, 12, 1, 6, 0, tzinfo=TOKYO).astimezone(UTC)
    assert six.deadline(datetime(2026, 11, 30, 5, 59, tzinfo=TOKYO), TOKYO) == \
        datetime(2026, 11, 30, 6, 0, tzinfo=TOKYO).astimezone(UTC)
    # the days are counted from the start's date first: '+1 day' after a start at 23:00 is unchanged
    assert FinishBy.parse("06:00 +1 day").deadline(datetime(2026, 11, 30, 23, 0, tzinfo=TOKYO), TOKYO) == \
        datetime(2026, 12, 1, 6, 0, tzinfo=TOKYO).astimezone(UTC)
    # the last day of a month and of a year roll over
    assert six.deadline(datetime(2026, 12, 31, 7, 0, tzinfo=TOKYO), TOKYO) == \
        datetime(2027, 1, 1, 6, 0, tzinfo=TOKYO).astimezone(UTC)


def test_a_start_between_the_two_passes_of_a_repeated_time_is_due_at_the_second() -> None:
    # 1 November 2026 in New York: 01:00-02:00 happened twice, EDT (05:00-06:00 UTC) then EST (06:00-07:00)
    fifty = FinishBy.parse("01:50")
    assert fifty.deadline(utc(2026, 11, 1, 5, 45), NEW_YORK) == utc(2026, 11, 1, 5, 50)  # 01:45 EDT: 01:50 EDT
    assert fifty.deadline(utc(2026, 11, 1, 6, 45), NEW_YORK) == utc(2026, 11, 1, 6, 50)  # 01:45 EST: 01:50 EST
    assert fifty.deadline(utc(2026, 11, 1, 6, 55), NEW_YORK) == utc(2026, 11, 2, 6, 50)  # 01:55 EST: the next day


# --- a deadline the next start would hide -----------------------------------------------------------------


def late(cron: str, finish_by: str, zone: str = "Asia/Tokyo") -> LateDeadline | None:
    return late_deadline(CronSchedule.parse(cron, zone), FinishBy.parse(finish_by))


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(UTC)


@pytest.mark.parametrize(("cron", "finish_by", "start", "deadline", "following"), [
    ("0 2 * * *", "03:00 +1 day", (1, 1, 2), (1, 2, 3), (1, 2, 2)),
    ("0 22 * * *", "23:00 +1 day", (1, 1, 22), (1, 2, 23), (1, 2, 22)),
    ("0 */4 * * *", "06:00 +1 day", (1, 1, 20), (1, 2, 6), (1, 2, 0)),
    ("0 2 * * *", "02:00 +1 day", (1, 1, 2), (1, 2, 2), (1, 2, 2)),  # at the next start
    ("0 2 * * 1-5", "03:00 +1 day", (1, 1, 2), (1, 2, 3), (1, 2, 2)),  # Thursday 1 January
    ("0 2 * * 1", "02:00 +7 days", (1, 5, 2), (1, 12, 2), (1, 12, 2)),  # Monday 5 January, weekly
    ("0 2 1 * *", "06:00 +28 days", (2, 1, 2), (3, 1, 6), (3, 1, 2)),  # only February is short enough
])
def test_a_deadline_at_or_after_the_next_start_is_found(cron: str, finish_by: str, start: tuple[int, int, int],
                                                        deadline: tuple[int, int, int],
                                                        following: tuple[int, int, int]) -> None:
    assert late(cron, finish_by) == LateDeadline(local(TOKYO, 2026, *start), local(TOKYO, 2026, *deadline),
                                                 local(TOKYO, 2026, *following))


def test_a_deadline_must_leave_minutes_for_the_alert() -> None:
    # the review's '*/15 * * * *' with '23:59': passed for one minute a day, the alert waits for two
    found = late("*/15 * * * *", "23:59")
    assert found == LateDeadline(local(TOKYO, 2026, 1, 1, 23, 45), local(TOKYO, 2026, 1, 1, 23, 59),
                                 local(TOKYO, 2026, 1, 2, 0, 0))
    assert found is not None and found.describe(TOKYO) == (
        "the run expected 2026-01-01 23:45 would be due 2026-01-01 23:59, only 1 minute before the next start "
        "2026-01-02 00:00: a deadline must come at least 5 minutes before the next start (the alert follows "
        "the latest expected start)")
    assert timedelta(minutes=5) == MIN_MISSED_WINDOW
    assert late("*/15 * * * *", "23:55") is None  # exactly 5 minutes
    assert late("0 2 * * *", "01:56 +1 day") is not None
    assert late("0 2 * * *", "01:55 +1 day") is None


def test_the_descriptions_say_after_at_and_before() -> None:
    after = late("0 2 * * *", "03:00 +1 day")
    at_start = late("0 2 * * *", "02:00 +1 day")
    assert after is not None and at_start is not None
    assert after.describe(TOKYO) == (
        "the run expected 2026-01-01 02:00 would be due 2026-01-02 03:00, after the next start 2026-01-02 02:00: "
        "a deadline must come at least 5 minutes before the next start (the alert follows the latest expected "
        "start)")
    assert ", at the next start 2026-01-02 02:00: " in at_start.describe(TOKYO)


@pytest.mark.parametrize(("cron", "finish_by", "zone"), [
    ("0 22 * * *", "06:00 +1 day", "Asia/Tokyo"),
    ("0 1,5 * * 1-5", "05:30", "Asia/Tokyo"),  # every run of the day by 05:30, the next day's first at 01:00
    ("@hourly", "23:30", "Asia/Tokyo"),
    ("0 2 * * 1-5", "01:00 +1 day", "Asia/Tokyo"),
    ("0 2 1 * *", "06:00 +27 days", "Asia/Tokyo"),
    ("0 0 29 2 *", "06:00 +31 days", "UTC"),  # no start in 2026: the first after it (2028) is checked
    ("30 2 * * *", "01:00 +1 day", "Europe/Berlin"),
    # the fall-back day's last start, 01:55 EST, is due at the second 01:57 (not the next day)
    ("*/5 1 * * *", "01:57", "America/New_York"),
])
def test_deadlines_before_the_next_start_pass(cron: str, finish_by: str, zone: str) -> None:
    assert late(cron, finish_by, zone) is None


def test_a_dst_change_can_make_one_night_of_the_year_too_late() -> None:
    # Berlin, 29 March 2026: '02:00 +1 day' after the 28th's 02:30 CET start is 02:00 CET (01:00 UTC), a wall
    # time the jump skipped; the 29th's 02:30 start fires at the jump, 03:00 CEST (01:00 UTC): the same instant
    found = late("30 2 * * *", "02:00 +1 day", "Europe/Berlin")
    assert found == LateDeadline(local(BERLIN, 2026, 3, 28, 2, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 0))
    assert found is not None
    assert found.describe(BERLIN).startswith("the run expected 2026-03-28 02:30 would be due 2026-03-29 03:00, at "
                                              "the next start 2026-03-29 03:00: ")


def last_of_day(cron: str, zone: ZoneInfo, fire: datetime) -> tuple[datetime, datetime | None]:
    latest = latest_start_of_day(cron)
    assert latest is not None
    return last_fire_of_day(CronSchedule.parse(cron, zone.key), fire, latest)


def test_the_last_start_of_a_day_across_dst_changes() -> None:
    quarter = "*/15 0-2 * * *"
    # an ordinary day: 02:45, and the next day's 00:00
    assert last_of_day(quarter, NEW_YORK, local(NEW_YORK, 2026, 3, 7, 0)) == (
        local(NEW_YORK, 2026, 3, 7, 2, 45), local(NEW_YORK, 2026, 3, 8, 0))
    # spring forward: 02:00-03:00 never happened, so a wildcard cron's last start is 01:45 EST
    assert last_of_day(quarter, NEW_YORK, local(NEW_YORK, 2026, 3, 8, 0)) == (
        utc(2026, 3, 8, 6, 45), local(NEW_YORK, 2026, 3, 9, 0))
    # fall back: 01:00-02:00 happened twice; the last start is 02:45 EST, after both passes
    assert last_of_day(quarter, NEW_YORK, local(NEW_YORK, 2026, 11, 1, 0)) == (
        utc(2026, 11, 1, 7, 45), local(NEW_YORK, 2026, 11, 2, 0))
    # a cron whose latest wall time is in the repeated hour: its second pass
    assert last_of_day("*/5 1 * * *", NEW_YORK, local(NEW_YORK, 2026, 11, 1, 1)) == (
        utc(2026, 11, 1, 6, 55), local(NEW_YORK, 2026, 11, 2, 1))
    # a fixed-time cron fires at the spring-forward jump (03:00 CEST)
    assert last_of_day("30 2 * * *", BERLIN, utc(2026, 3, 29, 1, 0)) == (
        utc(2026, 3, 29, 1, 0), local(BERLIN, 2026, 3, 30, 2, 30))


# --- the scheduler's plan -----------------------------------------------------------------------------


def test_the_deadline_of_the_scheduler_s_planned_start(tmp_path: Path) -> None:
    path = tmp_path / "plan.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE plan (latest TEXT, next_start TEXT, paused INTEGER)")
    conn.execute("INSERT INTO plan VALUES ('2026-05-07 02:00:00', '2026-05-08 02:00:00', 0)")
    conn.commit()
    config = parse_config(f"""databases:
  l: {{sqlite: '{path}'}}
batches:
  etl:
    database: l
    schedule:
      query: "SELECT latest, next_start, paused FROM plan"
      timezone: Asia/Tokyo
      finish_by: '01:30 +1 day'
""", "config.yml")
    schedule = config.batches["etl"].schedule
    assert schedule is not None
    db = open_database("l", sqlite=str(path))
    now = datetime(2026, 5, 7, 10, 0, tzinfo=TOKYO)
    try:
        source = ScheduleTableSource("etl", schedule, db, clock=now.timestamp)
        deadlines = [s.value for s in source.poll().samples
                     if s.name == "batch_schedule_finish_deadline_timestamp_seconds"]
        assert deadlines == [datetime(2026, 5, 8, 1, 30, tzinfo=TOKYO).timestamp()]
        conn.execute("UPDATE plan SET paused = 1")
        conn.commit()
        assert not [s for s in source.poll().samples if s.name == "batch_schedule_finish_deadline_timestamp_seconds"]
    finally:
        db.close()
        conn.close()


def test_a_catch_up_run_after_the_wall_time_is_due_the_next_day(tmp_path: Path) -> None:
    # paused over the weekend, unpaused Monday 30 November at 09:00: the scheduler's catch-up run starts then
    path = tmp_path / "plan.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE plan (latest TEXT, next_start TEXT, paused INTEGER)")
    conn.execute("INSERT INTO plan VALUES ('2026-11-30 09:00:10', '2026-12-01 02:00:00', 0)")
    conn.commit()
    config = parse_config(f"""databases:
  l: {{sqlite: '{path}'}}
batches:
  etl:
    database: l
    schedule:
      query: "SELECT latest, next_start, paused FROM plan"
      timezone: Asia/Tokyo
      finish_by: '06:00'
""", "config.yml")
    schedule = config.batches["etl"].schedule
    assert schedule is not None
    db = open_database("l", sqlite=str(path))
    now = datetime(2026, 11, 30, 9, 1, tzinfo=TOKYO)
    try:
        source = ScheduleTableSource("etl", schedule, db, clock=now.timestamp)
        values = {s.name: s.value for s in source.poll().samples}
        assert values["batch_schedule_last_expected_timestamp_seconds"] == \
            datetime(2026, 11, 30, 9, 0, 10, tzinfo=TOKYO).timestamp()
        assert values["batch_schedule_finish_deadline_timestamp_seconds"] == \
            datetime(2026, 12, 1, 6, 0, tzinfo=TOKYO).timestamp()
    finally:
        db.close()
        conn.close()
