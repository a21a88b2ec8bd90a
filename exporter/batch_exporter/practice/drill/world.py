"""The drill's world: the demo folder put in a known healthy state, and an exporter watching it.

Preparing the world (all through the `DemoTarget`, all undone by `close`):
1. snapshot the database and logs as found;
2. close out the past, so that only the drilled fault can raise an alert: runs left running are marked
   abended, rows left pending are marked ERROR, second approvals of a payment are voided (ERROR), and
   an SDK log near its cap is emptied (the demo's history contains the incident these alerts are for);
3. make sure the lookback window holds the successful runs the usual duration is learned from
   (runs.min_history of them): a demo left idle for longer than the lookback gets the missing nights
   played at the batch's production times, continuing its business dates;
4. play tonight's run: a healthy night started at the drill's scheduled time, about an hour ago, and
   taking a plausible share of that hour (a one-minute "success" of a 40-minute batch is
   BatchRunSuspiciouslyFast's case).

The exporter runs in this process with the demo's own demo.yml plus the drill's timings: polls every
second, the card-authorization schedule moved to a daily start at that time (grace 1m) and its
production max_duration (90m, so that a long silent run is not also "too long"), its state kept in the
scratch folder, and only the drilled batch watched. It reads the database through a symbolic link so
that `cut_database` can take the database away without touching the demo's files. Scenarios may
rewrite that config (`reconfigure`: a calendar closing a day, a finish_by) and reload the exporter.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ...business_calendar import BusinessCalendar, CalendarSchedule
from ...config import CalendarConfig, Config, load_config
from ...schedule import CronSchedule
from ...service import ExporterService
from ...units import parse_duration
from ...web import MetricsServer
from ..demo import demo_config_text
from ..demo_sim import AUTH_JOB, SDK_LOG_CAP_BYTES, TOKYO, AuthRun, RunStatus, local_text, play
from .target import DemoTarget, LogSnapshot, TargetError

log = logging.getLogger(__name__)

BATCH = AUTH_JOB
SCHEDULE_LEAD = timedelta(minutes=60)  # tonight's scheduled start, before the drill began
TONIGHT_SHARE = 0.4                    # of the time since then, tonight's healthy run takes this share
MAX_DURATION = "90m"                   # the production value demo.yml gives in its comments
GRACE = "1m"
POLL_INTERVAL = "1s"
SDK_EMPTY_AT = 0.8                     # an SDK log above this share of its cap is emptied when preparing
NIGHT_START = (2, 0)                   # the batch's production start, Tokyo time (demo.yml's comment)
NIGHT_MINUTES = (40.0, 70.0)           # and its production duration
# the history counted for the usual duration must still be in the lookback window when the drill ends
HISTORY_MARGIN = timedelta(days=1)
CALENDAR = "drill-calendar"            # the business calendar a scenario may give the schedule


def _ids(rows: list[tuple[object, ...]]) -> list[int]:
    return [int(str(row[0])) for row in rows]


def _literal(path: Path) -> str:
    """A path inside a config value (the loader reads `$` as the start of a reference)."""
    return str(path).replace("$", "$$")


class DrillWorld:
    """A prepared demo target, the drill's config, and an in-process exporter over it."""

    def __init__(self, target: DemoTarget, scratch: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.scratch = scratch
        self._clock = clock
        self._link = scratch / "db" / target.paths.database.name
        self.config_path = scratch / "drill.yml"
        self.schedule_at = 0.0
        self.tonight_end = 0.0
        self.prepared_at = 0.0
        self.baseline_date = date.min
        self._logs_before: LogSnapshot | None = None
        self._service: ExporterService | None = None
        self._server: MetricsServer | None = None
        self._rng = random.Random(20261127)

    # --- preparing and restoring the demo ---------------------------------------------------------

    def prepare(self) -> None:
        """Snapshot the demo as found, close out its past, make sure the lookback holds the history the
        usual duration is learned from, play tonight's healthy run (see module doc)."""
        self._logs_before = self.target.snapshot_logs()
        self.target.snapshot_db("found")
        self._close_out_past()
        now = self._clock()
        self.schedule_at = self._schedule_time(now)
        self.write_config()
        self._fill_duration_history(now)
        self.target.snapshot_db("no-run-tonight")
        last = self._latest_business_date()
        self.baseline_date = (last + timedelta(days=1) if last is not None
                              else datetime.fromtimestamp(now, TOKYO).date() - timedelta(days=1))
        tonight = AuthRun(self.baseline_date, 1, self.schedule_at + 5, TONIGHT_SHARE * (now - self.schedule_at),
                          RunStatus.COMPLETED, self.rng())
        with self.target.transaction() as writer:
            play(writer, tonight.steps())
        self.tonight_end = tonight.start + tonight.duration
        self.prepared_at = now
        self.target.snapshot_db("baseline")

    def _latest_business_date(self) -> date | None:
        last = self.target.query("SELECT MAX(biz_date) FROM job_execution WHERE job_name = ?", (BATCH,))[0][0]
        return date.fromisoformat(str(last)) if last else None

    def latest_start(self) -> float | None:
        """When the batch's latest run started (epoch seconds), or None without a run."""
        sql = "SELECT MAX(start_ts) FROM job_execution WHERE job_name = ?"
        latest = self.target.query(sql, (BATCH,))[0][0]
        return (datetime.strptime(str(latest), "%Y-%m-%d %H:%M:%S").replace(tzinfo=TOKYO).timestamp()
                if latest else None)

    def latest_succeeded(self) -> bool:
        """Whether the batch's latest run (by start) completed."""
        rows = self.target.query("SELECT exec_status FROM job_execution WHERE job_name = ?"
                                 " ORDER BY start_ts DESC, exec_id DESC LIMIT 1", (BATCH,))
        return bool(rows) and rows[0][0] == RunStatus.COMPLETED

    def _fill_duration_history(self, now: float) -> None:
        """Play the nights the lookback window lacks for the usual duration to be learned (step 3).

        The nights are the most recent ones that fit between the demo's latest run and tonight's
        scheduled start, at the production start and duration, each a business date after the
        demo's latest. Fewer may fit (a demo stopped within the last few nights already has runs
        there); fast-success then says what the exporter learned.
        """
        runs = self._config().batches[BATCH].runs
        assert runs is not None
        since = now - runs.lookback + HISTORY_MARGIN.total_seconds()
        sql = ("SELECT COUNT(*) FROM job_execution WHERE job_name = ? AND exec_status = ? AND end_ts IS NOT NULL"
               " AND start_ts >= ?")
        found = int(str(self.target.query(sql, (BATCH, RunStatus.COMPLETED.value, local_text(since)))[0][0]))
        missing = runs.min_history - found
        if missing <= 0:
            return
        rng = self.rng()
        after = (self.latest_start() or float("-inf")) + 60
        nights: list[tuple[float, float]] = []
        day = datetime.fromtimestamp(self.schedule_at, TOKYO).date()
        while len(nights) < missing:
            start = datetime(day.year, day.month, day.day, *NIGHT_START, tzinfo=TOKYO).timestamp()
            if start < max(after, since):
                break
            start, duration = start + rng.uniform(0, 40), rng.uniform(*NIGHT_MINUTES) * 60
            if start + duration <= self.schedule_at - 60:
                nights.append((start, duration))
            day -= timedelta(days=1)
        business = self._latest_business_date() or day
        with self.target.transaction() as writer:
            for start, duration in sorted(nights):
                business += timedelta(days=1)
                play(writer, AuthRun(business, 1, start, duration, RunStatus.COMPLETED, self.rng()).steps())
        log.info("the lookback window held %d successful runs of %d needed for the usual duration: played %d "
                 "nights", found, runs.min_history, len(nights))

    def _schedule_time(self, now: float) -> float:
        """Tonight's scheduled start: an hour ago, and at least a minute after the demo's latest run.

        Both are needed: the missed-run drill takes tonight's run away and relies on the start before
        it being older than the grace; the other drills' runs come after tonight's, and their
        successes need room for a plausible duration. A demo whose simulator ran within the hour
        gets a start 100 seconds ago (its nights, and so its usual duration, are short too).
        """
        latest = self.latest_start()
        previous = float("-inf") if latest is None else latest
        for lead in (SCHEDULE_LEAD, timedelta(seconds=100)):
            at = (datetime.fromtimestamp(now, TOKYO) - lead).replace(second=0, microsecond=0).timestamp()
            if at - 60 > previous:
                return at
        raise TargetError(f"the demo's latest run started at {local_text(previous)} (Tokyo time), under three "
                          "minutes ago: is `batch-exporter demo` still running on this folder? Stop it first, "
                          "or wait a few minutes")

    @property
    def tonight(self) -> date:
        """The local (Tokyo) date of tonight's scheduled start: the day a calendar would close."""
        return datetime.fromtimestamp(self.schedule_at, TOKYO).date()

    def slot(self, first: float, last: float) -> tuple[float, float]:
        """(start, duration) of a run from `first` to `last`, fractions of the time from the end of
        tonight's run to when the world was prepared.

        After tonight's run, so that it is the latest; before the exporter began reading the logs, so
        that no line it reads during the drill (an earlier scenario's errors) falls within the run and
        contradicts its success (BatchSuccessContradicted counts the matches read while a run ran)."""
        span = self.prepared_at - self.tonight_end
        return self.tonight_end + first * span, (last - first) * span

    def _close_out_past(self) -> None:
        now = self._clock()
        running = _ids(self.target.query("SELECT exec_id FROM job_execution WHERE exec_status = 'R'"))
        pending = _ids(self.target.query(
            "SELECT a.request_id FROM auth_request a JOIN job_execution j ON j.exec_id = a.exec_id"
            " WHERE a.auth_state IN ('AUTHORIZING', 'RECEIVED')"))
        doubled = _ids(self.target.query(
            "SELECT a.request_id FROM auth_request a WHERE a.auth_state = 'APPROVED' AND a.request_id >"
            " (SELECT MIN(b.request_id) FROM auth_request b"
            "  WHERE b.merchant_ref = a.merchant_ref AND b.auth_state = 'APPROVED')"))
        with self.target.transaction() as writer:
            for exec_id in running:
                writer.end_run(exec_id, RunStatus.ABENDED, now, exit_code=137)
            writer.set_states([(r, "ERROR", None) for r in pending + doubled], now)
        sdk = self.target.paths.sdk_log
        if sdk.exists() and sdk.stat().st_size >= SDK_EMPTY_AT * SDK_LOG_CAP_BYTES:
            self.target.empty_sdk_log()
        log.info("closed out the past: %d runs left running, %d pending rows, %d second approvals",
                 len(running), len(pending), len(doubled))

    def restore_baseline(self) -> None:
        """The database as it was after tonight's healthy run (between scenarios)."""
        self.target.restore_db("baseline")

    def restore_found(self) -> None:
        """The database and logs exactly as found (the exporter must be stopped: logs shrink).

        Only what was snapshotted is put back: `prepare` changes nothing before both snapshots are taken,
        so an interruption before them leaves nothing to restore.
        """
        if self.target.has_snapshot("found"):
            self.target.restore_db("found")
        if self._logs_before is not None:
            self.target.restore_logs(self._logs_before)

    def rng(self) -> random.Random:
        return random.Random(self._rng.random())

    def now(self) -> float:
        return float(self._clock())

    # --- the exporter --------------------------------------------------------------------------------

    @staticmethod
    def calendar(closed: date) -> dict[str, Any]:
        """The drill's business calendar closing `closed`: no weekend and no country's holidays, so that
        it closes that day alone whatever day of the week the drill runs (an operator's closed date,
        as a company holiday is listed)."""
        return {"weekend": [], "closed": [closed.isoformat()]}

    def write_config(self, *, closed: date | None = None, finish_by: str | None = None) -> None:
        """Write the drill's config; `closed`: the schedule keeps to a calendar closing that day;
        `finish_by`: the schedule's finish_by. Without them, the drill's own config."""
        config = yaml.safe_load(demo_config_text(self.target.paths.folder))
        config["global"].update(poll_interval=POLL_INTERVAL, log_poll_interval=POLL_INTERVAL,
                                state_dir=_literal(self.scratch / "state"))
        config["databases"]["payments"]["sqlite"] = _literal(self._link)
        batch = config["batches"][BATCH]
        local = datetime.fromtimestamp(self.schedule_at, TOKYO)
        batch["schedule"] = {"cron": f"{local.minute} {local.hour} * * *", "timezone": "Asia/Tokyo",
                             "grace": GRACE}
        if closed is not None:
            config["calendars"] = {CALENDAR: self.calendar(closed)}
            batch["schedule"]["calendar"] = CALENDAR
        if finish_by is not None:
            batch["schedule"]["finish_by"] = finish_by
        batch["max_duration"] = MAX_DURATION
        config["batches"] = {BATCH: batch}
        header = ("# The demo's demo.yml with the drill's timings (batch-exporter drill writes this file;\n"
                  "# see batch_exporter/practice/drill/world.py).\n")
        self.config_path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                    encoding="utf-8")

    def reconfigure(self, *, closed: date | None = None, finish_by: str | None = None) -> None:
        """`write_config` and reload the exporter, if it runs (`reconfigure()` puts the drill's own back)."""
        self.write_config(closed=closed, finish_by=finish_by)
        if self._service is not None:
            self.reload()

    def _config(self) -> Config:
        return load_config(self.config_path)

    def expected_start(self, *, closed: date | None = None) -> float | None:
        """The schedule's latest expected start by now (epoch seconds), as the exporter reckons it: kept
        to the drill's calendar closing `closed` when given, whether or not the config names it."""
        schedule = self._config().batches[BATCH].schedule
        assert schedule is not None and schedule.cron is not None
        cron = CronSchedule.parse(schedule.cron, schedule.timezone)
        kept: CronSchedule | CalendarSchedule = cron
        if closed is not None:
            rules = CalendarConfig.model_validate(self.calendar(closed))
            kept = CalendarSchedule(cron, BusinessCalendar(rules))
        fire = kept.previous_fire(datetime.fromtimestamp(self.now(), UTC))
        return None if fire is None else fire.timestamp()

    @property
    def grace(self) -> float:
        return parse_duration(GRACE)

    def exported(self, name: str, **labels: str) -> float | None:
        """A value the running exporter serves now (no extra poll), or None when it serves no such series."""
        assert self._service is not None
        for family in text_string_to_metric_families(self._service.exposition().decode("utf-8")):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def start_exporter(self, *, serve: bool) -> str | None:
        """Start the exporter, polled once; with `serve`, also serve it, poll on schedule, return HOST:PORT.

        Without `serve` nothing polls in the background: `scrape` polls, so that what it returns was
        read after the last injection (a background poll begun before it could land later).
        """
        self.link_database()
        service = ExporterService(self._config())
        service.poll_once()
        self._service = service
        if not serve:
            return None
        self._server = MetricsServer("127.0.0.1:0", service, None)
        self._server.start()
        service.start()
        return f"127.0.0.1:{self._server.port}"

    def stop_exporter(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._service is not None:
            self._service.stop()
            self._service = None

    def reload(self) -> None:
        """What SIGHUP does: a new exporter for the same config (new database connections), polled once."""
        assert self._service is not None
        self._service.reload(self._config())

    def link_database(self) -> None:
        self._link.parent.mkdir(parents=True, exist_ok=True)
        if not self._link.is_symlink():
            self._link.symlink_to(self.target.paths.database.resolve())

    def cut_database(self) -> None:
        """Take the database away from the exporter: remove its link and make it reconnect."""
        self._link.unlink(missing_ok=True)
        self.reload()

    def mend_database(self) -> None:
        self.link_database()
        self.reload()

    def scrape(self) -> str:
        """Poll every source once and return the exposition the exporter would serve."""
        assert self._service is not None
        self._service.poll_once()
        return self._service.exposition().decode("utf-8")

    def close(self) -> None:
        """Stop the exporter and put the demo back exactly as found."""
        self.stop_exporter()
        try:
            self.restore_found()
        finally:
            self.target.close()
