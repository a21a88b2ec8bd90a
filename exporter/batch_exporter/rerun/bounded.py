"""Database calls with a deadline the command enforces itself, so a hung server cannot hang it."""
from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..database import Database, QueryError, Row
from ..masking import mask_digits

_DEADLINE_MARGIN = 3.0
_UNAVAILABLE = ("connect", "timeout", "driver_missing")


class BoundedDatabase(Database):
    """Runs every call on one daemon thread and waits at most a deadline for it.

    The database layer stops slow queries, but a server that accepts a connection and then never
    answers can still block a driver call; the command must end anyway (the thread is abandoned).
    Once the database proved unreachable, later calls fail at once with the same reason.
    (Not poller.WorkerPool: its executor threads are joined at interpreter exit, so one abandoned driver
    call would keep this one-shot command from ending; a daemon thread does not.)
    """

    def __init__(self, db: Database, connect_timeout: float, query_timeout: float,
                 margin: float = _DEADLINE_MARGIN) -> None:
        self.name = db.name
        self._db = db
        self._first_limit = connect_timeout + query_timeout + margin
        self._limit = query_timeout + margin
        self._first = True
        self._hung: str | None = None
        self._down: QueryError | None = None  # the first connect-type failure; later calls repeat it
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=f"rerun-check:{db.name}", daemon=True)
        self._thread.start()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        if self._hung is not None:
            raise QueryError("timeout", self._hung)
        if self._down is not None:
            raise QueryError(self._down.reason, f"not tried: database {self.name!r} failed a moment ago "
                                                f"({self._down.reason})")
        limit = self._first_limit if self._first else self._limit
        job = _Job(sql, tuple(params))
        self._jobs.put(job)
        if not job.done.wait(limit):
            self._hung = f"database {self.name!r}: no answer within {limit:g}s (server or network hung?)"
            raise QueryError("timeout", self._hung)
        self._first = False
        if job.error is not None:
            if job.error.reason in _UNAVAILABLE:
                self._down = job.error
            raise job.error
        return job.rows

    def close(self) -> None:
        if self._hung is None:
            self._jobs.put(None)
            self._thread.join(self._limit)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.rows = self._db.query(job.sql, job.params)
            except QueryError as exc:
                job.error = exc
            except Exception as exc:  # noqa: BLE001 - a driver bug must reach the caller, not kill the thread
                job.error = QueryError("query", f"database {self.name!r}: {type(exc).__name__}: "
                                                f"{mask_digits(str(exc))}")
            job.done.set()
        self._db.close()


@dataclass
class _Job:
    sql: str
    params: tuple[object, ...]
    rows: list[Row] = field(default_factory=list)
    error: QueryError | None = None
    done: threading.Event = field(default_factory=threading.Event)
