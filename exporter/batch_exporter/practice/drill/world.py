"""The drill's world: the demo folder put in a known healthy state, and an exporter watching it.

Preparing the world (all through the `DemoTarget`, all undone by `close`):
1. snapshot the database and logs as found;
2. close out the past, so that only the drilled fault can raise an alert: runs left running are marked
   abended, rows left pending are marked ERROR, second approvals of a payment are voided (ERROR), and
   an SDK log near its cap is emptied (the demo's history contains the incident these alerts are for);
3. play tonight's run: a healthy night started at the drill's scheduled time, about 30 minutes ago.

The exporter runs in this process with the demo's own demo.yml plus the drill's timings: polls every
second, the card-authorization schedule moved to a daily start at that time (grace 1m) and its
production max_duration (90m, so that a long silent run is not also "too long"), its state kept in the
scratch folder, and only the drilled batch watched. It reads the database through a symbolic link so
that `cut_database` can take the database away without touching the demo's files.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml

from ... import __version__
from ...config import Config, load_config
from ...service import ExporterService
from ...web import MetricsServer
from ..demo import demo_config_text
from ..demo_sim import AUTH_JOB, SDK_LOG_CAP_BYTES, TOKYO, AuthRun, RunStatus, play
from .target import DemoTarget, LogSnapshot, TargetError

log = logging.getLogger(__name__)

BATCH = AUTH_JOB
SCHEDULE_LEAD = timedelta(minutes=30)  # tonight's scheduled start, before the drill began
MAX_DURATION = "90m"                   # the production value demo.yml gives in its comments
GRACE = "1m"
POLL_INTERVAL = "1s"
SDK_EMPTY_AT = 0.8                     # an SDK log above this share of its cap is emptied when preparing


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
        self.baseline_date = date.min
        self._logs_before: LogSnapshot | None = None
        self._service: ExporterService | None = None
        self._server: MetricsServer | None = None
        self._rng = random.Random(20261127)

    # --- preparing and restoring the demo ---------------------------------------------------------

    def prepare(self) -> None:
        """Snapshot the demo as found, close out its past, play tonight's healthy run (see module doc)."""
        self._logs_before = self.target.snapshot_logs()
        self.target.snapshot_db("found")
        self._close_out_past()
        self.target.snapshot_db("no-run-tonight")
        now = self._clock()
        self.schedule_at = self._schedule_time(now)
        last = self.target.query("SELECT MAX(biz_date) FROM job_execution WHERE job_name = ?", (BATCH,))[0][0]
        self.baseline_date = (date.fromisoformat(str(last)) + timedelta(days=1) if last
                              else datetime.fromtimestamp(now, TOKYO).date() - timedelta(days=1))
        with self.target.transaction() as writer:
            baseline = AuthRun(self.baseline_date, 1, self.schedule_at + 5, 60.0, RunStatus.COMPLETED, self.rng())
            play(writer, baseline.steps())
        self.target.snapshot_db("baseline")
        self._write_config()

    def _schedule_time(self, now: float) -> float:
        """Tonight's scheduled start: half an hour ago, and at least a minute after the demo's latest run.

        Both are needed: the missed-run drill takes tonight's run away and relies on the start before
        it being older than the grace; the other drills' runs start a minute or so before they are
        injected and must come after tonight's.
        """
        sql = "SELECT MAX(start_ts) FROM job_execution WHERE job_name = ?"
        latest = self.target.query(sql, (BATCH,))[0][0]
        previous = (datetime.strptime(str(latest), "%Y-%m-%d %H:%M:%S").replace(tzinfo=TOKYO).timestamp()
                    if latest else float("-inf"))
        for lead in (SCHEDULE_LEAD, timedelta(seconds=100)):
            at = (datetime.fromtimestamp(now, TOKYO) - lead).replace(second=0, microsecond=0).timestamp()
            if at - 60 > previous:
                return at
        raise TargetError(f"the demo's latest run started at {latest} (Tokyo time), under three minutes ago: "
                          "is `batch-exporter demo` still running on this folder? Stop it first, or wait "
                          "a few minutes")

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

    def _write_config(self) -> None:
        config = yaml.safe_load(demo_config_text(self.target.paths.folder))
        config["global"].update(poll_interval=POLL_INTERVAL, log_poll_interval=POLL_INTERVAL,
                                state_dir=_literal(self.scratch / "state"))
        config["databases"]["payments"]["sqlite"] = _literal(self._link)
        batch = config["batches"][BATCH]
        local = datetime.fromtimestamp(self.schedule_at, TOKYO)
        batch["schedule"] = {"cron": f"{local.minute} {local.hour} * * *", "timezone": "Asia/Tokyo",
                             "grace": GRACE}
        batch["max_duration"] = MAX_DURATION
        config["batches"] = {BATCH: batch}
        header = ("# The demo's demo.yml with the drill's timings (batch-exporter drill writes this file;\n"
                  "# see batch_exporter/practice/drill/world.py).\n")
        self.config_path.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                    encoding="utf-8")

    def _config(self) -> Config:
        return load_config(self.config_path)

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
        self._server = MetricsServer("127.0.0.1:0", service, None, version=__version__)
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
