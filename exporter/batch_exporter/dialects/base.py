"""The Dialect base class: everything the exporter does differently for one kind of database server.

A dialect says whether an ODBC ``Driver=`` names one of its drivers; which connection-string keys those
drivers may be given, and which values of them are safe; what to add to the connection string and run at
connect so that the session is read-only, bounded by a server-side statement timeout and in UTC; which
driver errors mean a timeout, a lost connection or a refused permission; how to fetch only the first rows
of a result; how the server reads SQL text (the ``sqlcheck`` readings); and which of its functions have
effects that outlive a read-only transaction.

Every member is abstract, so a dialect that leaves one out cannot be instantiated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Pairs = list[tuple[str, str]]
Row = tuple[object, ...]

# Keys every driver takes: which driver, and the account.
KEYS_EVERYWHERE = frozenset({"driver", "uid", "pwd"})


def keys(text: str) -> frozenset[str]:
    """The lower-case keys named in a space-separated list."""
    return frozenset(text.split())


@dataclass(frozen=True)
class Reading:
    """How one server splits text into literals, quoted names, comments and code."""

    label: str
    backslash_escapes: bool = False  # '\'' continues a '...' literal
    double_quote_backslash: bool = False  # ... and a "..." one (MySQL: "..." is a string)
    escape_string_prefix: bool = False  # PostgreSQL E'...' always takes backslash escapes
    dollar_quotes: bool = False  # PostgreSQL $tag$...$tag$
    brackets: bool = False  # [quoted name]
    brackets_double: bool = False  # ']]' inside [...] is a ']' (SQL Server; SQLite ends at the first ']')
    line_comment_ends: str = "\n"  # characters that end a -- or # comment
    sqlite_variables: bool = False  # SQLite $name(...) / @name(...) / :name(...) / #name(...) tokens
    backticks: bool = False  # `quoted name`
    nested_comments: bool = False
    hash_comments: bool = False
    dash_comment_needs_space: bool = False  # MySQL: '--' starts a comment only before whitespace
    executable_comments: bool = False  # MySQL /*! ... */ is code


@dataclass(frozen=True)
class ErrorCodes:
    """Driver errors that mean a timeout, a lost connection or a permission refused, rather than a failed query.

    Only the server's own: the ODBC-standard ones (HYT00, HY008, class 08, class 28, ...) hold for every
    dialect and are known to database.py.
    """

    timeout_states: frozenset[str] = frozenset()
    timeout_native: frozenset[int] = frozenset()
    lost_states: frozenset[str] = frozenset()
    lost_native: frozenset[int] = frozenset()
    lost_texts: tuple[str, ...] = ()  # lower-case phrases that make a general HY000 a lost connection
    # the login refused, or the account lacks a grant for what the statement touches
    permission_states: frozenset[str] = frozenset()
    permission_native: frozenset[int] = frozenset()

    def __or__(self, other: ErrorCodes) -> ErrorCodes:
        return ErrorCodes(
            timeout_states=self.timeout_states | other.timeout_states,
            timeout_native=self.timeout_native | other.timeout_native,
            lost_states=self.lost_states | other.lost_states,
            lost_native=self.lost_native | other.lost_native,
            lost_texts=self.lost_texts + tuple(text for text in other.lost_texts if text not in self.lost_texts),
            permission_states=self.permission_states | other.permission_states,
            permission_native=self.permission_native | other.permission_native,
        )


class SessionNotHardened(Exception):
    """A new session did not take the read-only, timeout or time-zone settings: it must not be used.

    The message says which setting and what to change, never the connection string.
    """


class SessionSpoiled(Exception):
    """A setting changed for one query could not be changed back: the connection must not be used again."""

    def __init__(self, what: str, error: Exception) -> None:
        super().__init__(what)
        self.error = error  # the driver's error, described by the caller


class Dialect(ABC):
    """One kind of database server. Instances hold no state; the registry in ``dialects`` holds one each."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The name configuration and ``sqlcheck`` use (``postgresql``)."""

    @abstractmethod
    def drives(self, driver: str) -> bool:
        """Whether ``driver`` (the ``Driver=`` value unbraced and lower-case; "" without one) is one of ours."""

    @abstractmethod
    def key_family(self, driver: str) -> str | None:
        """Which of ``odbc_keys`` applies to ``driver`` (one of ours)."""

    @property
    @abstractmethod
    def odbc_keys(self) -> Mapping[str | None, frozenset[str]]:
        """Per key family, the lower-case keys besides KEYS_EVERYWHERE that change nothing but where and
        how to connect, or how values are fetched. Every other key is refused."""

    @property
    @abstractmethod
    def refused_odbc_keys(self) -> Mapping[str, str]:
        """Keys our drivers know that are refused, and why (completes "key X is not allowed because ...")."""

    @abstractmethod
    def check_odbc_value(self, key: str, value: str) -> None:
        """Raise ValueError, naming the key and never the value, when an allowed lower-case ``key`` has an
        unbraced ``value`` that is not safe."""

    @abstractmethod
    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        """The connection string's pairs with our read-only and timeout settings added where the user has not
        set them (some settings must win over the user's: see each dialect)."""

    @abstractmethod
    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        """Make a new pyodbc connection read-only, bounded and in UTC where the connection string could not,
        and raise SessionNotHardened where it can tell that the session is not.

        ``driver_error`` is pyodbc.Error (the caller turns it into a connect error); ``database`` names
        the database in log lines.
        """

    @property
    @abstractmethod
    def error_codes(self) -> ErrorCodes:
        """Our server's and drivers' codes for a timeout, a lost connection or a permission refused."""

    @abstractmethod
    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        """Run ``sql`` on the pyodbc ``cursor`` and return at most ``limit`` rows, asking the server for no more
        where the driver reads the whole result at execute. Raise SessionSpoiled when the session is left
        changed (``driver_error`` is pyodbc.Error)."""

    def fetch_batches(self, cursor: Any, sql: str, params: tuple[object, ...], size: int) -> Iterator[list[Row]]:
        """Run ``sql`` on the pyodbc ``cursor`` and yield its rows ``size`` at a time; where the driver reads
        the whole result at execute, a dialect asks the server for a batch at a time instead."""
        cursor.execute(sql, *params)
        yield from batches_of(cursor, size)

    @property
    @abstractmethod
    def readings(self) -> tuple[Reading, ...]:
        """Every way our server may read statement text (settings change it); sqlcheck requires all to agree."""

    @property
    @abstractmethod
    def side_effect_functions(self) -> frozenset[str]:
        """Lower-case names of our server's functions whose effect outlives a read-only transaction (session
        locks, replication slots, server state, files, sequences, other servers); a name ending in ``*``
        stands for every name with that prefix. sqlcheck refuses calls to those of every registered dialect,
        whatever the server, so that a name listed here is refused everywhere."""

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"


def odbc_get(pairs: Pairs, key: str) -> str | None:
    """The first value of ``key`` (any case), braces kept; None when absent."""
    return next((value for name, value in pairs if name.lower() == key.lower()), None)


def odbc_pop(pairs: Pairs, key: str) -> str | None:
    """Remove every ``key`` (any case) from ``pairs``, returning the first value."""
    found = odbc_get(pairs, key)
    pairs[:] = [(name, value) for name, value in pairs if name.lower() != key.lower()]
    return found


def unbrace(value: str) -> str:
    if len(value) >= 2 and value.startswith("{") and value.endswith("}"):
        return value[1:-1].replace("}}", "}")
    return value


def brace(value: str) -> str:
    return "{" + value.replace("}", "}}") + "}"


def driver_of(pairs: Pairs) -> str:
    """The ``Driver=`` value as dialects compare it: unbraced, lower-case, "" when there is none."""
    return unbrace(odbc_get(pairs, "driver") or "").lower()


def parse_odbc(text: str) -> Pairs:
    """``key=value;`` pairs; values keep their {braces}. Errors give positions, never the text."""
    pairs: Pairs = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in "; \t\r\n":
            i += 1
            continue
        equals = text.find("=", i)
        if equals < 0:
            raise ValueError(f"ODBC connection string: attribute without '=' at character {i}")
        key = text[i:equals].strip()
        j = equals + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            end = j + 1
            while True:
                close = text.find("}", end)
                if close < 0:
                    raise ValueError(f"ODBC connection string: '{{' at character {j} is never closed")
                if text.startswith("}}", close):
                    end = close + 2
                    continue
                end = close + 1
                break
            value = text[j:end]
            rest = text.find(";", end)
            if text[end : n if rest < 0 else rest].strip():
                raise ValueError(f"ODBC connection string: text after '}}' at character {end}")
            i = n if rest < 0 else rest
        else:
            end = text.find(";", j)
            end = n if end < 0 else end
            value = text[j:end].strip()
            i = end
        pairs.append((key, value))
    return pairs


def rows_of(cursor: Any, limit: int | None) -> list[Row]:
    """The executed pyodbc ``cursor``'s rows (at most ``limit``; None: all); none for a statement without a result."""
    if not cursor.description:
        return []
    return [tuple(row) for row in (cursor.fetchall() if limit is None else cursor.fetchmany(limit))]


def batches_of(cursor: Any, size: int) -> Iterator[list[Row]]:
    """The executed pyodbc ``cursor``'s rows, ``size`` at a time; none for a statement without a result."""
    if not cursor.description:
        return
    while rows := cursor.fetchmany(size):
        yield [tuple(row) for row in rows]


def fetch_streamed(cursor: Any, sql: str, params: tuple[object, ...], limit: int) -> list[Row]:
    """fetch_head for drivers that stream results: fetching no more than ``limit`` rows is enough."""
    cursor.execute(sql, *params)
    return rows_of(cursor, limit)
