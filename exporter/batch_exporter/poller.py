"""Runs every source on its own interval (APScheduler) with an outer deadline, into the store."""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler

from . import freed_memory
from .deadline_thread import Closed, DeadlineMissed, DeadlineThread, StillStuck
from .snapshot import Snapshot
from .sources.errors import SourceError
from .store import Store

log = logging.getLogger(__name__)

_SPREAD_SECONDS = 5.0


class Source(Protocol):
    name: str

    def poll(self) -> Snapshot: ...


@dataclass(frozen=True)
class ScheduledSource:
    source: Source
    interval: float
    deadline: float | None = None  # seconds a poll may take before it is abandoned; None: no limit
    database_pool: WorkerPool | None = None  # the database's worker threads; None: poll in the scheduler's thread


class WorkerPool:
    """At most `size` worker threads for one database, so at most `size` connections (plus one
    abandoned per worker while it is stuck); sources of that database take turns on them."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        # first in, first out: a worker whose abandoned poll is still stuck goes to the back
        self._idle: queue.Queue[DeadlineThread] = queue.Queue()
        self._workers = [DeadlineThread(f"poll-{name}-{index}") for index in range(size)]
        for worker in self._workers:
            self._idle.put(worker)

    def run(self, source: Source, deadline: float | None) -> Snapshot:
        started = time.monotonic()
        worker = self._take_worker(deadline, started)
        try:
            remaining = None if deadline is None else max(0.001, deadline - (time.monotonic() - started))
            return worker.call(source.poll, remaining)
        except DeadlineMissed:
            raise SourceError("timeout", f"poll did not finish within {deadline:g}s") from None
        except StillStuck:
            raise SourceError("timeout", "the previous poll is still stuck past its deadline") from None
        except Closed:
            raise SourceError("stopped", "the exporter is stopping or reloading") from None
        finally:
            self._idle.put(worker)

    def _take_worker(self, deadline: float | None, started: float) -> DeadlineThread:
        """An idle worker that is not stuck; a stuck one goes back to the end of the queue."""
        stuck_seen = 0
        while True:
            remaining = None if deadline is None else deadline - (time.monotonic() - started)
            try:
                worker = self._idle.get(timeout=None if remaining is None else max(0.0, remaining))
            except queue.Empty:
                raise SourceError("timeout", f"no free connection to database {self.name} within "
                                             f"{deadline:g}s (all {self.size} busy)") from None
            if not worker.stuck:
                return worker
            self._idle.put(worker)
            stuck_seen += 1
            if stuck_seen >= self.size:
                raise SourceError("timeout", f"all {self.size} connections to database {self.name} are stuck "
                                             "in calls abandoned at their deadline")

    def close(self) -> None:
        for worker in self._workers:
            worker.close()


class Poller:
    """Owns the schedule; `poll_all_once` serves the `once` command and tests."""

    def __init__(self, store: Store, sources: list[ScheduledSource]) -> None:
        self._store = store
        self._sources = sources
        self._scheduler: BackgroundScheduler | None = None

    def poll(self, scheduled: ScheduledSource) -> bool:
        """Poll one source now and record the outcome; never raises."""
        name = scheduled.source.name
        started = time.monotonic()
        try:
            if scheduled.database_pool is not None:
                snapshot = scheduled.database_pool.run(scheduled.source, scheduled.deadline)
            else:
                snapshot = scheduled.source.poll()
        except SourceError as exc:
            duration = time.monotonic() - started
            log.warning("source %s failed (%s): %s", name, exc.reason, exc)
            self._store.record_failure(name, exc.reason, duration, exc.snapshot, message=str(exc), at=time.time())
            return False
        except Exception:  # a bug in a source must not stop the others
            duration = time.monotonic() - started
            log.exception("source %s failed unexpectedly", name)
            self._store.record_failure(name, "internal", duration, at=time.time(),
                                       message="an unexpected error (see the exporter's log)")
            return False
        self._store.record_success(snapshot, time.time(), time.monotonic() - started)
        # the poll's rows and the snapshot it replaced are garbage now
        freed_memory.give_back(len(snapshot.samples), freed_memory.LARGE_SNAPSHOT_SAMPLES)
        return True

    def poll_all_once(self) -> bool:
        """Poll every source once, concurrently; True when all succeeded."""
        results: dict[str, bool] = {}
        threads = [
            threading.Thread(target=lambda s=s: results.__setitem__(s.source.name, self.poll(s)), daemon=True)
            for s in self._sources
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return all(results.values())

    def start(self) -> None:
        """Start polling in the background, every source immediately and then on its interval."""
        database_sources = sum(1 for s in self._sources if s.database_pool is not None)
        # database polls wait for their pool's worker inside a scheduler thread: they get threads of
        # their own, so a slow database can never hold up the log and config sources
        scheduler = BackgroundScheduler(
            executors={"default": SchedulerPool(max(2, min(len(self._sources) - database_sources, 8))),
                       "database": SchedulerPool(max(1, min(database_sources, 32)))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        count = len(self._sources)
        for index, scheduled in enumerate(self._sources):
            # spread the sources over the first seconds so they do not all poll (and change the
            # exposition) in the same instant, every interval, forever
            offset = timedelta(seconds=min(scheduled.interval, _SPREAD_SECONDS) * index / max(count, 1))
            scheduler.add_job(self.poll, "interval", args=[scheduled], seconds=scheduled.interval,
                              next_run_time=now + offset, id=scheduled.source.name, name=scheduled.source.name,
                              executor="database" if scheduled.database_pool is not None else "default")
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        pools = {id(s.database_pool): s.database_pool for s in self._sources if s.database_pool is not None}
        for pool in pools.values():
            pool.close()
