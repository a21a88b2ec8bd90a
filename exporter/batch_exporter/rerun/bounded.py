"""Database calls with a deadline the command enforces itself, so a hung server cannot hang it."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ..database import Database, QueryError, Row
from ..deadline_thread import DeadlineMissed, DeadlineThread
from ..masking import mask_digits

_DEADLINE_MARGIN = 3.0
_UNAVAILABLE = ("connect", "timeout", "driver_missing")


class BoundedDatabase(Database):
    """Runs every call on one DeadlineThread and waits at most a deadline for it.

    The database layer stops slow queries, but a server that accepts a connection and then never
    answers can still block a driver call; the command must end anyway (the call is abandoned).
    Once the database proved unreachable, later calls fail at once with the same reason.
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
        self._thread = DeadlineThread(f"command:{db.name}")

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        if self._hung is not None:
            raise QueryError("timeout", self._hung)
        if self._down is not None:
            raise QueryError(self._down.reason, f"not tried: database {self.name!r} failed a moment ago "
                                                f"({self._down.reason})")
        limit = self._first_limit if self._first else self._limit
        try:
            rows = self._thread.call(lambda: self._query(sql, tuple(params)), limit)
        except DeadlineMissed:
            self._hung = f"database {self.name!r}: no answer within {limit:g}s (server or network hung?)"
            raise QueryError("timeout", self._hung) from None
        except QueryError as exc:
            self._first = False
            if exc.reason in _UNAVAILABLE:
                self._down = exc
            raise
        self._first = False
        return rows

    def close(self) -> None:
        # closed on the thread that opened the connection; a hung one is left to the process's exit
        if self._hung is None:
            with contextlib.suppress(Exception):  # the command is ending: a close that fails changes nothing
                self._thread.call(self._db.close, self._limit)
        self._thread.close()

    def _query(self, sql: str, params: tuple[object, ...]) -> list[Row]:
        try:
            return self._db.query(sql, params)
        except QueryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a driver bug must reach the caller as a QueryError
            raise QueryError("query", f"database {self.name!r}: {type(exc).__name__}: "
                                      f"{mask_digits(str(exc))}") from None
