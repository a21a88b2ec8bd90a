"""Run-table rows to contract numbers: latest run, attempts, durations, status counts."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.runsummary import RunRow, map_status, parse_run_row, records_by_state, start_order, summarize

pytestmark = pytest.mark.clock

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def run(run_id: str, status: str, start_h: float, dur_h: float | None, biz: str | None = None) -> RunRow:
    start = NOW - timedelta(hours=start_h)
    end = start + timedelta(hours=dur_h) if dur_h is not None else None
    return RunRow(run_id, biz, status, start, end)


def test_empty_history() -> None:
    s = summarize([], NOW, TOKYO)
    assert s.latest is None and s.last_start is None and s.attempts == 0 and s.running == 0
    assert s.by_status == {"success": 0, "failed": 0, "running": 0, "queued": 0, "unknown": 0}


def test_failure_then_rerun_running() -> None:
    rows = [
        run("1", "success", 48, 1, "2026-11-26"),
        run("2", "failed", 24, 0.5, "2026-11-27"),
        run("3", "running", 2, None, "2026-11-27"),
    ]
    s = summarize(rows, NOW, TOKYO)
    assert s.latest is not None and s.latest.run_id == "3"
    assert s.attempts == 2
    assert s.running == 1 and s.running_seconds == 7200
    assert s.last_end == rows[1].ended_at  # latest finished run is the failed one
    assert s.last_duration == 1800
    assert s.last_success == rows[0].ended_at
    assert s.by_status == {"success": 1, "failed": 1, "running": 1, "queued": 0, "unknown": 0}


def test_business_date_falls_back_to_local_start_date() -> None:
    # 17:30 UTC and 16:30 UTC on the 27th are the 28th in Tokyo (UTC+9): one business date, two attempts
    rows = [
        RunRow("a", None, "failed", datetime(2026, 11, 27, 16, 30, tzinfo=UTC),
               datetime(2026, 11, 27, 16, 40, tzinfo=UTC)),
        RunRow("b", None, "success", datetime(2026, 11, 27, 17, 30, tzinfo=UTC),
               datetime(2026, 11, 27, 18, 0, tzinfo=UTC)),
    ]
    assert summarize(rows, NOW, TOKYO).attempts == 2
    assert summarize(rows, NOW, ZoneInfo("UTC")).attempts == 2
    assert summarize(rows, NOW, ZoneInfo("America/New_York")).attempts == 2
    rows[0] = RunRow("a", None, "failed", datetime(2026, 11, 27, 14, 30, tzinfo=UTC), None)
    assert summarize(rows, NOW, TOKYO).attempts == 1  # 23:30 on the 27th in Tokyo


def test_status_mapping() -> None:
    mapping = {"success": ["OK", "0"], "failed": ["NG"], "running": ["RUN"]}
    assert map_status("OK", mapping) == "success"
    assert map_status("0", mapping) == "success"
    assert map_status("NG", mapping) == "failed"
    assert map_status("??", mapping) == "unknown"
    assert map_status(None, mapping) == "unknown"


# --- rows as drivers return them: shared by the exporter's runs source and rerun-check ---------------

MAPPING = {"success": ["OK", "0"], "failed": ["NG"], "running": ["RUN"]}


def test_a_run_row_is_read_from_driver_values() -> None:
    raw = (Decimal(7), datetime(2026, 11, 26, 23, 0), b"NG  ", "2026-11-27 02:00:01.5", 1764176400)
    row, code = parse_run_row(raw, MAPPING, TOKYO)
    assert row == RunRow("7", "2026-11-26", "failed", datetime(2026, 11, 26, 17, 0, 1, 500000, tzinfo=UTC),
                         datetime(2025, 11, 26, 17, 0, tzinfo=UTC), code="NG")
    assert code == "NG"  # the code as the table holds it, blank padding dropped
    row, code = parse_run_row((1, None, 0, None, None, None, None, None, "extra column"), MAPPING, TOKYO)
    assert (row.business_date, row.status, code, row.started_at) == (None, "success", "0", None)


@pytest.mark.parametrize(("raw", "message"), [
    ((1, None, "OK", "4111111111111111x", None), "column started_at: text of length 17 is not an ISO-8601"),
    ((1, None, object(), None, None), "column status: expected a code, got a value of type object"),
    ((1, b"\xff", "OK", None, None), "column business_date: bytes of length 1 is not UTF-8"),
    ((1, None, "OK"), "expected 5 columns, got 3"),
])
def test_a_run_row_that_cannot_be_read_names_the_column_never_the_value(raw: tuple[object, ...],
                                                                        message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_run_row(raw, MAPPING, TOKYO)
    assert "4111" not in str(caught.value)


def test_records_are_summed_by_state() -> None:
    rows = [("AUTHORIZING ", Decimal(2)), (None, None), ("AUTHORIZING", 1.5), (b"APPROVED", True), ("x", 0, "more")]
    assert records_by_state(rows) == {"AUTHORIZING": 3.5, "": 0.0, "APPROVED": 1.0, "x": 0.0}
    # states shown another way (masked) and then equal are one state
    assert records_by_state([("card 1", 1), ("card 2", 2)], state_text=lambda s: s[:4]) == {"card": 3.0}
    assert records_by_state([]) == {}


@pytest.mark.parametrize(("rows", "message"), [
    ([("A", 1), ("B",)], "expected two columns, state and count (row 2 has 1)"),
    ([("A", "4111111111111111x")], "row 1: text of length 17 is not a number"),
    ([("A", 1), (float("nan"), 1)], "row 2: expected a code, got a non-finite float"),
])
def test_records_that_cannot_be_read_name_the_row(rows: list[tuple[object, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        records_by_state(rows)
    assert "4111" not in str(caught.value)


def test_runs_are_ordered_by_start_unknown_first() -> None:
    rows = [run("b", "success", 1, 1), RunRow("z", None, "unknown", None, None), run("a", "success", 1, 1),
            run("c", "failed", 5, 1)]
    assert [r.run_id for r in sorted(rows, key=start_order)] == ["z", "c", "a", "b"]


def slot(hour: int, minute: int) -> str:
    return datetime(2026, 11, 28, hour, minute, tzinfo=TOKYO).isoformat(timespec="seconds")


def test_a_rerun_of_an_earlier_slot_is_reported_beside_the_latest_key() -> None:
    """A 15-minute schedule: the 11:30 slot is cleared and re-run (Airflow: one row, attempt 2) while the
    11:45 slot, the latest key, ran once. Attempts stay on the latest key, and the earlier slot's re-run
    is reported of its own (batch_run_earlier_key_attempts), for 24 hours from when it began."""
    rerun = RunRow("s1130", slot(11, 30), "running", NOW - timedelta(minutes=2), None, attempt=2)
    latest = RunRow("s1145", slot(11, 45), "success", NOW - timedelta(minutes=14), NOW - timedelta(minutes=12))
    s = summarize([rerun, latest], NOW, TOKYO)
    assert s.attempts == 1 and s.latest is latest
    assert s.earlier_rerun == (slot(11, 30), 2)
    assert summarize([rerun, latest], NOW + timedelta(hours=25), TOKYO).earlier_rerun is None
    # the latest key's own re-run is batch_run_attempts' business, not this
    again = RunRow("s1145b", slot(11, 45), "running", NOW - timedelta(minutes=1), None)
    s = summarize([latest, again], NOW, TOKYO)
    assert s.attempts == 2 and s.earlier_rerun is None


def test_a_rerun_of_yesterday_after_today_s_run_is_reported() -> None:
    rows = [run("1", "failed", 30, 0.5, "2026-11-27"), run("2", "success", 4, 0.5, "2026-11-28"),
            run("3", "running", 0.2, None, "2026-11-27")]
    s = summarize(rows, NOW, TOKYO)
    assert s.latest is not None and s.latest.run_id == "2" and s.attempts == 1
    assert s.earlier_rerun == ("2026-11-27", 2)


def test_a_rerun_made_while_its_date_was_the_latest_is_not_reported_again() -> None:
    """Yesterday failed and was re-run yesterday (batch_run_attempts said 2 then); today's run began after:
    no second report of yesterday's re-run as an earlier key's."""
    rows = [run("1", "failed", 30, 0.5, "2026-11-27"), run("2", "success", 28, 0.5, "2026-11-27"),
            run("3", "success", 4, 0.5, "2026-11-28")]
    s = summarize(rows, NOW, TOKYO)
    assert s.attempts == 1 and s.earlier_rerun is None
