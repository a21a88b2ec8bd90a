"""Read-only database access with deadlines that really stop the query.

Two drivers: SQLite (standard library) and ODBC (pyodbc, imported only when an ODBC database is
opened). Read-only is enforced in layers, because each one alone can be switched off or fooled:

1. ``sqlcheck`` refuses anything but a single SELECT before it reaches the driver;
2. the session is read-only where the driver allows it: SQLite ``mode=ro`` with ATTACH disabled and
   an authorizer that allows only reads; through ODBC, whatever the server's dialect sets (each module of
   ``dialects`` says how: ``Dialect.harden`` and ``Dialect.start_session``);
3. ODBC runs with autocommit off and every query is rolled back, never committed;
4. the account should only be granted SELECT (documented for users, not checkable here).

Deadlines: SQLite checks one in its progress handler; ODBC cancels from a timer thread and the dialect
also sets the server's own statement limit where it has one, and puts the session in UTC where it can.

Each calling thread gets its own connection (pyodbc.threadsafety == 1). A timeout keeps the connection;
a broken connection is dropped and the next call reconnects, with a backoff after connect failures.
Driver errors become a QueryError reason from the ODBC-standard SQLSTATEs and the dialect's own codes
(``Dialect.error_codes``). Error messages carry the database name and the SQLSTATE (for SQLite, the
file's path and what is wrong with it), never the connection string or row values.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import sqlite3
import stat
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Self

from . import dialects
from .dialects.base import (
    Dialect,
    Pairs,
    SessionNotHardened,
    SessionSpoiled,
    driver_of,
    parse_odbc,
    rows_of,
    unbrace,
)
from .masking import mask_digits, strip_invisible
from .sqlcheck import StatementError, check_read_only

# permission: the login is refused, or the account lacks a grant for what the statement reads
Reason = Literal["connect", "timeout", "query", "permission", "driver_missing"]
REASONS: tuple[Reason, ...] = ("connect", "timeout", "query", "permission", "driver_missing")
Row = tuple[object, ...]
Consume = Callable[[list[Row]], None]  # takes one batch of a result's rows (Database.query_batches)
Clock = Callable[[], float]
FETCH_BATCH = 500  # rows per fetch when a result is read in batches

_log = logging.getLogger(__name__)


class QueryError(Exception):
    """A database call failed. ``reason`` is one of REASONS (a metric label); the message is safe to log."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


class Database(ABC):
    """One configured database, opened read-only. ``query`` may be called from any thread."""

    name: str

    @abstractmethod
    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run one SELECT with ``?`` placeholders and return all rows in driver-native types."""

    def query_head(self, sql: str, params: Sequence[object] = (), limit: int = 2) -> list[Row]:
        """Like query, but return at most the first ``limit`` rows; the databases opened here also fetch
        no more than that from the server."""
        return self.query(sql, params)[:limit]

    def query_batches(self, sql: str, params: Sequence[object], consume: Consume) -> None:
        """Like query, but hand the rows to ``consume`` a batch at a time as they are fetched, so that a
        caller that keeps little of each row never holds the whole result (a fleet's window). What
        ``consume`` raises ends the statement (rolled back as always) and reaches the caller unchanged."""
        consume(self.query(sql, params))

    @abstractmethod
    def close(self) -> None:
        """Close every connection; later queries raise QueryError('connect')."""


def open_database(
    name: str,
    *,
    sqlite: str | None = None,
    odbc: str | None = None,
    query_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    clock: Clock = time.monotonic,
) -> Database:
    """Open (lazily: the first query connects) the database ``name`` from a SQLite path or an ODBC string.

    ``clock`` times the reconnect backoff only. Raises QueryError('driver_missing') when ``odbc`` is
    given and pyodbc or libodbc is not installed, ValueError on bad arguments.
    """
    if (sqlite is None) == (odbc is None):
        raise ValueError(f"database {name!r}: give exactly one of sqlite= or odbc=")
    # 0 means "no limit" to ODBC, and a connect without a limit hangs on a silent peer.
    if not (query_timeout > 0 and connect_timeout > 0):
        raise ValueError(f"database {name!r}: query_timeout and connect_timeout must be positive")
    if sqlite is not None:
        return _SqliteDatabase(name, sqlite, query_timeout, clock)
    assert odbc is not None
    return _OdbcDatabase(name, odbc, query_timeout, connect_timeout, clock)


class _Backoff:
    """After a failed connect, refuse further attempts for 1 s, doubling to 60 s; reset on success."""

    FIRST = 1.0
    LONGEST = 60.0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._delay = 0.0
        self._until = 0.0
        self._last: QueryError | None = None

    def blocked(self) -> QueryError | None:
        """The error to raise instead of connecting, or None when an attempt is allowed."""
        with self._lock:
            wait = self._until - self._clock()
            if wait <= 0 or self._last is None:
                return None
            return QueryError(self._last.reason, f"{self._last}; next connect attempt in {wait:.1f}s")

    def failed(self, error: QueryError) -> None:
        with self._lock:
            now = self._clock()
            if now < self._until:
                return  # another thread already failed within this window
            self._delay = self.FIRST if self._delay == 0 else min(self._delay * 2, self.LONGEST)
            self._until = now + self._delay
            self._last = error

    def succeeded(self) -> None:
        with self._lock:
            self._delay = self._until = 0.0
            self._last = None


class _PerThreadDatabase(Database):
    """Shared machinery: statement check, one connection per thread, drop and reconnect, backoff."""

    def __init__(self, name: str, dialect: Dialect, clock: Clock) -> None:
        self.name = name
        self.dialect = dialect  # how the server reads statements, and (ODBC) how its session is set up
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[weakref.ref[threading.Thread], Any]] = {}
        self._backoff = _Backoff(clock)
        self._closed = False

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._checked_execute(sql, params, None)

    def query_head(self, sql: str, params: Sequence[object] = (), limit: int = 2) -> list[Row]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1 (got {limit})")
        return self._checked_execute(sql, params, limit)

    def query_batches(self, sql: str, params: Sequence[object], consume: Consume) -> None:
        self._checked_execute(sql, params, None, consume)

    def _checked_execute(self, sql: str, params: Sequence[object], limit: int | None,
                         consume: Consume | None = None) -> list[Row]:
        try:
            check_read_only(sql, self.dialect)
        except StatementError as err:
            raise QueryError("query", f"database {self.name!r}: statement refused: {err}") from None
        return self._execute(self._thread_connection(), sql, tuple(params), limit, consume)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = [connection for _, connection in self._connections.values()]
            self._connections.clear()
        for connection in connections:
            _close_quietly(connection)

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection, or QueryError('connect' / 'permission' / 'driver_missing')."""

    @abstractmethod
    def _execute(self, connection: Any, sql: str, params: tuple[object, ...], limit: int | None,
                 consume: Consume | None) -> list[Row]:
        """Run the statement under the deadline and fetch at most ``limit`` rows (None: all), or hand them
        all to ``consume`` batch by batch and return none; raise QueryError, dropping the connection if
        broken."""

    def _thread_connection(self) -> Any:
        if self._closed:
            raise QueryError("connect", f"database {self.name!r} is closed")
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        blocked = self._backoff.blocked()
        if blocked is not None:
            raise blocked
        try:
            connection = self._connect()
        except QueryError as err:
            self._backoff.failed(err)
            raise
        self._backoff.succeeded()
        self._adopt(connection)
        return connection

    def _adopt(self, connection: Any) -> None:
        current = threading.current_thread()
        with self._lock:
            if self._closed:
                _close_quietly(connection)
                raise QueryError("connect", f"database {self.name!r} is closed")
            for ident, (thread_ref, old) in list(self._connections.items()):
                thread = thread_ref()
                if thread is None or not thread.is_alive():  # its thread ended: nobody will use it again
                    _close_quietly(old)
                    del self._connections[ident]
            self._connections[current.ident or 0] = (weakref.ref(current), connection)
        self._local.connection = connection

    def _drop(self, connection: Any) -> None:
        """Forget this thread's broken connection so that the next call reconnects."""
        with self._lock:
            entry = self._connections.get(threading.get_ident())
            if entry is not None and entry[1] is connection:
                del self._connections[threading.get_ident()]
        self._local.connection = None
        _close_quietly(connection)


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - already broken or closed; nothing left to release
        _log.debug("closing a database connection failed", exc_info=True)


# ---------------------------------------------------------------------------------------------- SQLite

_SQLITE_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_SQLITE_TIMEOUT_ERRORS = ("SQLITE_INTERRUPT", "SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_BROKEN_ERRORS = ("SQLITE_CANTOPEN", "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_IOERR")
_PROGRESS_STEPS = 10_000  # VM instructions between deadline checks: well under a millisecond


def _authorize_reads(action: int, *_: object) -> int:
    return sqlite3.SQLITE_OK if action in _SQLITE_READ_ACTIONS else sqlite3.SQLITE_DENY


class _SqliteDatabase(_PerThreadDatabase):
    def __init__(self, name: str, path: str, query_timeout: float, clock: Clock) -> None:
        super().__init__(name, dialects.dialect_named("sqlite"), clock)
        self.path = Path(path).expanduser().absolute()
        self._uri = self.path.as_uri() + "?mode=ro"
        self._query_timeout = query_timeout

    def _connect(self) -> sqlite3.Connection:
        try:
            # timeout: how long to wait for a writer's lock, bounded by the query deadline
            connection = sqlite3.connect(
                self._uri,
                uri=True,
                timeout=self._query_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            problem, detail = _sqlite_file_problem(self.path), _sqlite_text(exc)
            raise QueryError(
                "connect", f"database {self.name!r}: cannot open SQLite file {self.path} read-only: "
                + (f"{problem} ({detail})" if problem else detail)
            ) from None
        connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        connection.set_authorizer(_authorize_reads)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchall()  # fails now if not a database
        except sqlite3.Error as exc:
            connection.close()
            raise QueryError(
                "connect", f"database {self.name!r}: cannot read SQLite file {self.path}: {_sqlite_text(exc)}"
            ) from None
        return connection

    def _execute(
        self, connection: sqlite3.Connection, sql: str, params: tuple[object, ...], limit: int | None,
        consume: Consume | None
    ) -> list[Row]:
        deadline = time.monotonic() + self._query_timeout
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        try:
            # SQLite computes rows as they are fetched (Python's cursor steps one row ahead)
            cursor = connection.execute(sql, params)
            rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
            cursor.close()
        except sqlite3.Error as exc:
            raise self._query_error(connection, exc, sql) from None
        finally:
            connection.set_progress_handler(None, 0)
        if consume is None:
            return rows
        # A read keeps the file's shared lock while its statement is open, and a scheduler writing its run
        # table would wait on the caller: the rows are read whole first, then handed over.
        for first in range(0, len(rows), FETCH_BATCH):
            consume(rows[first : first + FETCH_BATCH])
        return []

    def _query_error(self, connection: sqlite3.Connection, exc: sqlite3.Error, sql: str) -> QueryError:
        """The QueryError for a failed SQLite statement; a connection whose file is broken is dropped."""
        code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        if code.startswith(_SQLITE_TIMEOUT_ERRORS):
            return QueryError(
                "timeout", f"database {self.name!r}: query stopped at the {self._query_timeout:g}s deadline ({code})"
            )
        if code.startswith(_SQLITE_BROKEN_ERRORS):
            self._drop(connection)
            return QueryError(
                "connect", f"database {self.name!r}: SQLite file {self.path}: {code}: {_sqlite_text(exc, sql)}"
            )
        return QueryError("query", f"database {self.name!r}: query failed: {code}: {_sqlite_text(exc, sql)}")


def _sqlite_text(exc: sqlite3.Error, sql: str = "") -> str:
    return redact(str(exc), sql)


def _sqlite_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as a file, in the operator's terms; None when nothing is visibly wrong
    (then SQLite's own text says it: a lock, a WAL file it cannot create, ...)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        if path.parent.is_dir():
            return "the file does not exist"
        return f"the file does not exist, nor does its folder {path.parent}"
    except PermissionError:
        return "permission denied on a folder of its path (this user cannot reach it)"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if not stat.S_ISREG(status.st_mode):
        return "it is a folder, not a file" if stat.S_ISDIR(status.st_mode) else "it is not a regular file"
    if not os.access(path, os.R_OK):
        return "the file exists but this user may not read it"
    if not os.access(path.parent, os.X_OK):
        return f"this user may not enter its folder {path.parent}"
    return None


# ------------------------------------------------------------------------------------------------ ODBC

# ODBC-standard codes, whatever the server; each dialect adds its own (Dialect.error_codes)
_TIMEOUT_STATES = frozenset({"HYT00", "HYT01", "HY008", "HY018"})
_LOST_STATE_CLASS = "08"
_PERMISSION_STATE_CLASS = "28"  # invalid authorization specification: the login is refused
_MISSING_DRIVER_STATES = frozenset({"IM002", "IM003"})
_NATIVE_CODE = re.compile(r"\((-?\d+)\)\s*\(SQL\w+\)\s*$")


class _OdbcDatabase(_PerThreadDatabase):
    def __init__(
        self, name: str, connection_string: str, query_timeout: float, connect_timeout: float, clock: Clock
    ) -> None:
        self._pyodbc = _load_pyodbc(name)
        try:
            dialect, _ = _checked_dialect(connection_string)
            hardened = harden_connection_string(
                connection_string, query_timeout=query_timeout, connect_timeout=connect_timeout
            )
        except ValueError as err:
            raise ValueError(f"database {name!r}: {err}") from None
        super().__init__(name, dialect, clock)
        self._connection_string = hardened
        self._query_timeout = query_timeout
        self._login_timeout = max(1, math.ceil(connect_timeout))

    def _connect(self) -> Any:
        pyodbc = self._pyodbc
        try:
            connection = pyodbc.connect(
                self._connection_string, autocommit=False, timeout=self._login_timeout
            )
        except pyodbc.Error as exc:
            state, _, _ = _odbc_error(exc)
            if state in _MISSING_DRIVER_STATES or "can't open lib" in str(exc).lower():
                installed = ", ".join(pyodbc.drivers()) or "none"
                raise QueryError(
                    "driver_missing",
                    f"database {self.name!r}: ODBC driver or DSN not found ({_describe(exc)}); "
                    f"installed drivers: {installed}",
                ) from None
            if _permission_refused(state, exc, self.dialect):
                raise QueryError(
                    "permission", f"database {self.name!r}: login refused: {_describe(exc)}"
                ) from None
            raise QueryError("connect", f"database {self.name!r}: connect failed: {_describe(exc)}") from None
        try:
            self._start_session(connection)
        except pyodbc.Error as exc:
            _close_quietly(connection)
            raise QueryError(
                "connect", f"database {self.name!r}: read-only session setup failed: {_describe(exc)}"
            ) from None
        except SessionNotHardened as refused:
            _close_quietly(connection)
            raise QueryError("connect", f"database {self.name!r}: {refused}") from None
        return connection

    def _start_session(self, connection: Any) -> None:
        self.dialect.start_session(connection, self._query_timeout, self._pyodbc.Error, self.name)

    def _execute(self, connection: Any, sql: str, params: tuple[object, ...], limit: int | None,
                 consume: Consume | None) -> list[Row]:
        cursor = connection.cursor()
        watchdog = _Watchdog(cursor.cancel, self._query_timeout)
        try:
            with watchdog:
                rows = self._fetch(cursor, sql, params, limit, consume, watchdog)
        except self._pyodbc.Error as exc:
            state, _, native = _odbc_error(exc)
            codes = self.dialect.error_codes
            if watchdog.fired or state in _TIMEOUT_STATES | codes.timeout_states or native in codes.timeout_native:
                reason: Reason = "timeout"
                message = f"query stopped at the {self._query_timeout:g}s deadline ({_describe(exc, sql)})"
            elif _connection_lost(state, exc, native, self.dialect):
                reason, message = "connect", f"connection lost ({_describe(exc, sql)})"
            elif _permission_refused(state, exc, self.dialect):
                reason, message = "permission", f"permission denied: {_describe(exc, sql)}"
            else:
                reason, message = "query", f"query failed: {_describe(exc, sql)}"
            self._end(connection, broken=reason == "connect")
            raise QueryError(reason, f"database {self.name!r}: {message}") from None
        except SessionSpoiled as spoiled:
            self._drop(connection)  # every later query would run in the changed session
            raise QueryError(
                "connect", f"database {self.name!r}: {spoiled}, reconnecting: {_describe(spoiled.error)}"
            ) from None
        except BaseException:  # from consume: the statement ends as any other, then the caller hears it
            _close_quietly(cursor)
            self._end(connection, broken=False)
            raise
        finally:
            _close_quietly(cursor)
        self._end(connection, broken=False)
        return rows

    def _fetch(self, cursor: Any, sql: str, params: tuple[object, ...], limit: int | None,
               consume: Consume | None, watchdog: _Watchdog) -> list[Row]:
        if limit is not None:
            return self.dialect.fetch_head(cursor, sql, params, limit, self._pyodbc.Error)
        if consume is None:
            cursor.execute(sql, *params)
            return rows_of(cursor, None)
        for batch in self.dialect.fetch_batches(cursor, sql, params, FETCH_BATCH):
            with watchdog.paused():
                consume(batch)
        return []

    def _end(self, connection: Any, broken: bool) -> None:
        """Roll back (never commit); a connection that cannot even roll back is dropped."""
        if not broken:
            try:
                connection.rollback()
                return
            except self._pyodbc.Error as exc:
                _log.warning(
                    "database %r: rollback failed, reconnecting next time: %s", self.name, _describe(exc)
                )
        self._drop(connection)


class _Watchdog:
    """Cancels the running statement from a watching thread once the driver has worked `seconds` in all.
    The time the caller spends in `paused()` (handling a batch of rows between two fetches) does not
    count: the deadline is the statement's, not the caller's."""

    def __init__(self, cancel: Callable[[], object], seconds: float) -> None:
        self._cancel = cancel
        self._changed = threading.Condition()
        self._finished = False
        self._left = seconds
        self._running_since: float | None = None  # None while paused
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)

    def __enter__(self) -> Self:
        with self._changed:
            self._running_since = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._changed:  # waits for a cancel in progress, so it cannot hit the next statement
            self._finished = True
            self._changed.notify()

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._changed:
            if self._running_since is not None:
                self._left -= time.monotonic() - self._running_since
                self._running_since = None
        try:
            yield
        finally:
            with self._changed:
                self._running_since = time.monotonic()
                self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while not self._finished:
                if self._running_since is None:
                    self._changed.wait()
                    continue
                remaining = self._left - (time.monotonic() - self._running_since)
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                self.fired = True
                try:
                    self._cancel()
                except Exception:  # noqa: BLE001 - the statement may have just ended; the caller sees `fired`
                    _log.debug("cancelling a statement failed", exc_info=True)
                return


def _connection_lost(state: str, exc: Exception, native: int | None, dialect: Dialect) -> bool:
    codes = dialect.error_codes
    if state.startswith(_LOST_STATE_CLASS) or state in codes.lost_states or native in codes.lost_native:
        return True
    text = _odbc_error(exc)[1].lower()
    return state == "HY000" and any(phrase in text for phrase in codes.lost_texts)


def _permission_refused(state: str, exc: Exception, dialect: Dialect) -> bool:
    codes = dialect.error_codes
    native = _odbc_error(exc)[2]
    return (
        state.startswith(_PERMISSION_STATE_CLASS) or state in codes.permission_states
        or native in codes.permission_native
    )


def _load_pyodbc(name: str) -> ModuleType:
    try:
        return importlib.import_module("pyodbc")
    except ImportError as exc:
        raise QueryError(
            "driver_missing",
            f"database {name!r}: ODBC support is not installed ({exc}); install the ODBC driver manager "
            "(apt-get install unixodbc) and the Python module (pip install pyodbc)",
        ) from None


def _odbc_error(exc: Exception) -> tuple[str, str, int | None]:
    """(SQLSTATE, driver text, native error code) from a pyodbc.Error."""
    args = exc.args
    if len(args) >= 2 and isinstance(args[0], str):
        state, text = args[0], str(args[1])
    else:
        state, text = "", str(args[0]) if args else ""
    native = _NATIVE_CODE.search(text)
    return state, text, int(native.group(1)) if native else None


def _describe(exc: Exception, sql: str = "") -> str:
    state, text, native = _odbc_error(exc)
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)  # [SQLSTATE][unixODBC][vendor] prefixes
    text = _NATIVE_CODE.sub("", text)
    text = re.sub(r";?\s*Error while executing the query\s*$", "", text.strip())
    label = type(exc).__name__ + (f", native {native}" if native is not None else "")
    return f"SQLSTATE {state or '?'} ({label}): {redact(text, sql)}"


# A quote opens after a non-word character and closes before one, so "Can't" is no quote.
_QUOTED = re.compile(r"(?<!\w)(['\"`])(?:(?!\1).|\1(?=\w))*\1(?!\w)", re.DOTALL)
_LONG_NUMBER = re.compile(r"\d{5,}")


def redact(text: str, sql: str = "", limit: int = 300) -> str:
    """Driver text made safe to log: quoted parts not taken from ``sql`` and numbers are hidden.

    Drivers quote the offending value in their messages (``value "4111111111111111" is out of range``);
    quoted names that the statement itself contains stay readable. Outside quotes, card numbers however
    written are masked as everywhere (masking.mask_digits), then any other run of 5 or more digits (a
    row value such as an account number) becomes ``...``.
    """

    def quoted(match: re.Match[str]) -> str:
        inner = match.group()[1:-1]
        if inner and re.search(rf"(?<!\w){re.escape(inner)}(?!\w)", sql):
            return match.group()
        return match.group()[0] + "..." + match.group()[-1]

    def unquoted(piece: str) -> str:
        return _LONG_NUMBER.sub("...", mask_digits(piece))

    text = strip_invisible(text[:2000])
    pieces = []
    last = 0
    for match in _QUOTED.finditer(text):
        pieces.append(unquoted(text[last : match.start()]))
        pieces.append(quoted(match))
        last = match.end()
    pieces.append(unquoted(text[last:]))
    cleaned = " ".join("".join(pieces).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


# ------------------------------------------------------------------------------- connection strings


def odbc_dialect(connection_string: str) -> str | None:
    """The server kind behind an ODBC connection string, from its Driver=: the name of its dialect (None
    for a bare DSN or a driver no dialect recognises).

    Raises ValueError for a malformed string or a key the exporter does not allow for that driver
    (see allowed_odbc_keys); the message names the key, never its value.
    """
    dialect, _ = _checked_dialect(connection_string)
    return None if dialects.is_generic(dialect) else dialect.name


def _checked_dialect(connection_string: str) -> tuple[Dialect, Pairs]:
    """The dialect and the parsed pairs, once every key has been checked for that dialect's driver."""
    pairs = parse_odbc(connection_string)
    dialect = dialects.dialect_for_pairs(pairs)
    check_odbc_keys(pairs, dialect.key_family(driver_of(pairs)))
    return dialect, pairs


# Keys that change nothing but where and how to connect, or how values are fetched, are allowed per driver
# family (each dialect lists its own). Everything else is refused: drivers run SQL from keys (psqlODBC
# ConnSettings, MariaDB InitStmt), read more settings from files (MariaDB USE_MYCNF), reconnect silently
# (and lose the read-only session), or rewrite statements.


def allowed_odbc_keys(family: str | None) -> frozenset[str]:
    """Lower-case keys accepted for a driver family (postgresql, mariadb, mssql, freetds, sqlite, None)."""
    return dialects.allowed_keys(family)


def check_odbc_keys(pairs: list[tuple[str, str]], family: str | None) -> None:
    """Raise ValueError naming the first key (never a value) that the driver ``family`` may not be given."""
    allowed = allowed_odbc_keys(family)
    owner = dialects.dialect_for_key_family(family)
    driver_name = "an unrecognised driver or a DSN" if family is None else f"the {family} driver"
    seen: set[str] = set()
    for key, value in pairs:
        lower = key.lower()
        if lower in seen and lower in ("driver", "dsn"):
            raise ValueError(f"key {key} is not allowed twice: the one used decides how statements are checked")
        seen.add(lower)
        if not re.fullmatch(r"[A-Za-z0-9_ -]+", key):
            raise ValueError(f"key {key!r} is not allowed because it is not a plain name")
        if lower not in allowed:
            why = dialects.refusal_reason(lower) or (
                f"the exporter does not know it to be harmless for {driver_name} (see docs/connection-strings.md)"
            )
            raise ValueError(f"key {key} is not allowed because {why}")
        if value.startswith("{") and "}}" in value:
            raise ValueError(f"key {key} is not allowed with '}}}}' inside braces: drivers read it differently")
        owner.check_odbc_value(lower, unbrace(value))


def harden_connection_string(connection_string: str, *, query_timeout: float, connect_timeout: float) -> str:
    """Add the dialect's read-only and timeout settings that the user has not set already (what each
    server gets is its dialect's ``harden``, in ``dialects``)."""
    dialect, pairs = _checked_dialect(connection_string)
    pairs = dialect.harden(pairs, query_timeout=query_timeout, connect_timeout=connect_timeout)
    return "".join(f"{key}={value};" for key, value in pairs)
