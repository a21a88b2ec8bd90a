"""Wiring: from a validated Config to running sources, a store, and what the HTTP server serves."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, DatabaseConfig
from .database import Database, QueryError, odbc_dialect, open_database
from .poller import Poller, ScheduledSource, WorkerPool
from .runsummary import Expected
from .shards import Shard
from .sources.batchinfo import BatchInfo, BatchInfoSource
from .sources.checks import ChecksSource
from .sources.fleet import FleetSource, JobClaims
from .sources.run_log_evidence import RunLogEvidenceSource, WatchedLog
from .sources.runs import RunsSource
from .sources.schedule_table import ScheduleTableSource
from .state_dir import StateDir, prepare, resolve
from .store import Store

if TYPE_CHECKING:
    from .sources.logscan import LogHandover

log = logging.getLogger(__name__)

_DEADLINE_MARGIN = 2.0
# `--shard` of `run` and `once`: every fleet's shard, whatever the configuration (and a reload of it) says
_fleet_shard: Shard | None = None


def override_fleet_shards(shard: Shard | None) -> None:
    """Make `shard` every fleet's shard in the exporters built from now on (None: each fleet's own)."""
    global _fleet_shard
    _fleet_shard = shard


class UnavailableDatabase(Database):
    """Stands in for a database whose driver cannot be loaded: every poll reports why."""

    def __init__(self, name: str, error: QueryError) -> None:
        self.name = name
        self._error = error

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        raise QueryError(self._error.reason, str(self._error))

    def close(self) -> None:
        pass


def open_databases(config: Config) -> dict[str, Database]:
    """One Database object per configured database; connections open lazily per thread."""
    databases: dict[str, Database] = {}
    for name, db in config.databases.items():
        if db.odbc is not None and odbc_dialect(db.odbc) is None:
            log.warning("database %s: the ODBC string names no Driver= the exporter recognises (a bare DSN?): "
                        "no read-only session or server-side statement timeout can be set for it, only "
                        "rollback and client-side cancel; name the driver, and grant a SELECT-only account", name)
        try:
            databases[name] = open_database(name, sqlite=db.sqlite, odbc=db.odbc,
                                            query_timeout=db.query_timeout, connect_timeout=db.connect_timeout)
        except QueryError as exc:
            log.error("database %s cannot be used: %s", name, exc)
            databases[name] = UnavailableDatabase(name, exc)
    return databases


def poll_deadline(db_config: DatabaseConfig, statements: int) -> float:
    """Seconds a poll sending `statements` queries may take before it is abandoned."""
    return db_config.connect_timeout + statements * db_config.query_timeout + _DEADLINE_MARGIN


def log_state_dir(config: Config) -> StateDir | None:
    """The folder for log read positions, or None when no batch reads a log (nothing to keep)."""
    if not any(batch.logs for batch in config.batches.values()):
        return None
    return resolve(config.global_.state_dir)


def build_sources(config: Config, databases: dict[str, Database],
                  watching_since: Mapping[str, float] | None = None,
                  keep_log_state: bool = True,
                  handover: Mapping[str, LogHandover] | None = None,
                  fleet_shard: Shard | None = None) -> list[ScheduledSource]:
    """Every source the configuration asks for, with its interval, deadline and database worker pool;
    `watching_since` keeps, across reloads, when each batch (and each fleet's job, as FLEET/JOB) was first
    watched, and `handover` what each log scan source (by source name) that a reload retired handed over.
    `fleet_shard` replaces every fleet's shard. Raises StateDirError when the log state folder cannot be
    created or written; without `keep_log_state` (a one-off look) the logs are read from their start and
    no position is saved."""
    watching_since = watching_since or {}
    pools = {name: WorkerPool(name, db.max_connections) for name, db in config.databases.items()}
    scheduled: list[ScheduledSource] = []
    state_dir: Path | None = None
    chosen = log_state_dir(config) if keep_log_state else None
    if chosen is not None:
        state_dir = prepare(chosen)
        log.info("log read positions are kept in %s", chosen.describe())
    for name, batch in config.batches.items():
        interval = config.batch_poll_interval(batch)
        scheduled.append(ScheduledSource(BatchInfoSource(name, batch, watching_since=watching_since.get(name),
                                                         calendars=config.calendars), interval))
        runs: RunsSource | None = None
        if batch.database is not None:
            db_config = config.databases[batch.database]
            db = databases[batch.database]
            pool = pools[batch.database]
            # the runs source tells the latest expected start's run from a re-run of an earlier one: from
            # the scheduler's plan as last read, or from the cron (its own BatchInfo: sources poll on
            # different threads)
            plan: ScheduleTableSource | None = None
            expected: Callable[[datetime], Expected | None] | None = None
            if batch.schedule is not None and batch.schedule.query is not None:
                plan = ScheduleTableSource(name, batch.schedule, db)
                expected = plan.expected
            elif batch.schedule is not None:
                expected = BatchInfo(batch, config.calendars, subject=f"batch {name!r}").expected
            if batch.runs is not None:
                runs = RunsSource(name, batch, db, text_timestamps=db_config.sqlite is not None,
                                  locate=config.locate, expected=expected)
                deadline = poll_deadline(db_config, runs.max_statements_per_poll)
                scheduled.append(ScheduledSource(runs, interval, deadline, pool))
            if plan is not None:
                scheduled.append(ScheduledSource(plan, interval, poll_deadline(db_config, 1), pool))
            if batch.checks:
                checks = ChecksSource(name, batch.checks, db)
                deadline = poll_deadline(db_config, len(batch.checks))
                scheduled.append(ScheduledSource(checks, interval, deadline, pool))
        if batch.logs:
            logs = _log_sources(config, name, state_dir, handover or {})
            scheduled += logs
            if runs is not None:
                scheduled.append(ScheduledSource(_evidence_source(name, runs, logs, state_dir), interval))
    claims = JobClaims(config.batches)
    for name, fleet in config.fleets.items():
        db_config = config.databases[fleet.database]
        prefix = f"{name}/"
        source = FleetSource(name, fleet, databases[fleet.database], calendars=config.calendars, claims=claims,
                             shard=fleet_shard, text_timestamps=db_config.sqlite is not None, locate=config.locate,
                             watching_since={key.removeprefix(prefix): since for key, since in watching_since.items()
                                             if key.startswith(prefix)})
        scheduled.append(ScheduledSource(source, config.fleet_poll_interval(fleet),
                                         poll_deadline(db_config, source.max_statements_per_poll),
                                         pools[fleet.database]))
    return scheduled


def _evidence_source(batch_name: str, runs: RunsSource, logs: Sequence[ScheduledSource],
                     state_dir: Path | None) -> RunLogEvidenceSource:
    """The log evidence about the batch's latest run, from its runs source and its log scans; its counts
    are kept in `state_dir` as the log scans' positions are (none without one)."""
    from .sources.logscan import LogScanSource

    watched = [WatchedLog(s.source.log_name, s.source, s.interval) for s in logs
               if isinstance(s.source, LogScanSource)]
    return RunLogEvidenceSource(batch_name, runs.latest_run, watched, state_dir=state_dir)


def _log_sources(config: Config, batch_name: str, state_dir: Path | None,
                 handover: Mapping[str, LogHandover]) -> list[ScheduledSource]:
    # imported here so that a configuration without logs never loads the tailing machinery
    from .sources.logfiles import LogFileSource
    from .sources.logscan import LogScanSource

    scheduled: list[ScheduledSource] = []
    for log_name, log_config in config.batches[batch_name].logs.items():
        interval = config.log_poll_interval(log_config)
        scheduled.append(ScheduledSource(LogFileSource(batch_name, log_name, log_config), interval))
        scan = LogScanSource(batch_name, log_name, log_config, state_dir,
                             handover=handover.get(f"logscan:{batch_name}/{log_name}"))
        scheduled.append(ScheduledSource(scan, interval))
    return scheduled


class Exporter:
    """One configuration's sources, store and poller."""

    def __init__(self, config: Config, watching_since: Mapping[str, float] | None = None,
                 keep_log_state: bool = True, handover: Mapping[str, LogHandover] | None = None) -> None:
        self.config = config
        self._databases = open_databases(config)
        self.sources = build_sources(config, self._databases, watching_since, keep_log_state, handover,
                                     fleet_shard=_fleet_shard)
        self.store = Store((s.source.name for s in self.sources), max_series=config.global_.max_series)
        self.poller = Poller(self.store, self.sources)

    @property
    def watching_since(self) -> dict[str, float]:
        """When each batch, and each fleet's job (FLEET/JOB), was first watched: for the next exporter."""
        since = {s.source.name.removeprefix("config:"): s.source.watching_since
                 for s in self.sources if isinstance(s.source, BatchInfoSource)}
        for scheduled in self.sources:
            if isinstance(scheduled.source, FleetSource):
                fleet = scheduled.source.fleet
                since.update({f"{fleet}/{job}": moment for job, moment in scheduled.source.watching_since().items()})
        return since

    def start(self) -> None:
        self.poller.start()

    def retire_logs(self) -> dict[str, LogHandover]:
        """Stop every log scan from reading and return their states to hand over, by source name."""
        from .sources.logscan import LogScanSource

        states: dict[str, LogHandover] = {}
        for scheduled in self.sources:
            if isinstance(scheduled.source, LogScanSource):
                state = scheduled.source.retire()
                if state is not None:
                    states[scheduled.source.name] = state
        return states

    def resume_logs(self) -> None:
        """Undo `retire_logs` (the reload that asked for it failed)."""
        from .sources.logscan import LogScanSource

        for scheduled in self.sources:
            if isinstance(scheduled.source, LogScanSource):
                scheduled.source.resume()

    def stop(self) -> None:
        """Stop polling and close the databases without waiting: closing a connection whose thread is
        stuck in a driver call blocks, and a stop (or reload) must not hang on a silent database.

        They are closed once a poll still running has had its deadline to end: closing an SQLite
        connection while its thread is inside a query crashes the process (a SIGHUP during a slow
        check did), and a reload leaves the old polls running."""
        self.poller.stop()
        databases = list(self._databases.values())
        grace = max((s.deadline for s in self.sources if s.database_pool is not None and s.deadline), default=0.0)

        def close() -> None:
            time.sleep(grace)
            for db in databases:
                db.close()

        threading.Thread(target=close, name="close-databases", daemon=True).start()
