"""Which run is the latest expected start's: a re-run of an earlier run key (yesterday's business date, an
earlier slot) counts for its own key, never as the run or the success today's start waits for.

The expected starts come from the exporter's own schedule (BatchInfo.expected, calendars and DST included);
every instant is fixed. `missed` and `not_succeeded` read the summary as BatchRunMissed and
BatchNoRecentSuccess / BatchFinishDeadlineMissed read the exported series: a latest start (success) before
the expected start less its grace.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import parse_config
from batch_exporter.runsummary import Expected, RunRow, RunSummary, key_work, run_key_text, summarize
from batch_exporter.sources.batchinfo import BatchInfo
from batch_exporter.sources.runs import later

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MAX_DURATION = 3 * 3600.0


def at(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    """A local wall time (YYYY-MM-DD HH:MM) as an aware UTC instant; `fold` 1 for the second of a repeated hour."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone, fold=fold).astimezone(UTC)


def tk(text: str) -> datetime:
    return at(TOKYO, text)


def expected(now: datetime, schedule: str, calendars: str = "") -> Expected:
    """The latest expected start at `now` as the exporter works it out from a batch's `schedule`."""
    config = parse_config(f"{calendars}batches:\n  b:\n    schedule: {schedule}\n    max_duration: 3h\n", "t.yml")
    found = BatchInfo(config.batches["b"], config.calendars).expected(now)
    assert found is not None
    return found


def row(run_id: str, key: str | None, status: str, start: datetime | None, end: datetime | None,
        attempt: int | None = None) -> RunRow:
    return RunRow(run_id, key, status, start, end, attempt=attempt)


def missed(s: RunSummary, e: Expected) -> bool:
    return s.last_start is not None and s.last_start < e.opens


def not_succeeded(s: RunSummary, e: Expected) -> bool:
    return s.last_success is None or s.last_success < e.opens


DAILY_TOKYO = '{cron: "0 2 * * *", timezone: Asia/Tokyo, grace: 15m, finish_by: "06:00"}'


def tokyo_nights(*, rerun: tuple[str, str] | None = None, today: tuple[str, str] | None = None,
                 yesterday: str = "failed") -> list[RunRow]:
    """The 8th succeeded, the 9th `yesterday` at 02:05; optionally a re-run of the 9th and today's run."""
    rows = [row("1", "2026-06-08", "success", tk("2026-06-08 02:05"), tk("2026-06-08 02:50")),
            row("2", "2026-06-09", yesterday, tk("2026-06-09 02:05"), tk("2026-06-09 02:30"))]
    if rerun is not None:
        rows.append(row("3", "2026-06-09", "success", at(TOKYO, rerun[0]), at(TOKYO, rerun[1])))
    if today is not None:
        rows.append(row("4", "2026-06-10", "success", at(TOKYO, today[0]), at(TOKYO, today[1])))
    return rows


# --- the reviewer's incident: yesterday re-run after midnight, today's run never started ------------------


def test_a_rerun_of_yesterday_after_midnight_leaves_todays_missing_run_missed_and_its_deadline_missed() -> None:
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    assert e.at == tk("2026-06-10 02:00") and e.grace == timedelta(minutes=15)
    rows = tokyo_nights(rerun=("2026-06-10 03:00", "2026-06-10 03:40"))
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-09 02:05")  # yesterday's own start, not its re-run's
    assert s.last_success == tk("2026-06-08 02:50")
    assert missed(s, e) and not_succeeded(s, e)
    assert s.passed_over == {tk("2026-06-10 03:40")}
    # the re-run is still shown as what it is: the second run of the 9th, the latest run, succeeded
    assert s.latest_date is not None and s.latest_date.business_date == "2026-06-09"
    assert s.attempts == 2 and s.latest is not None and s.latest.run_id == "3" and s.latest.status == "success"
    # without the schedule (a batch with none) every run counts, as before
    blind = summarize(rows, now, TOKYO, MAX_DURATION)
    assert blind.last_start == tk("2026-06-10 03:00") and blind.last_success == tk("2026-06-10 03:40")


def test_a_successful_day_re_run_after_midnight_and_twice_does_not_stand_for_today() -> None:
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    rows = [*tokyo_nights(yesterday="success"),
            row("3", "2026-06-09", "failed", tk("2026-06-10 00:30"), tk("2026-06-10 00:40")),
            row("5", "2026-06-09", "success", tk("2026-06-10 02:10"), tk("2026-06-10 02:40")),
            row("6", "2026-06-09", "success", tk("2026-06-10 04:00"), tk("2026-06-10 04:30"))]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    # the 00:30 re-run began before 01:45 (two hours before today's start less its grace): it is an earlier
    # start, which does not stand for today's either
    assert s.last_start == tk("2026-06-10 00:30") and missed(s, e)
    assert s.last_success == tk("2026-06-09 02:30") and not_succeeded(s, e)
    assert s.attempts == 4


def test_a_run_of_yesterday_that_ends_after_todays_start_is_not_todays_success() -> None:
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    rows = [row("1", "2026-06-08", "success", tk("2026-06-08 02:05"), tk("2026-06-08 02:50")),
            row("2", "2026-06-09", "success", tk("2026-06-09 23:30"), tk("2026-06-10 02:20"))]
    s = summarize(rows, now, TOKYO, 6 * 3600.0, e)
    assert s.last_start == tk("2026-06-09 23:30") and missed(s, e)
    assert s.last_success == tk("2026-06-08 02:50") and not_succeeded(s, e)


# --- re-runs that must not page -----------------------------------------------------------------------


def test_a_rerun_before_todays_start_counts_for_yesterday_and_todays_run_for_today() -> None:
    rows = tokyo_nights(rerun=("2026-06-10 01:00", "2026-06-10 01:40"))
    before = tk("2026-06-10 01:50")
    e = expected(before, DAILY_TOKYO)
    assert e.at == tk("2026-06-09 02:00")
    s = summarize(rows, before, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 01:00") and s.last_success == tk("2026-06-10 01:40")
    assert not missed(s, e) and not not_succeeded(s, e)  # yesterday's work is done
    after = tk("2026-06-10 06:10")
    e = expected(after, DAILY_TOKYO)
    s = summarize(tokyo_nights(rerun=("2026-06-10 01:00", "2026-06-10 01:40"),
                               today=("2026-06-10 02:05", "2026-06-10 02:50")), after, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 02:05") and s.last_success == tk("2026-06-10 02:50")
    assert not missed(s, e) and not not_succeeded(s, e)
    assert s.attempts == 1 and s.passed_over == frozenset()


def test_a_rerun_ending_in_the_grace_before_todays_start_is_yesterdays_and_is_forgotten_once_today_is_due() -> None:
    rows = tokyo_nights(rerun=("2026-06-10 01:00", "2026-06-10 01:50"))
    before = tk("2026-06-10 01:55")
    e_yesterday = expected(before, DAILY_TOKYO)
    s = summarize(rows, before, TOKYO, MAX_DURATION, e_yesterday)
    assert s.last_success == tk("2026-06-10 01:50")
    remembered = later(None, s.last_success, s.passed_over)
    after = tk("2026-06-10 06:10")
    e = expected(after, DAILY_TOKYO)
    s = summarize(rows, after, TOKYO, MAX_DURATION, e)
    assert s.last_success == tk("2026-06-08 02:50") and s.passed_over == {tk("2026-06-10 01:50")}
    # the exported success (remembered across polls) goes back: the success today waits for never came
    exported = later(remembered, s.last_success, s.passed_over)
    assert exported == tk("2026-06-08 02:50") and exported < e.opens
    # a success remembered that the window no longer holds as one (its row reset for a re-run) still stays
    assert later(remembered, s.last_success, frozenset()) == tk("2026-06-10 01:50")


def test_a_rerun_of_yesterday_after_todays_run_leaves_today_as_it_is() -> None:
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    rows = tokyo_nights(rerun=("2026-06-10 03:00", "2026-06-10 03:40"), today=("2026-06-10 02:05", "2026-06-10 02:50"))
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 02:05") and s.last_success == tk("2026-06-10 02:50")
    assert not missed(s, e) and not not_succeeded(s, e)
    assert s.attempts == 1 and s.earlier_rerun == ("2026-06-09", 2)
    # today's own re-run is today's
    rows = [*tokyo_nights(), row("4", "2026-06-10", "failed", tk("2026-06-10 02:05"), tk("2026-06-10 02:30")),
            row("5", "2026-06-10", "success", tk("2026-06-10 03:00"), tk("2026-06-10 03:40"))]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 03:00") and s.last_success == tk("2026-06-10 03:40")
    assert s.attempts == 2


def test_on_a_holiday_a_rerun_of_the_last_business_day_is_that_days_work() -> None:
    calendars = "calendars:\n  jp: {country: JP}\n"
    schedule = '{cron: "0 2 * * *", timezone: Asia/Tokyo, grace: 15m, calendar: jp, finish_by: "06:00"}'
    rows = [row("1", "2026-04-27", "success", tk("2026-04-27 02:05"), tk("2026-04-27 02:50")),
            row("2", "2026-04-28", "failed", tk("2026-04-28 02:05"), tk("2026-04-28 02:30")),
            # 29 April (Showa Day) expects no run; the 28th is re-run that morning
            row("3", "2026-04-28", "success", tk("2026-04-29 03:00"), tk("2026-04-29 03:40"))]
    holiday = tk("2026-04-29 06:10")
    e = expected(holiday, schedule, calendars)
    assert e.at == tk("2026-04-28 02:00")
    s = summarize(rows, holiday, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-04-29 03:00") and s.last_success == tk("2026-04-29 03:40")
    assert not missed(s, e) and not not_succeeded(s, e)
    # the next business day's run is still expected: the re-run began before it
    next_day = tk("2026-04-30 06:10")
    e = expected(next_day, schedule, calendars)
    s = summarize(rows, next_day, TOKYO, MAX_DURATION, e)
    assert missed(s, e) and not_succeeded(s, e)


# --- both DST changes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "schedule", "yesterday", "key", "today_key", "fire", "rerun", "today", "now"), [
    # Berlin, spring forward (29 March 2026): 02:30 does not exist, the cron fires at 03:00 CEST
    (BERLIN, '{cron: "30 2 * * *", timezone: Europe/Berlin, grace: 15m}', ("2026-03-28 02:35", 0), "2026-03-28",
     "2026-03-29", ("2026-03-29 03:00", 0), ("2026-03-29 03:10", 0), ("2026-03-29 03:05", 0), ("2026-03-29 05:00", 0)),
    # Berlin, fall back (25 October 2026): 02:30 CEST fires; the re-run comes in the second 02:40 (CET)
    (BERLIN, '{cron: "30 2 * * *", timezone: Europe/Berlin, grace: 15m}', ("2026-10-24 02:35", 0), "2026-10-24",
     "2026-10-25", ("2026-10-25 02:30", 0), ("2026-10-25 02:40", 1), ("2026-10-25 02:35", 0), ("2026-10-25 04:00", 0)),
    # New York, spring forward (8 March 2026): 02:30 does not exist, the cron fires at 03:00 EDT
    (NEW_YORK, '{cron: "30 2 * * *", timezone: America/New_York, grace: 15m}', ("2026-03-07 02:35", 0), "2026-03-07",
     "2026-03-08", ("2026-03-08 03:00", 0), ("2026-03-08 03:10", 0), ("2026-03-08 03:05", 0), ("2026-03-08 05:00", 0)),
    # New York, fall back (1 November 2026): 01:30 EDT fires; the re-run comes in the second 01:40 (EST)
    (NEW_YORK, '{cron: "30 1 * * *", timezone: America/New_York, grace: 15m}', ("2026-10-31 01:35", 0), "2026-10-31",
     "2026-11-01", ("2026-11-01 01:30", 0), ("2026-11-01 01:40", 1), ("2026-11-01 01:35", 0), ("2026-11-01 03:00", 0)),
])
def test_across_both_dst_changes_yesterdays_rerun_is_not_todays_run(
        zone: ZoneInfo, schedule: str, yesterday: tuple[str, int], key: str, today_key: str, fire: tuple[str, int],
        rerun: tuple[str, int], today: tuple[str, int], now: tuple[str, int]) -> None:
    moment = at(zone, *now)
    e = expected(moment, schedule)
    assert e.at == at(zone, *fire)
    first = at(zone, *yesterday)
    rows = [row("1", key, "failed", first, first + timedelta(minutes=20)),
            row("2", key, "success", at(zone, *rerun), at(zone, *rerun) + timedelta(minutes=30))]
    s = summarize(rows, moment, zone, MAX_DURATION, e)
    assert s.last_start == first and missed(s, e) and not_succeeded(s, e)
    assert s.attempts == 2 and s.latest_date is not None and s.latest_date.business_date == key
    with_today = [*rows, row("3", today_key, "success", at(zone, *today), at(zone, *today) + timedelta(minutes=20))]
    s = summarize(with_today, moment, zone, MAX_DURATION, e)
    assert s.last_start == at(zone, *today) and not missed(s, e) and not not_succeeded(s, e)
    assert s.earlier_rerun == (key, 2)


# --- slots, other key zones, keys that are not the start date ------------------------------------------


def slot(zone: ZoneInfo, text: str, key_zone: ZoneInfo | None = None) -> str:
    key = run_key_text(at(zone, text), zone, slot=True, key_tz=key_zone)
    assert key is not None
    return key


def test_a_rerun_of_the_previous_slot_is_not_the_run_of_the_slot_due_now() -> None:
    schedule = '{cron: "0,15,30,45 * * * *", timezone: Asia/Tokyo, grace: 5m}'
    now = tk("2026-06-10 10:25")
    e = expected(now, schedule)
    assert e.at == tk("2026-06-10 10:15")
    rows = [row("1", slot(TOKYO, "2026-06-10 09:45"), "success", tk("2026-06-10 09:46"), tk("2026-06-10 09:50")),
            row("2", slot(TOKYO, "2026-06-10 10:00"), "failed", tk("2026-06-10 10:01"), tk("2026-06-10 10:05")),
            row("3", slot(TOKYO, "2026-06-10 10:00"), "success", tk("2026-06-10 10:16"), tk("2026-06-10 10:20"))]
    s = summarize(rows, now, TOKYO, 600.0, e)
    assert s.last_start == tk("2026-06-10 10:01") and missed(s, e)
    assert s.last_success == tk("2026-06-10 09:50") and not_succeeded(s, e)
    rows.append(row("4", slot(TOKYO, "2026-06-10 10:15"), "success", tk("2026-06-10 10:15"),
                    tk("2026-06-10 10:19")))
    s = summarize(rows, now, TOKYO, 600.0, e)
    assert s.last_start == tk("2026-06-10 10:15") and not missed(s, e)
    assert s.earlier_rerun == (slot(TOKYO, "2026-06-10 10:00"), 2)


@pytest.mark.parametrize("reset_row", [False, True], ids=["row-per-attempt", "row-reset-with-counter"])
def test_an_airflow_slot_cleared_after_midnight_is_not_todays_dag_run(reset_row: bool) -> None:
    # Airflow keys a run by the start of its data interval: the 02:00 run of the 9th is the slot of the 8th
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    rows = [row("1", slot(TOKYO, "2026-06-06 02:00"), "success", tk("2026-06-07 02:00"), tk("2026-06-07 02:40")),
            row("2", slot(TOKYO, "2026-06-07 02:00"), "success", tk("2026-06-08 02:00"), tk("2026-06-08 02:45"))]
    cleared = row("3", slot(TOKYO, "2026-06-08 02:00"), "success", tk("2026-06-10 03:00"), tk("2026-06-10 03:40"),
                  attempt=2)
    if reset_row:  # the scheduler re-ran it on its row: the failed first attempt is gone, its counter says 2
        rows.append(cleared)
    else:
        rows += [row("3a", slot(TOKYO, "2026-06-08 02:00"), "failed", tk("2026-06-09 02:00"),
                     tk("2026-06-09 02:30"), attempt=1), cleared]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert missed(s, e) and not_succeeded(s, e)
    assert s.last_success == tk("2026-06-08 02:45")
    assert s.attempts == 2


def test_keys_spelled_in_another_zone_than_the_schedule() -> None:
    # a Tokyo batch whose business date is stored as a timestamp and shown in UTC (runs.key_timezone): the
    # Tokyo date of the 9th is the UTC date of the 8th
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)

    def day(text: str) -> str:
        key = run_key_text(datetime.fromisoformat(text).replace(tzinfo=TOKYO), TOKYO, key_tz=UTC)
        assert key is not None
        return key

    assert day("2026-06-09") == "2026-06-08"
    rows = [row("1", day("2026-06-08"), "success", tk("2026-06-08 02:05"), tk("2026-06-08 02:50")),
            row("2", day("2026-06-09"), "failed", tk("2026-06-09 02:05"), tk("2026-06-09 02:30")),
            row("3", day("2026-06-09"), "success", tk("2026-06-10 03:00"), tk("2026-06-10 03:40"))]
    utc = ZoneInfo("UTC")  # the runs source summarises in runs.key_timezone
    s = summarize(rows, now, utc, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-09 02:05") and missed(s, e) and not_succeeded(s, e)
    rows.append(row("4", day("2026-06-10"), "success", tk("2026-06-10 02:05"), tk("2026-06-10 02:50")))
    s = summarize(rows, now, utc, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 02:05") and not missed(s, e) and not not_succeeded(s, e)
    # slots shown in UTC: the 02:00 Tokyo slot of the 10th is 17:00 UTC on the 9th
    slots = [row("1", slot(TOKYO, "2026-06-09 02:00", UTC), "failed", tk("2026-06-09 02:01"), tk("2026-06-09 02:30")),
             row("2", slot(TOKYO, "2026-06-09 02:00", UTC), "success", tk("2026-06-10 03:00"), tk("2026-06-10 03:40"))]
    assert slots[0].business_date == "2026-06-08T17:00:00+00:00"
    s = summarize(slots, now, utc, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-09 02:01") and missed(s, e) and s.last_success is None


def test_a_night_batch_for_the_next_business_date_and_a_morning_one_for_the_day_before() -> None:
    night = '{cron: "0 23 * * *", timezone: Asia/Tokyo, grace: 15m}'
    now = tk("2026-06-10 23:40")
    e = expected(now, night)
    # the 23:00 run of the 9th processes the 10th; re-run at 23:05 on the 10th, while the 11th never starts
    rows = [row("1", "2026-06-10", "failed", tk("2026-06-09 23:05"), tk("2026-06-09 23:30")),
            row("2", "2026-06-10", "success", tk("2026-06-10 23:05"), tk("2026-06-10 23:35"))]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert missed(s, e) and not_succeeded(s, e)
    s = summarize([*rows, row("3", "2026-06-11", "running", tk("2026-06-10 23:01"), None)], now, TOKYO,
                  MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 23:01") and not missed(s, e)  # the 11th's run, not the re-run
    morning = '{cron: "0 1 * * *", timezone: Asia/Tokyo, grace: 15m}'
    now = tk("2026-06-10 02:00")
    e = expected(now, morning)
    # the 01:00 run of the 9th processed the 8th; the 8th is re-run at 01:10 on the 10th, the 9th never starts
    rows = [row("1", "2026-06-08", "failed", tk("2026-06-09 01:05"), tk("2026-06-09 01:30")),
            row("2", "2026-06-08", "success", tk("2026-06-10 01:10"), tk("2026-06-10 01:40"))]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert missed(s, e) and not_succeeded(s, e)
    s = summarize([*rows, row("3", "2026-06-09", "success", tk("2026-06-10 01:05"), tk("2026-06-10 01:35"))],
                  now, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 01:05") and not missed(s, e) and not not_succeeded(s, e)


def test_a_batch_run_hourly_under_one_business_date_is_judged_by_its_latest_start() -> None:
    hourly = '{cron: "0 * * * *", timezone: Asia/Tokyo, grace: 10m}'
    now = tk("2026-06-10 10:30")
    e = expected(now, hourly)
    rows = [row(str(hour), "2026-06-10", "success", at(TOKYO, f"2026-06-10 {hour:02d}:01"),
                at(TOKYO, f"2026-06-10 {hour:02d}:20")) for hour in range(11)]
    s = summarize(rows, now, TOKYO, 3000.0, e)
    assert s.last_start == tk("2026-06-10 10:01") and not missed(s, e)
    s = summarize(rows[:-1], now, TOKYO, 3000.0, e)
    assert missed(s, e)  # the 10:00 run did not start
    # none of today's runs started, and yesterday's date is re-run at 10:05: not today's
    yesterday = [row("y", "2026-06-09", "failed", tk("2026-06-09 23:01"), tk("2026-06-09 23:20")),
                 row("r", "2026-06-09", "success", tk("2026-06-10 10:05"), tk("2026-06-10 10:15"))]
    s = summarize(yesterday, now, TOKYO, 3000.0, e)
    assert missed(s, e) and not_succeeded(s, e)


def test_a_next_day_batch_whose_night_crossed_midnight_does_not_hide_the_next_missing_night() -> None:
    """A daily 23:50 batch for the next business date: the night of 12-02 began at 00:02 (late, inside
    grace) under 12-03; on the night of 12-03 nothing starts, and 12-03 is re-run blindly at 00:30."""
    nightly = '{cron: "50 23 * * *", timezone: Asia/Tokyo, grace: 15m, finish_by: "04:00 +1 day"}'
    rows = [row("1", "2026-12-02", "success", tk("2026-12-01 23:50"), tk("2026-12-02 00:40")),
            row("2", "2026-12-03", "failed", tk("2026-12-03 00:02"), tk("2026-12-03 00:30")),
            row("3", "2026-12-03", "success", tk("2026-12-04 00:30"), tk("2026-12-04 01:20"))]
    for now in ("2026-12-04 01:30", "2026-12-04 05:00"):
        e = expected(tk(now), nightly)
        assert e.at == tk("2026-12-03 23:50") and e.before == tk("2026-12-02 23:50")
        s = summarize(rows, tk(now), TOKYO, MAX_DURATION, e)
        assert missed(s, e) and not_succeeded(s, e), now
    # the same nights with the 12-04 run on time: nothing is missed
    on_time = rows + [row("4", "2026-12-04", "success", tk("2026-12-03 23:50"), tk("2026-12-04 00:20"))]
    e = expected(tk("2026-12-04 01:30"), nightly)
    s = summarize(on_time, tk("2026-12-04 01:30"), TOKYO, MAX_DURATION, e)
    assert not missed(s, e) and not not_succeeded(s, e)


def test_without_a_run_key_a_rerun_after_midnight_is_todays_first_run() -> None:
    # documented: the key is then the local start date, which the re-run shares with today's expected run
    now = tk("2026-06-10 06:10")
    e = expected(now, DAILY_TOKYO)
    rows = [row("1", None, "success", tk("2026-06-08 02:05"), tk("2026-06-08 02:50")),
            row("2", None, "failed", tk("2026-06-09 02:05"), tk("2026-06-09 02:30")),
            row("3", None, "success", tk("2026-06-10 03:00"), tk("2026-06-10 03:40"))]
    s = summarize(rows, now, TOKYO, MAX_DURATION, e)
    assert s.last_start == tk("2026-06-10 03:00") and s.last_success == tk("2026-06-10 03:40")
    assert s.attempts == 1 and s.passed_over == frozenset()


# --- the work of a run key (BatchRunSuspiciouslyFast) ---------------------------------------------------


def nights_of_forty_minutes() -> list[RunRow]:
    return [row(str(day), f"2026-06-0{day}", "success", at(TOKYO, f"2026-06-0{day} 02:05"),
                at(TOKYO, f"2026-06-0{day} 02:45")) for day in range(1, 8)]


def fast(s: RunSummary) -> bool:
    """BatchRunSuspiciouslyFast's condition on the exported series."""
    return (s.key_work is not None and s.usual.median is not None and s.latest is not None
            and s.latest.status == "success" and s.key_work < 0.1 * s.usual.median)


def test_a_rerun_that_finishes_what_a_failed_attempt_left_is_judged_on_the_keys_whole_work() -> None:
    rows = [*nights_of_forty_minutes(),
            row("8a", "2026-06-08", "failed", tk("2026-06-08 02:05"), tk("2026-06-08 02:40"), attempt=1),
            RunRow("8b", "2026-06-08", "success", tk("2026-06-08 03:10"),
                   tk("2026-06-08 03:11") + timedelta(seconds=30), attempt=2)]
    s = summarize(rows, tk("2026-06-08 03:20"), TOKYO, MAX_DURATION)
    assert s.usual.median == 2400 and s.last_duration == 90
    assert s.key_work == 35 * 60 + 90 and not fast(s)


def test_a_rerun_of_an_attempt_that_did_nothing_either_is_still_fast() -> None:
    start = tk("2026-06-08 02:05")
    rows = [*nights_of_forty_minutes(),
            row("8a", "2026-06-08", "failed", start, start + timedelta(seconds=10)),
            row("8b", "2026-06-08", "success", start + timedelta(minutes=5), start + timedelta(minutes=5, seconds=5))]
    s = summarize(rows, tk("2026-06-08 03:20"), TOKYO, MAX_DURATION)
    assert s.key_work == 15 and fast(s)
    first_only = summarize([*nights_of_forty_minutes(), row("8", "2026-06-08", "success", start,
                                                            start + timedelta(seconds=3))],
                           tk("2026-06-08 03:20"), TOKYO, MAX_DURATION)
    assert first_only.key_work == 3 and fast(first_only)


def test_a_short_rerun_of_yesterday_after_todays_normal_run_is_not_todays_fast_success() -> None:
    rows = [*nights_of_forty_minutes(),
            row("8", "2026-06-08", "success", tk("2026-06-08 02:05"), tk("2026-06-08 02:45")),
            row("7b", "2026-06-07", "success", tk("2026-06-08 03:00"), tk("2026-06-08 03:01"))]
    s = summarize(rows, tk("2026-06-08 03:20"), TOKYO, MAX_DURATION)
    assert s.last_duration == 60  # the latest finished run: yesterday's re-run
    assert s.key_work == 2400 and not fast(s)


def test_the_work_of_a_key_counts_overlaps_once_and_a_dead_attempt_not_at_all() -> None:
    t = tk("2026-06-08 02:00")
    m = timedelta(minutes=1)
    same_start = [row("a", "k", "success", t, t + 10 * m), row("b", "k", "success", t, t + 10 * m)]
    assert key_work(same_start) == 600
    # the first attempt's process died (its row still says running); the re-run began 30 minutes later
    # a crash without an end: how far it got is unknown, and the 1-minute "success" is judged alone
    dead = [row("a", "k", "running", t, None), row("b", "k", "success", t + 390 * m, t + 391 * m)]
    assert key_work(dead) == 60
    assert key_work([row("a", "k", "failed", t, t + m), row("b", "k", "running", t + 2 * m, None)]) is None
    assert key_work([row("a", "k", "success", t, t - m)]) is None  # an end before its start
    # re-run on its row (an attempt counter of 2, the first attempt's row gone): its share is not known
    assert key_work([row("b", "k", "success", t, t + m, attempt=2)]) is None
    assert key_work([row("a", "k", "failed", t, t + m, attempt=1), row("b", "k", "success", t + 2 * m, t + 3 * m,
                                                                       attempt=2)]) == 120
