"""`batch-exporter drill` and `demo --stack`: faults injected into the demo, alerts through real servers.

The scenario tests share one prepared demo, one in-process exporter and one real Prometheus +
Alertmanager (started from the shipped files with the drill's short timings), and run the scenarios
one after another as `drill all` does. The command-line tests run `python -m batch_exporter.cli drill`
(what `batch-exporter drill` calls) as a user would. The tests of what the holiday, deadline-miss and
fast-success drills write run the drill's world on a fixed clock and read it with the exporter's own
sources on that clock, so they hold at any hour.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_exporter.config import load_config
from batch_exporter.database import open_database
from batch_exporter.practice.demo import prepare_demo
from batch_exporter.practice.demo_sim import TOKYO
from batch_exporter.practice.drill.live import LiveDrill
from batch_exporter.practice.drill.promtool import PromtoolDrill, promtool_report
from batch_exporter.practice.drill.report import Progress, timeline
from batch_exporter.practice.drill.scenarios import (
    BY_NAME,
    FAST_SECONDS,
    HOLIDAY_WITHOUT_CALENDAR,
    Scenario,
    finish_by_passed,
)
from batch_exporter.practice.drill.target import DemoTarget, TargetError, open_target
from batch_exporter.practice.drill.world import BATCH, DrillWorld
from batch_exporter.practice.stack import PromStack, ShippedFiles, WebhookRecorder, wait_until
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.batchinfo import BatchInfoSource
from batch_exporter.sources.runs import RunsSource
from process_tree import alive, children_of, reaped
from promstack import REPO_ROOT

TABLES = ("job_execution", "auth_request", "settlement")
# Which receiver each drill must reach with the shipped routing (critical -> pager, warning -> ticket).
RECEIVERS = {
    "log-limit": {"pager"},
    "log-silent": {"ticket"},
    "failed-run": {"pager", "ticket"},
    "blind-rerun": {"pager", "ticket"},
    "crash-no-rollback": {"pager"},
    "missed-run": {"pager"},
    "db-down": {"ticket"},
    "holiday": set(),  # stays quiet: nothing may reach a receiver
    "deadline-miss": {"pager"},
    "fast-success": {"ticket"},
}
# The holiday drill run without its calendar, as a scenario that must stay quiet: it must fail.
HOLIDAY_WITHOUT_CALENDAR_KEPT_QUIET = replace(BY_NAME["holiday"], name="holiday-calendar-left-out",
                                              inject=HOLIDAY_WITHOUT_CALENDAR.inject)


def db_state(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the demo's tables, read-only."""
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in TABLES}
    finally:
        conn.close()


def logs_state(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and modification time of every file under logs/."""
    return {path.relative_to(folder).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                  path.stat().st_mtime_ns)
            for path in sorted((folder / "logs").rglob("*")) if path.is_file()}


def drill_cli(tmp_path: Path, *args: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`batch-exporter drill ARGS`, its scratch folder (kept when a drill fails) under `tmp_path`."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "batch_exporter.cli", "drill", *args], capture_output=True,
                          text=True, timeout=200, env={**os.environ, "TMPDIR": str(scratch), **(env or {})},
                          check=False)


def path_with_only(tmp_path: Path, *names: str) -> str:
    """A PATH holding links to just these binaries."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in names:
        found = subprocess.run(["which", name], capture_output=True, text=True, check=True).stdout.strip()
        (folder / name).symlink_to(found)
    return str(folder)


# --- every scenario against real Prometheus and Alertmanager -------------------------------------------


@dataclass
class Session:
    drill: LiveDrill
    world: DrillWorld
    database: Path
    baseline: dict[str, list[tuple[Any, ...]]]
    config: str  # the drill's config as prepared


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    scratch = tmp_path_factory.mktemp("drill")
    target = open_target(tmp_path_factory.mktemp("demo") / "demo", scratch)
    world = DrillWorld(target, scratch)
    try:
        world.prepare()
        with WebhookRecorder() as hook:
            address = world.start_exporter(serve=True)
            assert address is not None
            with PromStack(scratch / "stack", exporter_targets=[address], webhook_base=hook.url,
                           shipped=ShippedFiles.from_root(REPO_ROOT)) as stack:
                drill = LiveDrill(world, stack, hook, Progress(io.StringIO()), timeout=60)
                assert drill.wait_ready() == []  # the prepared demo raises nothing by itself
                yield Session(drill, world, target.paths.database, db_state(target.paths.database),
                              world.config_path.read_text(encoding="utf-8"))
    finally:
        world.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BY_NAME))
def test_drill_delivers_its_alerts_and_restores_the_demo(session: Session, name: str) -> None:
    result = session.drill.run(BY_NAME[name])
    report = timeline(result)
    assert result.ok, report
    if result.scenario.stays_quiet:  # watched for the whole window, and nothing of the batch fired
        assert result.quiet_for == session.drill.quiet_seconds and result.others == set(), report
        assert "result: OK, no alert of the batch fired" in report
    for alert in result.alerts:
        assert alert.firing_at is not None and alert.delivered_at is not None, report
        assert result.injected_at <= alert.firing_at <= alert.delivered_at + 1, report
        assert alert.resolved_at is not None or alert.expected.outlasts_restore, report
    assert {alert.receiver for alert in result.alerts} == RECEIVERS[name], report
    # and nothing else reached a receiver: no other alert (the same alert for a sibling source of the
    # fault, such as the other batch on a database taken away, is the drill's too), and the expected
    # ones only at their receiver
    expected = {(t.expected.alertname, t.receiver) for t in result.alerts}
    others = sorted({(n.receiver, sent["labels"].get("alertname", "?"))
                     for n in session.drill.hook.notifications() if n.received_at >= result.injected_at
                     for sent in n.payload.get("alerts", []) if sent.get("status") == "firing"
                     and (sent["labels"].get("alertname"), n.receiver) not in expected})
    assert others == [], report
    assert db_state(session.database) == session.baseline
    assert session.world.config_path.read_text(encoding="utf-8") == session.config


@pytest.mark.slow
def test_without_its_calendar_the_holiday_pages_within_the_quiet_window(session: Session) -> None:
    """The negative control: the holiday's runs without the calendar page BatchRunMissed, well within the
    time the holiday drill watches for quiet; watched as a quiet scenario, they fail it, named."""
    control = session.drill.run(HOLIDAY_WITHOUT_CALENDAR)
    report = timeline(control)
    assert control.ok, report
    (missed,) = control.alerts
    assert missed.receiver == "pager" and missed.delivered_at is not None, report
    assert missed.delivered_at - control.injected_at < session.drill.quiet_seconds, report

    kept_quiet = session.drill.run(HOLIDAY_WITHOUT_CALENDAR_KEPT_QUIET)
    report = timeline(kept_quiet)
    assert not kept_quiet.ok, report
    assert "BatchRunMissed (critical)" in kept_quiet.others, report
    assert "quiet?     FIRED: BatchRunMissed (critical)" in report and "result: FAILED" in report
    assert db_state(session.database) == session.baseline


@pytest.mark.slow
def test_the_drill_world_learns_the_usual_duration_from_the_demo_history(session: Session) -> None:
    world = session.world
    runs = world.exported("batch_run_usual_duration_runs", batch=BATCH)
    needed = world.exported("batch_run_usual_duration_min_runs", batch=BATCH)
    median = world.exported("batch_run_usual_duration_seconds", batch=BATCH, quantile="0.5")
    assert runs is not None and needed is not None and median is not None
    # the demo's fourteen nights in the 14-day lookback (40-70 minutes each); tonight's run, the latest
    # business date, is not its own yardstick
    assert runs >= needed >= 5
    assert 40 * 60 <= median <= 70 * 60
    assert 0.1 * median > FAST_SECONDS
    # and tonight's run is no suspiciously fast success itself
    last = world.exported("batch_run_last_duration_seconds", batch=BATCH)
    assert last is not None and last >= 0.1 * median


# --- what the expectation drills write, on a fixed clock ----------------------------------------------


def sample(snapshot: Snapshot, name: str, **labels: str) -> float | None:
    return next((s.value for s in snapshot.samples
                 if s.name == name and all(dict(s.labels).get(k) == v for k, v in labels.items())), None)


@dataclass
class FixedWorld:
    """A drill world prepared on a fixed clock, read with the exporter's own sources on that clock."""

    world: DrillWorld
    now: float

    def info(self) -> Snapshot:
        config = load_config(self.world.config_path)
        return BatchInfoSource(BATCH, config.batches[BATCH], clock=lambda: self.now,
                               calendars=config.calendars).poll()

    def runs(self) -> Snapshot:
        config = load_config(self.world.config_path)
        database = open_database("payments", sqlite=str(self.world.target.paths.database))
        return RunsSource(BATCH, config.batches[BATCH], database, text_timestamps=True,
                          clock=lambda: self.now).poll()

    def value(self, snapshot: Snapshot, name: str, **labels: str) -> float:
        found = sample(snapshot, name, batch=BATCH, **labels)
        assert found is not None, f"{name}{labels} not exported"
        return found


@pytest.fixture()
def fixed_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FixedWorld]:
    """The drill's world at `request.param` (Tokyo time), on a demo made `demo_age` earlier (default: a
    minute, a fresh demo)."""
    at, demo_age = request.param if isinstance(request.param, tuple) else (request.param, timedelta(minutes=1))
    now = at.timestamp()
    prepare_demo(tmp_path / "demo", now=datetime.fromtimestamp(now, UTC) - demo_age)
    (tmp_path / "scratch").mkdir()
    target = open_target(tmp_path / "demo", tmp_path / "scratch")
    world = DrillWorld(target, tmp_path / "scratch", clock=lambda: now)
    try:
        world.prepare()
        yield FixedWorld(world, now)
    finally:
        world.close()


def missed(fixed: FixedWorld) -> bool:
    """BatchRunMissed's condition on what the exporter's sources say now."""
    info, runs = fixed.info(), fixed.runs()
    expected = fixed.value(info, "batch_schedule_last_expected_timestamp_seconds")
    grace = fixed.value(info, "batch_schedule_grace_seconds")
    started = fixed.value(runs, "batch_run_last_start_timestamp_seconds")
    return fixed.now > expected + grace and started < expected - grace


def count_runs(world: DrillWorld) -> int:
    return int(str(world.target.query("SELECT COUNT(*) FROM job_execution WHERE job_name = ?", (BATCH,))[0][0]))


# 03:19 Tokyo: the demo's latest night started yesterday at 02:00, before yesterday's expected start
# (02:19), so the drill plays that run; at 14:00 today's 02:00 night already covers yesterday's 13:00.
@pytest.mark.parametrize("fixed_world, plays_a_run", [
    (datetime(2026, 11, 27, 3, 19, tzinfo=TOKYO), True),
    (datetime(2026, 11, 27, 14, 0, tzinfo=TOKYO), False),
    (datetime(2026, 12, 1, 0, 30, tzinfo=TOKYO), False),  # tonight's start was yesterday, 23:30
], indirect=["fixed_world"], ids=["03:19", "14:00", "00:30"])
def test_the_holiday_expects_no_start_today_and_yesterdays_start_had_its_run(
        fixed_world: FixedWorld, plays_a_run: bool) -> None:
    world = fixed_world.world
    baseline_runs = count_runs(world)
    assert not missed(fixed_world)

    undo = BY_NAME["holiday"].inject(world)
    info, runs = fixed_world.info(), fixed_world.runs()
    yesterday = world.schedule_at - 86400  # Asia/Tokyo has no DST
    assert fixed_world.value(info, "batch_schedule_last_expected_timestamp_seconds") == yesterday
    assert fixed_world.value(info, "batch_schedule_next_expected_timestamp_seconds") == world.schedule_at + 86400
    skipped = [s for s in info.samples if s.name == "batch_schedule_last_skipped_timestamp_seconds"]
    assert [(dict(s.labels)["date"], dict(s.labels)["reason"], s.value) for s in skipped] == \
        [(world.tonight.isoformat(), "closed", world.schedule_at)]
    # a successful run started at yesterday's expected start (within the grace), and none since
    assert fixed_world.value(runs, "batch_run_last_start_timestamp_seconds") >= yesterday - 60
    assert fixed_world.value(runs, "batch_run_last_status", status="success") == 1
    assert not missed(fixed_world)
    assert count_runs(world) == baseline_runs - 1 + plays_a_run  # tonight's run out, maybe yesterday's in
    undo()
    assert "calendar" not in world.config_path.read_text(encoding="utf-8")
    assert count_runs(world) == baseline_runs and not missed(fixed_world)

    # the negative control: the same runs without the calendar are a missed run
    undo = HOLIDAY_WITHOUT_CALENDAR.inject(world)
    assert fixed_world.value(fixed_world.info(), "batch_schedule_last_expected_timestamp_seconds") == \
        world.schedule_at
    assert missed(fixed_world)
    undo()


@pytest.mark.parametrize("fixed_world", [
    datetime(2026, 11, 27, 14, 0, tzinfo=TOKYO),
    datetime(2026, 12, 1, 0, 40, tzinfo=TOKYO),  # tonight's start 23:40 yesterday: finish_by '... +1 day'
], indirect=True, ids=["14:00", "00:40"])
def test_deadline_miss_lets_the_deadline_pass_while_tonights_run_is_on_time_and_running(
        fixed_world: FixedWorld) -> None:
    world = fixed_world.world
    undo = BY_NAME["deadline-miss"].inject(world)
    config = load_config(world.config_path)
    schedule = config.batches[BATCH].schedule
    assert schedule is not None and schedule.finish_by is not None
    info, runs = fixed_world.info(), fixed_world.runs()
    expected = fixed_world.value(info, "batch_schedule_last_expected_timestamp_seconds")
    deadline = fixed_world.value(info, "batch_schedule_finish_deadline_timestamp_seconds")
    started = fixed_world.value(runs, "batch_run_last_start_timestamp_seconds")
    assert expected == world.schedule_at
    assert expected <= started <= expected + 60  # on time
    assert started < deadline < fixed_world.now - 30  # the deadline passed while it ran
    assert fixed_world.value(runs, "batch_run_last_status", status="running") == 1
    running = fixed_world.value(runs, "batch_run_running_seconds")
    assert 0 < running < fixed_world.value(info, "batch_run_max_duration_seconds")
    # and no success since the expected start: what BatchFinishDeadlineMissed pages on
    assert fixed_world.value(runs, "batch_run_last_success_timestamp_seconds") < expected - 60
    undo()
    assert "finish_by" not in world.config_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("scheduled, now, expected", [
    ("2026-11-27 13:00:00", "2026-11-27 14:00:30", "13:59"),
    ("2026-11-30 23:00:00", "2026-12-01 00:00:30", "23:59"),
    ("2026-11-30 23:30:00", "2026-12-01 00:31:00", "00:30 +1 day"),
    ("2026-11-27 13:00:00", "2026-11-27 13:01:50", "13:01"),  # a start 100 s ago: a minute after it
], ids=["same-day", "before-midnight", "after-midnight", "just-started"])
def test_finish_by_passed_is_a_minute_ago_and_after_the_start(scheduled: str, now: str, expected: str) -> None:
    def tokyo(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=TOKYO).timestamp()

    assert finish_by_passed(tokyo(scheduled), tokyo(now)) == expected


@pytest.mark.parametrize("fixed_world", [
    (datetime(2026, 11, 27, 14, 0, tzinfo=TOKYO), timedelta(days=20)),
], indirect=True, ids=["idle-20-days"])
def test_a_demo_idle_for_longer_than_the_lookback_gets_the_nights_to_learn_from(fixed_world: FixedWorld) -> None:
    world = fixed_world.world
    runs = fixed_world.runs()
    needed = fixed_world.value(runs, "batch_run_usual_duration_min_runs")
    # the nights played, and not tonight's run (the latest business date is not its own yardstick)
    assert fixed_world.value(runs, "batch_run_usual_duration_runs") == needed == 5
    median = fixed_world.value(runs, "batch_run_usual_duration_seconds", quantile="0.5")
    assert 40 * 60 <= median <= 70 * 60
    # each a business date of its own after the demo's, at the production time, before tonight's start
    rows = world.target.query("SELECT biz_date, start_ts FROM job_execution WHERE job_name = ? AND start_ts > ?"
                              " ORDER BY start_ts", (BATCH, "2026-11-20"))
    dates = [date.fromisoformat(str(biz)) for biz, _ in rows]
    assert len(rows) == 6 and dates == [dates[0] + timedelta(days=i) for i in range(6)]
    assert all(str(start)[11:16] == "02:00" for _, start in rows[:5])
    assert world.baseline_date == dates[-1]


@pytest.mark.parametrize("fixed_world", [datetime(2026, 11, 27, 14, 0, tzinfo=TOKYO)], indirect=True,
                         ids=["fresh"])
def test_a_fresh_demo_needs_no_nights_played_and_tonights_run_is_no_fast_success(fixed_world: FixedWorld) -> None:
    world = fixed_world.world
    runs = fixed_world.runs()
    assert count_runs(world) == 30 + 2 + 1  # the demo's nights, its two re-runs, tonight's
    median = fixed_world.value(runs, "batch_run_usual_duration_seconds", quantile="0.5")
    assert fixed_world.value(runs, "batch_run_last_duration_seconds") >= 0.1 * median
    assert 0.1 * median > FAST_SECONDS


def test_fast_success_refuses_a_world_whose_exporter_learned_no_usual_duration(tmp_path: Path) -> None:
    world = DrillWorld(open_target(None, tmp_path), tmp_path)
    try:
        world.prepare()
        world.start_exporter(serve=False)
        text, lookback = world.config_path.read_text(encoding="utf-8"), "      lookback: 14d\n"
        assert lookback in text
        world.config_path.write_text(text.replace(lookback, lookback + "      min_history: 1000\n"), encoding="utf-8")
        world.reload()
        before = db_state(world.target.paths.database)
        with pytest.raises(TargetError, match=r"learned no usual duration of card-authorization: it found \d+ "
                                              r"successful runs in its lookback window and needs 1000"):
            BY_NAME["fast-success"].inject(world)
        assert db_state(world.target.paths.database) == before
    finally:
        world.close()


# --- the expectation drills in promtool, and the quiet check failing ------------------------------------


@pytest.fixture(scope="module")
def promtool_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromtoolDrill]:
    scratch = tmp_path_factory.mktemp("promtool-drill")
    world = DrillWorld(open_target(None, scratch), scratch)
    try:
        world.prepare()
        world.start_exporter(serve=False)
        yield PromtoolDrill(world, ShippedFiles.from_root(REPO_ROOT).rules, "promtool", scratch)
    finally:
        world.close()


@pytest.mark.parametrize("scenario, verdict", [
    (BY_NAME["holiday"], "quiet? no alert of the batch fired in 20 simulated minutes before the fault and 40 with it"),
    (BY_NAME["deadline-miss"], "BatchFinishDeadlineMissed: quiet before the fault, firing after it"),
    (BY_NAME["fast-success"], "BatchRunSuspiciouslyFast: quiet before the fault, firing after it"),
    (HOLIDAY_WITHOUT_CALENDAR, "BatchRunMissed: quiet before the fault, firing after it"),
], ids=["holiday", "deadline-miss", "fast-success", "holiday-without-calendar"])
def test_the_expectation_drills_pass_in_promtool(promtool_drill: PromtoolDrill, scenario: Scenario,
                                                 verdict: str) -> None:
    result = promtool_drill.run(scenario)
    report = promtool_report(result, promtool_drill.outcomes[scenario.name], promtool_drill.rule_files)
    assert result.ok, report
    assert verdict in report and "result: OK" in report


def test_a_quiet_drill_in_promtool_fails_naming_what_fired(promtool_drill: PromtoolDrill) -> None:
    result = promtool_drill.run(HOLIDAY_WITHOUT_CALENDAR_KEPT_QUIET)
    report = promtool_report(result, promtool_drill.outcomes[result.scenario.name], promtool_drill.rule_files)
    assert not result.ok, report
    assert result.others == {"BatchRunMissed (critical)"}, report
    assert "quiet? FIRED: BatchRunMissed (critical)" in report and "result: FAILED" in report


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.slow
def test_drill_command_reports_a_timeline_and_leaves_the_demo_as_found(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    prepare_demo(folder)
    before_db, before_logs = db_state(folder / "payments.db"), logs_state(folder)

    done = drill_cli(tmp_path, "failed-run", "--dir", str(folder))

    assert done.returncode == 0, done.stdout + done.stderr
    timing = r"\+\d+\.\ds"
    # receiver, pending (none: `for` 0s), firing, delivered, resolved
    row = rf"BatchRunFailed\s+pager\s+\(for 0s\)\s+{timing}\s+{timing}\s+{timing}"
    assert re.search(row, done.stdout), done.stdout
    assert "result: OK" in done.stdout
    assert f"demo restored: {folder}" in done.stdout
    assert db_state(folder / "payments.db") == before_db
    assert logs_state(folder) == before_logs


def test_drill_refuses_a_database_that_is_not_the_demo(tmp_path: Path) -> None:
    folder = tmp_path / "payments"
    folder.mkdir()
    database = folder / "payments.db"
    conn = sqlite3.connect(database)
    conn.executescript("CREATE TABLE batch_run (run_id INTEGER PRIMARY KEY, status TEXT);"
                       "INSERT INTO batch_run (status) VALUES ('OK'), ('NG');")
    conn.close()
    digest, mtime = hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns

    done = drill_cli(tmp_path, "failed-run", "--dir", str(folder))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "does not hold the demo database" in done.stderr
    assert "--i-know-this-is-not-the-demo" in done.stderr
    assert (hashlib.sha256(database.read_bytes()).hexdigest(), database.stat().st_mtime_ns) == (digest, mtime)
    assert sorted(p.name for p in folder.iterdir()) == ["payments.db"]


def test_drill_works_on_a_copy_when_told_the_database_is_not_the_demo(tmp_path: Path) -> None:
    folder = tmp_path / "demo-plus"
    prepare_demo(folder)
    conn = sqlite3.connect(folder / "payments.db")
    conn.execute("CREATE TABLE operator_note (note TEXT)")  # no longer exactly the demo's schema
    conn.close()
    database = folder / "payments.db"
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    rows, logs = db_state(database), logs_state(folder)

    command = ("failed-run", "--dir", str(folder), "--promtool-only")
    refused = drill_cli(tmp_path, *command)
    done = drill_cli(tmp_path, *command, "--i-know-this-is-not-the-demo")

    assert refused.returncode == 2 and "operator_note" in refused.stderr, refused.stdout + refused.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"a copy of {folder}" in done.stdout
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest
    assert db_state(database) == rows and logs_state(folder) == logs


def test_without_prometheus_the_shipped_rules_are_checked_with_promtool(tmp_path: Path) -> None:
    done = drill_cli(tmp_path, "blind-rerun", env={"PATH": path_with_only(tmp_path, "promtool")})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "prometheus not found on PATH" in done.stdout
    assert "Evaluating the shipped rules with promtool" in done.stdout
    fired = "quiet before the fault, firing after it"
    assert f"BatchRerunOfNonIdempotentBatch: {fired} (shipped `for` 0m)" in done.stdout
    assert f"BatchCheckFailed{{check=double_authorized}}: {fired} (shipped `for` 5m)" in done.stdout


def test_promtool_fallback_fails_when_the_rule_would_not_fire(tmp_path: Path) -> None:
    rules_dir = tmp_path / "alerts"
    rules_dir.mkdir()
    (rules_dir / "alertmanager.yml").write_bytes((REPO_ROOT / "alerts" / "alertmanager.yml").read_bytes())
    rules = yaml.safe_load((REPO_ROOT / "alerts" / "batch-exporter.rules.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "BatchRunFailed":
                rule["expr"] = 'batch_run_last_status{status="unknown"} == 1'  # a broken edit of the rule
    (rules_dir / "batch-exporter.rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")

    done = drill_cli(tmp_path, "failed-run", "--promtool-only", "--rules-dir", str(rules_dir))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "BatchRunFailed: NOT as expected" in done.stdout
    assert "scratch folder kept" in done.stdout


def test_without_any_prometheus_binary_it_says_how_to_install(tmp_path: Path) -> None:
    done = drill_cli(tmp_path, "failed-run", env={"PATH": path_with_only(tmp_path)})

    assert done.returncode == 3, done.stdout + done.stderr
    assert "apt-get install prometheus prometheus-alertmanager" in done.stderr


# --- interruptions and failures -----------------------------------------------------------------------


@pytest.mark.parametrize("step", ["snapshot_logs", "snapshot_db"])
def test_a_drill_interrupted_before_its_snapshots_leaves_the_demo_as_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    folder, scratch = tmp_path / "demo", tmp_path / "scratch"
    prepare_demo(folder)
    scratch.mkdir()
    before_db, before_logs = db_state(folder / "payments.db"), logs_state(folder)
    target = open_target(folder, scratch)
    world = DrillWorld(target, scratch)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C before the demo was snapshotted

    monkeypatch.setattr(target, step, interrupted)
    with pytest.raises(KeyboardInterrupt):
        try:
            world.prepare()
        finally:
            world.close()  # what the drill command does on every exit

    assert db_state(folder / "payments.db") == before_db
    assert logs_state(folder) == before_logs
    assert list(scratch.glob("snapshot-*")) == []


def test_restoring_a_snapshot_never_taken_is_refused(tmp_path: Path) -> None:
    folder, scratch = tmp_path / "demo", tmp_path / "scratch"
    prepare_demo(folder)
    scratch.mkdir()
    before = db_state(folder / "payments.db")
    target: DemoTarget = open_target(folder, scratch)
    try:
        with pytest.raises(TargetError, match="no snapshot 'found'"):
            target.restore_db("found")
    finally:
        target.close()
    assert db_state(folder / "payments.db") == before
    assert list(scratch.iterdir()) == []


@pytest.fixture()
def other_file_system(tmp_path: Path) -> Iterator[Path]:
    """A folder on another file system than `tmp_path` (where the drill's scratch folder goes)."""
    for root in (Path("/dev/shm"), Path("/run/user") / str(os.getuid())):
        if root.is_dir() and os.access(root, os.W_OK) and root.stat().st_dev != tmp_path.stat().st_dev:
            folder = Path(tempfile.mkdtemp(prefix="drill-test-", dir=root))
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
    pytest.skip("no writable folder on another file system than the temporary folder")


def test_log_limit_drill_on_a_demo_on_another_file_system(tmp_path: Path, other_file_system: Path) -> None:
    folder = other_file_system / "demo"
    prepare_demo(folder)
    before_db, before_logs = db_state(folder / "payments.db"), logs_state(folder)

    done = drill_cli(tmp_path, "log-limit", "--dir", str(folder), "--promtool-only")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: OK" in done.stdout
    assert db_state(folder / "payments.db") == before_db
    assert logs_state(folder) == before_logs


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "notes.txt").write_text("not a folder")
    return tmp_path / "notes.txt" / "demo", "Not a directory"


def _malformed_demo(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "demo"
    prepare_demo(folder)
    database = folder / "payments.db"
    page, size = 4096, database.stat().st_size
    with database.open("r+b") as f:  # the schema (page 1) reads fine; the tables' rows do not
        f.seek(12 * page)
        f.write(b"\xff" * (size - 14 * page))
    return folder, "database disk image is malformed"


@pytest.mark.parametrize("make", [_under_a_file, _malformed_demo], ids=["file-error", "database-error"])
def test_a_file_or_database_failure_is_one_line_and_exit_3(tmp_path: Path, make: Any) -> None:
    folder, what = make(tmp_path)

    done = drill_cli(tmp_path, "failed-run", "--dir", str(folder), "--promtool-only")

    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("drill: ") and done.stderr.count("\n") == 1, done.stderr
    assert what in done.stderr


# --- demo --stack ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_stack_serves_all_three_and_stops_them_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_exporter.cli", "demo", "--stack", "--dir", str(tmp_path / "demo"),
         "--web.listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while len(lines) < 4 or "Alertmanager" not in "".join(lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        urls = dict(re.findall(r"^\s+(exporter|Prometheus|Alertmanager)\s+(http://[\d.:]+)", text,
                               re.MULTILINE))
        assert set(urls) == {"exporter", "Prometheus", "Alertmanager"}, text

        def scraped() -> list[Any]:
            query = urllib.parse.urlencode({"query": 'batch_run_attempts{batch="card-authorization"}'})
            with urllib.request.urlopen(f"{urls['Prometheus']}/api/v1/query?{query}", timeout=5) as answer:
                return list(json.load(answer)["data"]["result"])

        wait_until(scraped, timeout=30, what="Prometheus to scrape the demo exporter")
        # every printed link is a page the server serves (Debian's Prometheus 2.42 has no /alerts)
        for link in re.findall(r"^\s+(?:exporter|Prometheus|Alertmanager)\s+(http://\S+)", text, re.MULTILINE):
            with urllib.request.urlopen(link.split("#")[0], timeout=5) as page:
                assert page.status == 200, link
        with urllib.request.urlopen(f"{urls['Alertmanager']}/-/ready", timeout=5) as ready:
            assert ready.status == 200

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for url in urls.values():
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{url}/", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()



def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("when", ["during-startup", "after-startup"])
def test_demo_stack_stops_its_servers_and_removes_their_folder_on_sigterm(tmp_path: Path, when: str) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_exporter.cli", "demo", "--stack", "--dir", str(tmp_path / "demo"),
         "--web.listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    with reaped(proc) as servers:
        assert proc.stdout is not None
        if when == "during-startup":  # a server started, the stack not ready yet
            servers |= wait_until(lambda: children_of(proc.pid), timeout=60, interval=0.02,
                                  what="demo --stack to start Alertmanager")
        else:  # both ready and the exporter serving
            banner = ""
            while "Alertmanager  http" not in banner:
                line = proc.stdout.readline()
                assert line, banner
                banner += line
            exporter = re.search(r"exporter\s+(http://\S+)", banner)
            assert exporter is not None, banner
            metrics = exporter[1]
            wait_until(lambda: answers(metrics), timeout=30, what="the demo exporter to serve")
            servers |= children_of(proc.pid)
            assert len(servers) == 2, banner
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
        survivors = [pid for pid in servers if alive(pid)]

    assert survivors == [], output
    assert list(scratch.glob("batch-exporter-stack-*")) == [], output
    assert "Traceback" not in output, output
    # 0 when the exporter had taken the signal over, 130 (interrupted) while it was still starting
    assert proc.returncode in (0, 130), output
