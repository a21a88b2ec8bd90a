"""The drills: one per factor of the incident, and one per expectation a payment batch lives by (a
holiday, a finish deadline, its usual duration), each a fault injected into the demo batch and its undo.

Every injection writes through the world's `DemoTarget` (the demo's own writer), changes what the
exporter can reach, or rewrites the drill's config and reloads the exporter; every one returns the
function that undoes it. Times written into the run table are chosen relative to now, so "a run that
started 16 minutes ago" is one row, not a 16-minute wait. Runs that end are laid out between tonight's
run and the start of the drill (`DrillWorld.slot`), and those that succeed take a plausible share of
that time: a one-minute success of a 40-minute batch would raise BatchRunSuspiciouslyFast, which only
fast-success expects.

A scenario without expected alerts is one that must stay quiet: no alert of the batch may fire while
its fault is in place, and `quiet` names the alerts it would raise but for what the drill configured.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial

from ..demo_sim import TOKYO, AuthRun, RunStatus, local_text, play
from .target import TargetError
from .world import BATCH, NIGHT_MINUTES, DrillWorld

Undo = Callable[[], None]

SILENCE_SECONDS = 16 * 60  # the rule wants a run of 15 minutes and 15 minutes without a write
FAST_SECONDS = 3.0         # fast-success: a "success" this short, of a batch that usually takes 40 minutes or more
DEADLINE_RUN_SHARE = 1.25  # deadline-miss: tonight's run takes this much of the time since it started: not done


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
    factor: str                                  # the incident factor (or the expectation) it practises
    injects: str                                 # what the drill does to the demo
    expected: tuple[Expected, ...]               # none: no alert of the batch may fire
    inject: Callable[[DrillWorld], Undo]
    quiet: tuple[Expected, ...] = ()             # what the fault would raise but for the drill's config
    quiet_by: str = ""                           # what in the drill's config keeps them quiet

    @property
    def stays_quiet(self) -> bool:
        return not self.expected


def _next_date(world: DrillWorld, days: int = 1) -> date:
    return world.baseline_date + timedelta(days=days)


def _undo_runs(world: DrillWorld) -> Undo:
    return world.restore_baseline


def _log_limit(world: DrillWorld) -> Undo:
    now = world.now()
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, *world.slot(0.1, 0.95), RunStatus.COMPLETED, world.rng()).steps())
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
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, *world.slot(0.1, 0.95), RunStatus.FAILED, world.rng(),
                             fail_step=2).steps())
    return _undo_runs(world)


def _blind_rerun(world: DrillWorld) -> Undo:
    day = _next_date(world)
    runs = [AuthRun(day, 1, *world.slot(0.05, 0.1), RunStatus.FAILED, world.rng(), fail_step=2),
            AuthRun(day, 2, *world.slot(0.1, 0.5), RunStatus.COMPLETED, world.rng()),
            AuthRun(day, 3, *world.slot(0.55, 0.95), RunStatus.COMPLETED, world.rng())]
    with world.target.transaction() as writer:
        play(writer, [step for run in runs for step in run.steps()])
    return _undo_runs(world)


def _crash_no_rollback(world: DrillWorld) -> Undo:
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, *world.slot(0.1, 0.95), RunStatus.ABENDED, world.rng(),
                             fail_step=3).steps())
    return _undo_runs(world)


def _missed_run(world: DrillWorld) -> Undo:
    world.target.restore_db("no-run-tonight")
    return _undo_runs(world)


def _db_down(world: DrillWorld) -> Undo:
    world.cut_database()
    return world.mend_database


def _cover(world: DrillWorld, expected: float) -> None:
    """Make sure a successful run started at `expected` (within the grace) and is the latest run: the
    demo's own history often has one (its nights start at 02:00), but not at every hour of the day."""
    latest = world.latest_start()
    if latest is not None and latest >= expected - world.grace and world.latest_succeeded():
        return
    start = max(expected + 5, (latest or expected) + 60)
    duration = min(world.rng().uniform(*NIGHT_MINUTES) * 60, 0.9 * (world.now() - start))
    if duration <= 0:
        raise TargetError(f"no time left to play the previous business day's run (expected at "
                          f"{local_text(expected)}, Tokyo time) after the demo's latest run: wait a few minutes")
    with world.target.transaction() as writer:
        play(writer, AuthRun(world.baseline_date, 1, start, duration, RunStatus.COMPLETED, world.rng()).steps())


def _holiday(world: DrillWorld, *, calendar: bool = True) -> Undo:
    """Tonight's date closed by the schedule's calendar, tonight's run taken away, and the previous
    business day's expected start covered by a successful run: the quiet must be the calendar's doing.
    Without `calendar` (the negative control) the same runs, and no calendar."""
    closed = world.tonight
    expected = world.expected_start(closed=closed)
    if expected is None:
        raise TargetError(f"the drill's calendar closing {closed} leaves no expected start before now")
    if calendar:  # first: without it, tonight's run taken away would be a missed run for a moment
        world.reconfigure(closed=closed)
    world.target.restore_db("no-run-tonight")
    _cover(world, expected)

    def undo() -> None:
        world.restore_baseline()  # first: tonight's run back before the calendar goes
        if calendar:
            world.reconfigure()
    return undo


def _deadline_miss(world: DrillWorld) -> Undo:
    """Tonight's run started on time and still running when the finish_by just set for it passed."""
    now = world.now()
    world.target.restore_db("no-run-tonight")
    start = world.schedule_at + 5  # as tonight's healthy run: on time
    run = AuthRun(world.baseline_date, 1, start, DEADLINE_RUN_SHARE * (now - start), RunStatus.COMPLETED,
                  world.rng())
    with world.target.transaction() as writer:
        play(writer, [step for step in run.steps() if step[0] <= now])  # up to now: it is not over
    world.reconfigure(finish_by=finish_by_passed(world.schedule_at, now))

    def undo() -> None:
        world.restore_baseline()
        world.reconfigure()
    return undo


def finish_by_passed(scheduled: float, now: float) -> str:
    """A finish_by whose deadline for the start `scheduled` passed a minute or so before `now`: the
    latest whole Tokyo minute a minute before now, at least a minute after the start."""
    deadline = max(datetime.fromtimestamp(now - 60, TOKYO).replace(second=0, microsecond=0),
                   datetime.fromtimestamp(scheduled + 60, TOKYO))
    days = (deadline.date() - datetime.fromtimestamp(scheduled, TOKYO).date()).days
    return f"{deadline:%H:%M}" + (f" +{days} day{'s' if days > 1 else ''}" if days else "")


def _fast_success(world: DrillWorld) -> Undo:
    """A run of the next business date that succeeds after FAST_SECONDS, once the exporter is seen to
    have learned the batch's usual duration (BatchRunSuspiciouslyFast has nothing to compare with before)."""
    median = world.exported("batch_run_usual_duration_seconds", batch=BATCH, quantile="0.5")
    if median is None:
        runs = world.exported("batch_run_usual_duration_runs", batch=BATCH)
        needed = world.exported("batch_run_usual_duration_min_runs", batch=BATCH)
        raise TargetError(f"the exporter has learned no usual duration of {BATCH}: it found {runs or 0:g} "
                          f"successful runs in its lookback window and needs {needed or 0:g} (runs.min_history)")
    start, _ = world.slot(0.9, 1.0)
    with world.target.transaction() as writer:
        play(writer, AuthRun(_next_date(world), 1, start, FAST_SECONDS, RunStatus.COMPLETED, world.rng()).steps())
    return _undo_runs(world)


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
              Expected("BatchCheckFailed", {"check": "double_authorized"}),
              Expected("BatchSuccessContradicted", {"evidence": "check:double_authorized"})),
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
    Scenario("holiday", "a holiday that must stay quiet",
             "today made a closed day of the schedule's business calendar and tonight's run taken out: the "
             "calendar expects no start today, and the previous business day's start had its run",
             (), _holiday, quiet=(Expected("BatchRunMissed"),), quiet_by="the calendar"),
    Scenario("deadline-miss", "a finish deadline missed must page",
             "tonight's run, started on time, still running (not failed, within max_duration) when the "
             "finish_by just set for it passed a minute ago",
             (Expected("BatchFinishDeadlineMissed", {"severity": "critical"}),),
             _deadline_miss),
    Scenario("fast-success", "a 3-second success of a 40-minute batch must raise its warning",
             "a run of the next business date that succeeds after 3 seconds, where the usual duration the "
             "exporter learned from the demo's nights (40-70 minutes) is far longer",
             (Expected("BatchRunSuspiciouslyFast"),),
             _fast_success),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}

# The holiday's negative control, which `drill` does not offer and the tests run: the same runs without
# the calendar must raise BatchRunMissed, or the holiday's quiet proves nothing.
HOLIDAY_WITHOUT_CALENDAR = Scenario(
    "holiday-without-calendar", "the holiday drill's negative control",
    "the holiday's runs (tonight's taken out, the previous business day's covered) without the calendar",
    (Expected("BatchRunMissed"),), partial(_holiday, calendar=False))
