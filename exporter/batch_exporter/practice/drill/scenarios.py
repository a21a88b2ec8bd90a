"""The drills: one per factor of the incident, each a fault injected into the demo batch and its undo.

Every injection writes through the world's `DemoTarget` (the demo's own writer) or changes what the
exporter can reach; every one returns the function that undoes it. Times written into the run table
are chosen relative to now, so "a run that started 16 minutes ago" is one row, not a 16-minute wait.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from ..demo_sim import AuthRun, RunStatus, play
from .world import BATCH, DrillWorld

Undo = Callable[[], None]

SILENCE_SECONDS = 16 * 60  # the rule wants a run of 15 minutes and 15 minutes without a write


@dataclass(frozen=True)
class Expected:
    """An alert a drill must raise: its name and labels besides batch."""

    alertname: str
    labels: Mapping[str, str] = field(default_factory=dict)
    outlasts_restore: str = ""  # why the alert rightly stays after the undo; the drill does not wait for it

    def matches(self, labels: Mapping[str, str]) -> bool:
        wanted = {"alertname": self.alertname, "batch": BATCH, **self.labels}
        return all(labels.get(key) == value for key, value in wanted.items())

    def describe(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.labels.items() if k != "severity")
        return f"{self.alertname}{{{extra}}}" if extra else self.alertname


@dataclass(frozen=True)
class Scenario:
    name: str
    factor: str                                  # the incident factor it practises
    injects: str                                 # what the drill does to the demo
    expected: tuple[Expected, ...]
    inject: Callable[[DrillWorld], Undo]


def _next_date(world: DrillWorld, days: int = 1) -> date:
    return world.baseline_date + timedelta(days=days)


def _undo_runs(world: DrillWorld) -> Undo:
    return world.restore_baseline


def _log_limit(world: DrillWorld) -> Undo:
    now = world.now()
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, now - 70, 60.0, RunStatus.COMPLETED, world.rng()).steps())
    sdk = world.target.paths.sdk_log
    writer = world.target.writer
    lines, seq = 32, 0
    while True:  # a verbose night: the SDK traces every message until its cap stops it, without a word
        size = sdk.stat().st_size if sdk.exists() else 0
        writer.sdk(now, [("INFO", f"電文トレース seq={seq + i:06d} 応答コード=00 バイト数=512")
                         for i in range(lines)])
        seq += lines
        if (sdk.stat().st_size if sdk.exists() else 0) == size:
            if lines == 1:
                break
            lines = 1

    def undo() -> None:
        world.restore_baseline()
        world.target.rotate_sdk_log()
    return undo


def _log_silent(world: DrillWorld) -> Undo:
    start = world.now() - SILENCE_SECONDS
    run = AuthRun(_next_date(world), 1, start, 3600.0, RunStatus.COMPLETED, world.rng())
    with world.target.transaction() as writer:
        play(writer, run.steps()[:1])  # it starts, writes its first lines, and nothing after
    before = world.target.set_mtimes(world.target.log_files(), start + 1)

    def undo() -> None:
        world.restore_baseline()
        world.target.reset_mtimes(before)
    return undo


def _failed_run(world: DrillWorld) -> Undo:
    now = world.now()
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, now - 75, 60.0, RunStatus.FAILED, world.rng(), fail_step=2).steps())
    return _undo_runs(world)


def _blind_rerun(world: DrillWorld) -> Undo:
    now, day = world.now(), _next_date(world)
    runs = [AuthRun(day, 1, now - 400, 60.0, RunStatus.FAILED, world.rng(), fail_step=2),
            AuthRun(day, 2, now - 250, 60.0, RunStatus.COMPLETED, world.rng()),
            AuthRun(day, 3, now - 100, 60.0, RunStatus.COMPLETED, world.rng())]
    with world.target.transaction() as writer:
        play(writer, [step for run in runs for step in run.steps()])
    return _undo_runs(world)


def _crash_no_rollback(world: DrillWorld) -> Undo:
    now = world.now()
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, now - 75, 60.0, RunStatus.ABENDED, world.rng(), fail_step=3).steps())
    return _undo_runs(world)


def _missed_run(world: DrillWorld) -> Undo:
    world.target.restore_db("no-run-tonight")
    return _undo_runs(world)


def _db_down(world: DrillWorld) -> Undo:
    world.cut_database()
    return world.mend_database


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("log-limit", "the vendor SDK log reached its size cap and silently stopped growing",
             "a night whose SDK log grows to its 64 KiB cap, where the writer stops without a word",
             (Expected("BatchLogFileNearSizeLimit", {"severity": "critical", "log": "sdk"}),),
             _log_limit),
    Scenario("log-silent", "the batch was running but its log was no longer written",
             "a run started 16 minutes ago that wrote its first lines and nothing since",
             (Expected("BatchLogSilentWhileRunning", {"log": "sdk"}),),
             _log_silent),
    Scenario("failed-run", "a run failed and was re-run without reading the application log",
             "a run that fails at its second chunk (status E) with ERROR lines in its log",
             (Expected("BatchRunFailed"),
              Expected("BatchLogErrors", {"pattern": "error"},
                       outlasts_restore="the error lines stay written: they count for the rule's 15-minute window")),
             _failed_run),
    Scenario("blind-rerun", "a failed run of a non-idempotent batch was re-run twice",
             "a failed run and two complete re-runs of the same business date (3 attempts)",
             (Expected("BatchRerunOfNonIdempotentBatch"),
              Expected("BatchCheckFailed", {"check": "double_authorized"})),
             _blind_rerun),
    Scenario("crash-no-rollback", "the run died mid-way and left rows in AUTHORIZING",
             "a run that abends at its third chunk (status A), its rows left AUTHORIZING and RECEIVED",
             (Expected("BatchRunLeftPendingRecords"),
              Expected("BatchCheckFailed", {"check": "stuck_authorizing"}),
              Expected("BatchRunFailed")),
             _crash_no_rollback),
    Scenario("missed-run", "the scheduled start passed and nothing started",
             "tonight's run taken out of the run table: the scheduled start and its grace passed with no run",
             (Expected("BatchRunMissed"),),
             _missed_run),
    Scenario("db-down", "the database could not be reached",
             "the database taken away from the exporter (its path removed, the exporter reconnecting)",
             (Expected("BatchExporterSourceDown", {"source": f"runs:{BATCH}"}),),
             _db_down),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
