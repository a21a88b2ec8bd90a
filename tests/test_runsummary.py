"""Run-table rows to contract numbers: latest run, attempts, durations, status counts."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from batch_exporter.runsummary import RunRow, map_status, summarize

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def run(run_id: str, status: str, start_h: float, dur_h: float | None, biz: str | None = None) -> RunRow:
    start = NOW - timedelta(hours=start_h)
    end = start + timedelta(hours=dur_h) if dur_h is not None else None
    return RunRow(run_id, biz, status, start, end)


def test_empty_history() -> None:
    s = summarize([], NOW, TOKYO)
    assert s.latest is None and s.last_start is None and s.attempts == 0 and s.running == 0
    assert s.by_status == {"success": 0, "failed": 0, "running": 0, "unknown": 0}


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
    assert s.by_status == {"success": 1, "failed": 1, "running": 1, "unknown": 0}


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
