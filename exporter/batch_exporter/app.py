"""Wiring: from a validated Config to running sources, a store, and what the HTTP server serves."""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from .config import Config, DatabaseConfig
from .database import Database, QueryError, odbc_dialect, open_database
from .poller import Poller, ScheduledSource, WorkerPool
from .runsummary import MAX_ATTEMPTS_WITH_RECORDS
from .sources.batchinfo import BatchInfoSource
from .sources.checks import ChecksSource
from .sources.runs import RunsSource
from .store import Store

log = logging.getLogger(__name__)

# the runs source may send in one poll: on its first, two column probes and the sample of a start time;
# then the window, the last success, and the records of each attempt read
_STATEMENTS_PER_POLL = 5 + MAX_ATTEMPTS_WITH_RECORDS
_DEADLINE_MARGIN = 2.0


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


def build_sources(config: Config, databases: dict[str, Database],
                  watching_since: Mapping[str, float] | None = None) -> list[ScheduledSource]:
    """Every source the configuration asks for, with its interval, deadline and database lane;
    `watching_since` keeps, across reloads, when each batch was first watched."""
    watching_since = watching_since or {}
    lanes = {name: WorkerPool(name, db.max_connections) for name, db in config.databases.items()}
    scheduled: list[ScheduledSource] = []
    state_dir = Path(config.global_.state_dir) if config.global_.state_dir else None
    for name, batch in config.batches.items():
        interval = config.batch_poll_interval(batch)
        scheduled.append(ScheduledSource(BatchInfoSource(name, batch, watching_since=watching_since.get(name)),
                                         interval))
        if batch.database is not None:
            db_config = config.databases[batch.database]
            db = databases[batch.database]
            lane = lanes[batch.database]
            if batch.runs is not None:
                runs = RunsSource(name, batch, db, text_timestamps=db_config.sqlite is not None,
                                  locate=config.locate)
                deadline = poll_deadline(db_config, _STATEMENTS_PER_POLL)
                scheduled.append(ScheduledSource(runs, interval, deadline, lane))
            if batch.checks:
                checks = ChecksSource(name, batch.checks, db)
                deadline = poll_deadline(db_config, len(batch.checks))
                scheduled.append(ScheduledSource(checks, interval, deadline, lane))
        if batch.logs:
            scheduled += _log_sources(config, name, state_dir)
    return scheduled


def _log_sources(config: Config, batch_name: str, state_dir: Path | None) -> list[ScheduledSource]:
    # imported here so that a configuration without logs never loads the tailing machinery
    from .sources.logfiles import LogFileSource
    from .sources.logscan import LogScanSource

    scheduled: list[ScheduledSource] = []
    for log_name, log_config in config.batches[batch_name].logs.items():
        interval = config.log_poll_interval(log_config)
        scheduled.append(ScheduledSource(LogFileSource(batch_name, log_name, log_config), interval))
        scheduled.append(ScheduledSource(LogScanSource(batch_name, log_name, log_config, state_dir), interval))
    return scheduled


class Exporter:
    """One configuration's sources, store and poller."""

    def __init__(self, config: Config, watching_since: Mapping[str, float] | None = None) -> None:
        self.config = config
        self._databases = open_databases(config)
        self.sources = build_sources(config, self._databases, watching_since)
        self.watching_since = {s.source.name.removeprefix("config:"): s.source.watching_since
                               for s in self.sources if isinstance(s.source, BatchInfoSource)}
        self.store = Store(s.source.name for s in self.sources)
        self.poller = Poller(self.store, self.sources)

    def start(self) -> None:
        self.poller.start()

    def stop(self) -> None:
        """Stop polling and close the databases without waiting: closing a connection whose thread is
        stuck in a driver call blocks, and a stop (or reload) must not hang on a silent database."""
        self.poller.stop()
        databases = list(self._databases.values())
        threading.Thread(target=lambda: [db.close() for db in databases], name="close-databases",
                         daemon=True).start()


class Runtime:
    """What the HTTP server talks to; swaps exporters on reload so serving never stops."""

    def __init__(self, exporter: Exporter) -> None:
        self._exporter = exporter
        self._lock = threading.Lock()

    @property
    def exporter(self) -> Exporter:
        return self._exporter

    def metrics_payload(self) -> tuple[bytes, bytes]:
        return self._exporter.store.payload()

    def is_ready(self) -> bool:
        return self._exporter.store.all_polled()

    def replace(self, config: Config) -> None:
        """Apply a new, already validated configuration: build and poll it once, then swap.

        The old exporter keeps serving until the new one is ready; if building the new one fails,
        the exception propagates and the old one stays in place.
        """
        with self._lock:
            new = Exporter(config, self._exporter.watching_since)
            try:
                new.poller.poll_all_once()
            except BaseException:
                new.stop()
                raise
            old, self._exporter = self._exporter, new
            old.stop()
            new.start()
            log.info("configuration reloaded: %d sources", len(new.sources))
