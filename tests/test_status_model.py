"""The status page's model and its HTML: worst first, times in each batch's zone, masked and escaped."""
from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from batch_exporter.snapshot import SampleBuilder, Snapshot
from batch_exporter.status_model import (
    MODELLED,
    NEEDS_HISTORY,
    NEEDS_PROMETHEUS,
    RUNBOOK_BASE_URL,
    URGENCY,
    SourceReport,
    Status,
    ago,
    build_status,
    how_long,
    local_time,
)
from batch_exporter.status_page import render_status_page

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC).timestamp()
CONFIG = "/etc/batch-exporter/config.yml"
PAN = "4111111111111111"


def runs(batch: str, *, status: str = "success", code: str = "C", attempts: int = 1, idempotent: bool = False,
         start: float = NOW - 3600, end: float | None = NOW - 1800, running_seconds: float = 0.0,
         max_duration: float = 5400.0, left_pending: float = 0.0, source: str | None = None) -> Snapshot:
    b = SampleBuilder()
    for name in ("success", "failed", "running", "queued", "unknown"):
        b.add("batch_run_last_status", 1.0 if name == status else 0.0, batch=batch, status=name)
    b.add("batch_run_last_status_code", 1, batch=batch, code=code)
    b.add("batch_run_attempts", attempts, batch=batch)
    b.add("batch_run_business_date_info", 1, batch=batch, business_date="2026-11-26")
    b.add("batch_run_last_start_timestamp_seconds", start, batch=batch)
    if end is not None:
        b.add("batch_run_last_end_timestamp_seconds", end, batch=batch)
    b.add("batch_run_running", 1.0 if running_seconds else 0.0, batch=batch)
    b.add("batch_run_running_seconds", running_seconds, batch=batch)
    b.add("batch_run_pending_records", left_pending, batch=batch)
    b.add("batch_run_left_pending_records", left_pending, batch=batch)
    b.add("batch_run_idempotent", 1.0 if idempotent else 0.0, batch=batch)
    b.add("batch_run_max_duration_seconds", max_duration, batch=batch)
    return b.build(source or f"runs:{batch}")


def up(name: str, at: float = NOW - 10) -> SourceReport:
    return SourceReport(name, up=True, polled=True, last_success=at)


def build(snapshots: list[Snapshot], reports: list[SourceReport], zones: dict[str, str] | None = None,
          **kwargs: object) -> Status:
    batches = sorted({s.source.split(":", 1)[1].split("/")[0] for s in snapshots if not s.source.startswith("fleet:")}
                     | {r.name.split(":", 1)[1].split("/")[0] for r in reports if not r.name.startswith("fleet:")})
    zones = zones if zones is not None else dict.fromkeys(batches, "Asia/Tokyo")
    return build_status(snapshots, reports, now=NOW, zones=zones, config_path=CONFIG, version="1.2.3",
                        rerun_batches=zones, **kwargs)  # type: ignore[arg-type]


def test_batches_come_worst_first() -> None:
    snapshots = [
        runs("a-quiet"),
        runs("b-source-down"),
        runs("c-failed", status="failed", code="E"),
        runs("d-blind-rerun", attempts=3),
        runs("f-idempotent-rerun", attempts=2, idempotent=True),
        runs("g-left-pending", status="failed", code="A", left_pending=12),
    ]
    reports = [up(f"runs:{s.source.split(':')[1]}") for s in snapshots if s.source != "runs:b-source-down"]
    reports += [SourceReport("runs:b-source-down", up=False, polled=True, last_success=NOW - 600,
                             last_error="connect", last_error_message="database unreachable", last_failure=NOW - 5),
                SourceReport("runs:e-never-polled", up=False, polled=False)]
    status = build(snapshots, reports)
    order = [(b.batch, b.level) for b in status.batches]
    assert order == [("d-blind-rerun", "critical"), ("g-left-pending", "critical"), ("c-failed", "critical"),
                     ("b-source-down", "warning"), ("e-never-polled", "warning"), ("f-idempotent-rerun", "info"),
                     ("a-quiet", "ok")]
    # a re-run of a batch that is not idempotent outranks a failure; between two failed runs, the one
    # that also left rows pending comes first
    assert [c.alert for c in status.batches[1].conditions] == ["BatchRunFailed", "BatchRunLeftPendingRecords"]
    html = render_status_page(status).decode()
    rows = re.findall(r'<tr class="[a-z]+-row" data-batch="([^"]+)"', html)
    assert rows == [name for name, level in order if level != "ok"]  # ok batches: names in a folded list
    assert re.findall(r'<details id="ok-batches"><summary>.*?1 batch ok.*?<li>a-quiet</li>', html, flags=re.S)


def test_times_are_shown_in_the_batch_s_own_zone_across_a_dst_change() -> None:
    before = datetime(2026, 3, 8, 6, 59, tzinfo=UTC).timestamp()  # 01:59 EST, a minute before the jump
    after = datetime(2026, 3, 8, 7, 1, tzinfo=UTC).timestamp()  # 03:01 EDT
    status = build_status([runs("ny", start=before, end=after)], [up("runs:ny")], now=after + 3723,
                          zones={"ny": "America/New_York"}, config_path=CONFIG)
    [batch] = status.batches
    assert batch.time_zone == "America/New_York"
    assert batch.run.last_start is not None and batch.run.last_end is not None
    assert batch.run.last_start.local == "2026-03-08 01:59:00 EST"
    assert batch.run.last_end.local == "2026-03-08 03:01:00 EDT"
    assert batch.run.last_start.ago == "1 h 04 min ago"
    assert batch.run.last_end.ago == "1 h 02 min ago"
    assert local_time(before, ZoneInfo("Asia/Kolkata")) == "2026-03-08 12:29:00 IST"
    # a zone whose abbreviation is a number gets its offset written plainly
    assert local_time(before, ZoneInfo("America/Sao_Paulo")) == "2026-03-08 03:59:00 UTC-03:00"


def test_how_long_ago_is_counted_from_the_injected_clock() -> None:
    assert [how_long(s) for s in (0, 59, 60, 3599, 3600, 3723, 47 * 3600 + 59 * 60, 49 * 3600)] == [
        "0 s", "59 s", "1 min", "59 min", "1 h 00 min", "1 h 02 min", "47 h 59 min", "2 d 1 h"]
    assert ago(NOW - 42, NOW) == "42 s ago"
    assert ago(NOW + 300, NOW) == "in 5 min"
    assert ago(NOW - 0.4, NOW) == "now"
    later = build_status([runs("x", start=NOW - 600, end=NOW - 60)], [up("runs:x")], now=NOW + 3600,
                         zones={"x": "UTC"})
    assert later.batches[0].run.last_end is not None and later.batches[0].run.last_end.ago == "1 h 01 min ago"


def test_card_numbers_are_masked_in_names_paths_and_reasons() -> None:
    job = f"refund-{PAN}"
    fleet = SampleBuilder()
    for name in ("success", "failed", "running", "queued", "unknown"):
        fleet.add("batch_run_last_status", 1.0 if name == "failed" else 0.0, batch=job, status=name)
    logs = SampleBuilder()
    logs.add("batch_log_file_size_bytes", 900, batch="card", log="app", path=f"/var/log/pan-{PAN}.log")
    logs.add("batch_log_file_size_limit_bytes", 1000, batch="card", log="app")
    logs.add("batch_log_file_modified_timestamp_seconds", NOW - 5, batch="card", log="app",
             path=f"/var/log/pan-{PAN}.log")
    reports = [up("fleet:agent"), up("logfiles:card/app"),
               SourceReport("runs:card", up=False, polled=True, last_error="data",
                            last_error_message=f"row 3: card {PAN} is not a timestamp", last_failure=NOW - 1)]
    status = build_status([fleet.build("fleet:agent"), logs.build("logfiles:card/app")], reports, now=NOW,
                          zones={"card": "UTC"}, fleet_zones={"agent": "Europe/Paris"}, config_path=CONFIG,
                          rerun_batches=["card"])
    text = json.dumps(status.as_json()) + render_status_page(status).decode()
    assert PAN not in text
    assert "refund-************1111" in text and "pan-************1111.log" in text
    assert "card ************1111 is not a timestamp" in text
    [refund] = [b for b in status.batches if b.batch.startswith("refund")]
    assert refund.time_zone == "Europe/Paris"
    assert refund.rerun_check is None and "fleet agent" in refund.rerun_check_note


HOSTILE = '<img src=x onerror="alert(1)">'


def test_hostile_names_and_reasons_are_escaped() -> None:
    fleet = SampleBuilder()
    for name in ("success", "failed", "running", "queued", "unknown"):
        fleet.add("batch_run_last_status", 1.0 if name == "failed" else 0.0, batch=HOSTILE, status=name)
    fleet.add("batch_run_last_status_code", 1, batch=HOSTILE, code="</code><script>alert(2)</script>")
    fleet.add("batch_check_ok", 0, batch=HOSTILE, check="<b>check</b>")
    fleet.add("batch_check_value", 7, batch=HOSTILE, check="<b>check</b>")
    fleet.add("batch_log_file_size_bytes", 10, batch=HOSTILE, log="<i>log", path="/tmp/'\"><svg onload=alert(3)>")
    reports = [SourceReport("fleet:f", up=False, polled=True, last_error="query",
                            last_error_message="<script>alert(4)</script>", last_failure=NOW - 1)]
    page = render_status_page(build_status([fleet.build("fleet:f")], reports, now=NOW, zones={})).decode()
    for raw in (HOSTILE, "<script>alert", "<b>check", "<i>log", "<svg", "</code><script>"):
        assert raw not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "&lt;/code&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(4)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own


def test_a_source_down_says_why_and_a_source_never_polled_says_so() -> None:
    reports = [SourceReport("runs:card", up=False, polled=True, last_success=NOW - 900, last_error="connect",
                            last_error_message="cannot open SQLite file /data/pay.db: unable to open database file",
                            last_failure=NOW - 15),
               SourceReport("checks:card", up=False, polled=False),
               SourceReport("runs:new", up=False, polled=False)]
    status = build([runs("card")], reports)
    card, new = status.batches
    assert card.batch == "card" and card.level == "warning"
    [condition] = card.conditions
    assert condition.alert == "BatchExporterSourceDown" and "runs:card (connect)" in condition.summary
    assert "checks:card (not polled yet)" in condition.summary  # a first poll that hangs is down too
    by_name = {s.source: s for s in card.sources}
    assert by_name["runs:card"].state == "down (connect)"
    assert by_name["runs:card"].message.startswith("cannot open SQLite file")
    assert by_name["runs:card"].last_failure is not None and by_name["runs:card"].last_failure.ago == "15 s ago"
    assert by_name["checks:card"].state == "not polled yet" and by_name["checks:card"].reason is None
    assert new.level == "warning" and not new.run.known
    assert [c.alert for c in new.conditions] == ["BatchExporterSourceDown"]
    page = render_status_page(status).decode()
    assert "down (connect)" in page and "unable to open database file" in page
    assert "no run in the lookback window, or the run table not read yet" in page
    as_json = status.as_json()
    [source] = [s for s in as_json["batches"][0]["sources"] if s["source"] == "runs:card"]
    assert source["up"] is False and source["reason"] == "connect" and source["state"] == "down (connect)"


def test_conditions_link_the_runbooks_the_alert_rules_link() -> None:
    pack = yaml.safe_load((REPO / "alerts" / "pack.yml").read_text())
    assert pack["runbook_base_url"] == RUNBOOK_BASE_URL
    rules = yaml.safe_load((REPO / "alerts" / "batch-exporter.rules.yml").read_text())
    urls = {rule["alert"]: rule["annotations"]["runbook_url"]
            for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    for alert in URGENCY:
        assert urls[alert] == f"{RUNBOOK_BASE_URL}/{alert}.md"
        assert (REPO / "alerts" / "runbooks" / f"{alert}.md").is_file()
    status = build([runs("card", status="failed", code="E", attempts=2)], [up("runs:card")])
    page = render_status_page(status).decode()
    assert f'href="{RUNBOOK_BASE_URL}/BatchRunFailed.md"' in page
    assert f'href="{RUNBOOK_BASE_URL}/BatchRerunOfNonIdempotentBatch.md"' in page


def test_the_rerun_check_command_names_the_configuration_as_started() -> None:
    path = "/srv/batch exporter/it's.yml"
    status = build_status([runs("card")], [up("runs:card")], now=NOW, zones={"card": "UTC"}, config_path=path,
                          rerun_batches=["card"])
    command = status.batches[0].rerun_check
    assert command == "batch-exporter rerun-check -c '/srv/batch exporter/it'\"'\"'s.yml' card"
    assert command is not None and shlex.split(command)[3] == path


def test_running_too_long_and_a_log_near_its_cap() -> None:
    logs = SampleBuilder()
    logs.add("batch_log_file_size_limit_bytes", 1000, batch="card", log="sdk")
    for path, size, modified in (("/l/old.log", 999, NOW - 86400), ("/l/live.log", 985, NOW - 30)):
        logs.add("batch_log_file_size_bytes", size, batch="card", log="sdk", path=path)
        logs.add("batch_log_file_modified_timestamp_seconds", modified, batch="card", log="sdk", path=path)
    status = build([runs("card", status="running", end=None, running_seconds=7200, max_duration=5400),
                    logs.build("logfiles:card/sdk")], [up("runs:card"), up("logfiles:card/sdk")])
    [batch] = status.batches
    alerts = {c.alert: c for c in batch.conditions}
    assert alerts["BatchRunTooLong"].severity == "critical" and "2 h 00 min" in alerts["BatchRunTooLong"].summary
    # the live file (written last) is the one the size alert watches, as the rules do
    assert alerts["BatchLogFileNearSizeLimit"].severity == "critical"
    assert "/l/live.log" in alerts["BatchLogFileNearSizeLimit"].summary and "98%" in alerts[
        "BatchLogFileNearSizeLimit"].summary
    page = render_status_page(status).decode()
    assert "against max_duration 1 h 30 min" in page


def test_missing_data_is_said_plainly() -> None:
    status = build_status([], [], now=NOW, zones={"quiet": "UTC"}, config_path=None)
    [batch] = status.batches
    assert batch.level == "ok" and not batch.run.known and batch.conditions == ()
    assert batch.rerun_check is None and "not started from a configuration file" in batch.rerun_check_note
    page = render_status_page(status).decode()
    assert "<li>quiet</li>" in page  # ok: no card, and the JSON says what is missing
    assert json.loads(json.dumps(status.as_json()))["batches"][0]["run"] is None
    assert b"No batch is configured." in render_status_page(build_status([], [], now=NOW, zones={}))


# --- the alert rules the page mirrors -------------------------------------------------------------------

RULES_SOURCE = REPO / "alerts" / "src" / "batch-exporter.rules.yml"


def rule_alerts() -> dict[str, list[str]]:
    """Every alert of the rules' source, with its expressions (the pack's [[parameters]] made plain words)."""
    text = re.sub(r"\[\[(\w+)\]\]", r"PARAM_\1", RULES_SOURCE.read_text(encoding="utf-8"))
    alerts: dict[str, list[str]] = {}
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                alerts.setdefault(rule["alert"], []).append(rule["expr"])
    return alerts


def test_every_per_batch_alert_is_modelled_or_said_why_not() -> None:
    # with a batch label: a series of a batch (batch_run_*, batch_log_*, ..., a source's: its name holds the
    # batch) or the label `batch` set or kept by name; not up{}, vector(1) or batch_exporter_series_dropped
    batch_label = re.compile(r"\bbatch_(run|log|check|schedule)_|\bbatch_exporter_source_|\bbatch\b(?!_)")
    per_batch = {alert for alert, exprs in rule_alerts().items() if any(batch_label.search(e) for e in exprs)}
    assert {"BatchRunFailed", "BatchNoRecentSuccess", "BatchLogErrors"} <= per_batch
    assert "Watchdog" not in per_batch and "BatchExporterSeriesCapReached" not in per_batch
    not_modelled = set(NEEDS_HISTORY) | set(NEEDS_PROMETHEUS)
    assert not MODELLED & not_modelled
    assert per_batch == MODELLED | not_modelled, (per_batch - MODELLED - not_modelled, MODELLED - per_batch)
    assert all(reason for reason in (*NEEDS_HISTORY.values(), *NEEDS_PROMETHEUS.values()))
    doc = (REPO / "docs" / "status-page.md").read_text(encoding="utf-8")
    for alert in per_batch:
        assert f"`{alert}`" in doc, alert


def samples(batch: str, source: str, rows: list[tuple[str, float, dict[str, str]]]) -> Snapshot:
    b = SampleBuilder()
    for name, value, labels in rows:
        b.add(name, value, batch=batch, **labels)
    return b.build(f"{source}:{batch}")


def with_samples(snapshot: Snapshot, rows: list[tuple[str, float, dict[str, str]]]) -> Snapshot:
    return Snapshot(snapshot.source, snapshot.samples + samples(snapshot.source.split(":")[1], "x", rows).samples)


def schedule(batch: str, expected: float, *, grace: float = 600, watched: float = NOW - 30 * 86400,
             deadline: float | None = None) -> Snapshot:
    rows: list[tuple[str, float, dict[str, str]]] = [
        ("batch_schedule_last_expected_timestamp_seconds", expected, {}),
        ("batch_schedule_next_expected_timestamp_seconds", expected + 86400, {}),
        ("batch_schedule_grace_seconds", grace, {}),
        ("batch_schedule_watched_since_timestamp_seconds", watched, {}),
        ("batch_schedule_paused", 0, {})]
    if deadline is not None:
        rows.append(("batch_schedule_finish_deadline_timestamp_seconds", deadline, {}))
    return samples(batch, "schedule", rows)


def usual(median: float, p90: float) -> list[tuple[str, float, dict[str, str]]]:
    return [("batch_run_usual_duration_seconds", median, {"quantile": "0.5"}),
            ("batch_run_usual_duration_seconds", p90, {"quantile": "0.9"})]


def alerts_of(snapshots: list[Snapshot]) -> tuple[str, dict[str, str]]:
    reports = [up(s.source) for s in snapshots]
    [batch] = build(snapshots, reports).batches
    return batch.level, {c.alert: c.severity for c in batch.conditions}


def test_no_recent_success_pages_even_when_the_latest_status_is_unknown() -> None:
    run = with_samples(runs("b", status="unknown", start=NOW - 3 * 3600 + 60, end=NOW - 3 * 3600 + 600),
                       [("batch_run_last_success_timestamp_seconds", NOW - 2 * 86400, {})])
    assert alerts_of([run, schedule("b", NOW - 3 * 3600)]) == ("critical", {"BatchNoRecentSuccess": "critical"})
    # the success deadline adds max_duration (5400 s here) to the grace: not yet past it, not yet paged
    started = with_samples(runs("b", status="unknown", start=NOW - 3000, end=NOW - 2000),
                           [("batch_run_last_success_timestamp_seconds", NOW - 2 * 86400, {})])
    assert alerts_of([started, schedule("b", NOW - 3600)]) == ("unknown", {})


def test_a_latest_status_unknown_is_never_ok() -> None:
    level, found = alerts_of([runs("b", status="unknown")])
    assert (level, found) == ("unknown", {})


def test_a_log_silent_while_the_batch_runs() -> None:
    run = runs("b", status="running", start=NOW - 2400, end=None, running_seconds=2400)
    log = samples("b", "logfiles", [
        ("batch_log_file_size_bytes", 1000, {"log": "app", "path": "/l/app.log"}),
        ("batch_log_file_modified_timestamp_seconds", NOW - 2000, {"log": "app", "path": "/l/app.log"})])
    assert alerts_of([run, log]) == ("warning", {"BatchLogSilentWhileRunning": "warning"})
    written = samples("b", "logfiles", [
        ("batch_log_file_modified_timestamp_seconds", NOW - 800, {"log": "app", "path": "/l/app.log"})])
    assert alerts_of([run, written]) == ("ok", {})


def test_a_success_its_log_or_a_check_contradicts() -> None:
    for pattern, contradicted in (("ERROR", True), ("fatal", True), ("sdk_error", False), ("warn", False)):
        run = with_samples(runs("b"), [("batch_run_latest_log_matches", 12, {"log": "app", "pattern": pattern})])
        assert alerts_of([run]) == (("warning", {"BatchSuccessContradicted": "warning"}) if contradicted
                                    else ("ok", {})), pattern
    check = samples("b", "checks", [("batch_check_value", 3, {"check": "sums"}),
                                    ("batch_check_ok", 0, {"check": "sums"})])
    assert alerts_of([runs("b"), check])[1] == {"BatchCheckFailed": "critical", "BatchSuccessContradicted": "warning"}
    assert alerts_of([runs("b", status="failed"), check])[1] == {"BatchCheckFailed": "critical",
                                                                  "BatchRunFailed": "critical"}


def test_runs_against_their_usual_duration() -> None:
    slow = with_samples(runs("b", status="running", start=NOW - 3 * 3600, end=None, running_seconds=3 * 3600,
                             max_duration=0), usual(600, 1200))
    assert alerts_of([slow]) == ("warning", {"BatchRunFarLongerThanUsual": "warning"})
    past_max = with_samples(runs("b", status="running", start=NOW - 3 * 3600, end=None, running_seconds=3 * 3600,
                                 max_duration=3600), usual(600, 1200))
    assert alerts_of([past_max])[1] == {"BatchRunTooLong": "critical"}  # TooLong takes over, as in the rules
    fast = with_samples(runs("b"), [("batch_run_last_duration_seconds", 30, {}),
                                    ("batch_run_key_work_seconds", 30, {}), *usual(600, 1200)])
    assert alerts_of([fast]) == ("warning", {"BatchRunSuspiciouslyFast": "warning"})
    usual_pace = with_samples(runs("b"), [("batch_run_last_duration_seconds", 61, {}),
                                          ("batch_run_key_work_seconds", 61, {}), *usual(600, 1200)])
    assert alerts_of([usual_pace]) == ("ok", {})
    # a re-run that finished in 30 s what its key's failed attempt left after 9 minutes: judged on the
    # key's whole work, as the rule does; and not judged where that work is not known (no series)
    resumed = with_samples(runs("b", attempts=2), [("batch_run_last_duration_seconds", 30, {}),
                                                   ("batch_run_key_work_seconds", 570, {}), *usual(600, 1200)])
    assert "BatchRunSuspiciouslyFast" not in alerts_of([resumed])[1]
    unknown_share = with_samples(runs("b", attempts=2), [("batch_run_last_duration_seconds", 30, {}),
                                                         *usual(600, 1200)])
    assert "BatchRunSuspiciouslyFast" not in alerts_of([unknown_share])[1]


def test_finish_deadlines_missed_and_at_risk() -> None:
    late = with_samples(runs("b", start=NOW - 2 * 86400), [("batch_run_last_success_timestamp_seconds",
                                                             NOW - 2 * 86400 + 600, {})])
    level, found = alerts_of([late, schedule("b", NOW - 4 * 3600, deadline=NOW - 60)])
    assert level == "critical" and found["BatchFinishDeadlineMissed"] == "critical"
    # running for 50 min of a usual 60 (0.9: 80): projected to end 10 + 20 min from now, the deadline in 15
    running = with_samples(runs("b", status="running", start=NOW - 3000, end=None, running_seconds=3000),
                           [("batch_run_last_success_timestamp_seconds", NOW - 86400, {}), *usual(3600, 4800)])
    assert alerts_of([running, schedule("b", NOW - 3000, deadline=NOW + 900)]) == (
        "warning", {"BatchFinishDeadlineAtRisk": "warning"})
    assert alerts_of([running, schedule("b", NOW - 3000, deadline=NOW + 2400)]) == ("ok", {})
    # today's start was due 2 hours ago and never made; the run in progress is a re-run of an earlier business
    # date (the latest start is still the earlier date's): projected as not started, now + 80 min
    rerun = with_samples(runs("b", status="running", start=NOW - 86400, end=None, running_seconds=600),
                         [("batch_run_last_success_timestamp_seconds", NOW - 2 * 86400, {}), *usual(3600, 4800)])
    found = alerts_of([rerun, schedule("b", NOW - 7200, deadline=NOW + 3600)])[1]
    assert found["BatchFinishDeadlineAtRisk"] == "warning" and found["BatchRunMissed"] == "critical"


def test_a_deadline_missed_by_a_batch_that_never_ran_needs_no_grace_and_the_deadline_instant_says_nothing(
) -> None:
    never = samples("b", "runs", [("batch_run_attempts", 0, {})])
    no_grace = Snapshot("schedule:b", tuple(s for s in schedule("b", NOW - 1800, deadline=NOW - 600).samples
                                            if s.name != "batch_schedule_grace_seconds"))
    assert alerts_of([never, no_grace])[1] == {"BatchFinishDeadlineMissed": "critical"}  # the rule's second branch
    started = with_samples(runs("b", start=NOW - 3000, end=None, status="running", running_seconds=3000),
                           [("batch_run_last_success_timestamp_seconds", NOW - 86400, {}), *usual(300, 300)])
    found = alerts_of([started, schedule("b", NOW - 600, grace=1800, deadline=NOW)])[1]
    assert not {"BatchFinishDeadlineMissed", "BatchFinishDeadlineAtRisk"} & set(found)  # neither rule holds


def test_a_run_table_not_read_yet_is_no_missed_run() -> None:
    reports = [up("schedule:b"), SourceReport("runs:b", up=False, polled=False)]
    [batch] = build([schedule("b", NOW - 3600)], reports).batches
    # no BatchRunMissed; the source not polled is down, as BatchExporterSourceDown sees it (source_up 0)
    assert [(c.alert, c.summary) for c in batch.conditions] == [
        ("BatchExporterSourceDown", "Failing: runs:b (not polled yet); their last good data is shown.")]
    never = samples("b", "runs", [("batch_run_attempts", 0, {})])  # read, and no run at all
    assert alerts_of([never, schedule("b", NOW - 3600)])[1] == {"BatchRunMissed": "critical"}


def test_a_failure_pages_with_its_start_only_and_its_code_as_stored() -> None:
    failed = runs("b", status="failed", code="E'1")
    [batch] = build([failed], [up("runs:b")]).batches
    assert batch.conditions[0].summary == 'The latest run failed (status "E\'1" in the run table).'
    no_start = Snapshot(failed.source, tuple(s for s in failed.samples
                                             if s.name != "batch_run_last_start_timestamp_seconds"))
    assert alerts_of([no_start])[1] == {}


def test_near_the_cap_is_the_worst_of_the_files_written_last() -> None:
    logs = SampleBuilder()
    logs.add("batch_log_file_size_limit_bytes", 1000, batch="b", log="sdk")
    for path, size in (("/l/a.log", 100), ("/l/b.log", 950)):  # both written in the same second
        logs.add("batch_log_file_size_bytes", size, batch="b", log="sdk", path=path)
        logs.add("batch_log_file_modified_timestamp_seconds", NOW - 30, batch="b", log="sdk", path=path)
    [batch] = build([logs.build("logfiles:b/sdk")], [up("logfiles:b/sdk")]).batches
    [near] = batch.conditions
    assert near.alert == "BatchLogFileNearSizeLimit" and "/l/b.log" in near.summary and "95%" in near.summary


def test_pending_rows_not_known_are_not_nan() -> None:
    run = runs("b", left_pending=float("nan"), attempts=2, idempotent=True)  # info: it gets a card
    run = Snapshot(run.source, tuple(s for s in run.samples if s.name != "batch_run_pending_records")
                   + samples("b", "x", [("batch_run_pending_records", 3, {})]).samples)
    status = build([run], [up("runs:b")])
    assert status.batches[0].level == "info"
    assert [c.alert for c in status.batches[0].conditions] == ["BatchRerunDetected"]
    page = render_status_page(status).decode()
    assert "nan" not in page.lower()
    assert "? left pending by ended attempts, 3 pending in all" in page
    served = json.loads(json.dumps(status.as_json(), allow_nan=False))
    assert served["batches"][0]["run"]["left_pending_records"] is None


def test_an_idempotent_batch_is_said_configured_so() -> None:
    status = build([runs("b", attempts=2, idempotent=True)], [up("runs:b")])
    page = render_status_page(status).decode()
    assert "configured as idempotent" in page and "harmless" not in page


def test_batches_the_series_cap_hides_from_prometheus_are_named() -> None:
    fleet = runs("job-1", source="fleet:big")
    status = build([runs("card"), fleet, runs("quiet")], [up("runs:card"), up("runs:quiet"), up("fleet:big")],
                   unexported=["fleet:big", "logfiles:card/sdk"])
    assert status.unexported_batches == ("card", "job-1") and status.unexported_sources == (
        "fleet:big", "logfiles:card/sdk")
    page = render_status_page(status).decode()
    banner = re.search(r'<div id="unexported".*?</div>', page, flags=re.S)
    assert banner is not None and "Prometheus cannot alert on 2 batches" in banner.group(0)
    assert "card, job-1" in banner.group(0) and "quiet" not in banner.group(0)
    assert status.as_json()["unexported"] == {"sources": ["fleet:big", "logfiles:card/sdk"],
                                              "batches": ["card", "job-1"]}
    assert 'id="unexported"' not in render_status_page(build([runs("card")], [up("runs:card")])).decode()
