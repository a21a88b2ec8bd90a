"""schedule.finish_by: its forms, its refusals, and the deadline it gives, around DST changes in Berlin and
New York; then the deadline of the scheduler's planned start (schedule.query)."""
from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.finish_by import FinishBy
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


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FinishBy.parse("06:00").deadline(datetime(2026, 5, 7, 2, 0), TOKYO)


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
