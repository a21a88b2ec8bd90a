"""One Dialect per kind of database server, and the registry that picks one.

Adding a kind (Oracle, Db2) is one new module here, a subclass of ``base.Dialect`` (every member is
abstract, so nothing can be left out), plus its instance added to the ``DIALECTS`` tuple below; nothing
else changes. database.py and sqlcheck.py only ever ask the dialect.

Detection goes through ``DIALECTS`` in order and takes the first dialect whose ``drives`` accepts the
connection string's ``Driver=``; a string no dialect recognises (or without a Driver=, such as a bare
DSN) gets ``GENERIC_ODBC``, which reads statements every known way.
"""

from __future__ import annotations

from .base import KEYS_EVERYWHERE, Dialect, Pairs, driver_of, parse_odbc
from .mysql import MySql
from .odbc import GenericOdbc
from .postgresql import PostgreSql
from .sqlite import Sqlite
from .sqlserver import SqlServer

# Ordered: detection takes the first match, and an unknown server's statements are checked in this order.
DIALECTS: tuple[Dialect, ...] = (PostgreSql(), MySql(), SqlServer(), Sqlite())

# Reads DIALECTS when asked, so that it always covers the registered dialects.
GENERIC_ODBC: Dialect = GenericOdbc(lambda: DIALECTS)


def dialect_names() -> tuple[str, ...]:
    """The names of the registered dialects, GENERIC_ODBC's last."""
    return (*(dialect.name for dialect in DIALECTS), GENERIC_ODBC.name)


def dialect_named(name: str | None) -> Dialect:
    """The registered dialect called ``name``; None (or GENERIC_ODBC's name) means the server is unknown."""
    if name is None:
        return GENERIC_ODBC
    for dialect in (*DIALECTS, GENERIC_ODBC):
        if dialect.name == name:
            return dialect
    raise ValueError(f"unknown SQL dialect {name!r}; expected one of {', '.join(dialect_names())} or None")


def dialect_for_driver(driver: str) -> Dialect:
    """The dialect of a ``Driver=`` value (unbraced, lower-case, "" without one)."""
    return next((dialect for dialect in DIALECTS if dialect.drives(driver)), GENERIC_ODBC)


def dialect_for_pairs(pairs: Pairs) -> Dialect:
    return dialect_for_driver(driver_of(pairs))


def dialect_for_odbc(connection_string: str) -> Dialect:
    """The dialect behind an ODBC connection string, from its Driver= (GENERIC_ODBC when unrecognised).

    Detection only: a malformed string raises ValueError, but keys are checked by database.check_odbc_keys.
    """
    return dialect_for_pairs(parse_odbc(connection_string))


def is_generic(dialect: Dialect) -> bool:
    """Whether ``dialect`` is the fallback for an unrecognised driver (no server kind is known)."""
    return dialect is GENERIC_ODBC


def dialect_for_key_family(family: str | None) -> Dialect:
    """The dialect that defines the connection-string key family ``family``; KeyError when none does."""
    for dialect in (*DIALECTS, GENERIC_ODBC):
        if family in dialect.odbc_keys:
            return dialect
    raise KeyError(family)


def allowed_keys(family: str | None) -> frozenset[str]:
    """Lower-case keys accepted for a key family (postgresql, mariadb, mssql, freetds, sqlite, None)."""
    return KEYS_EVERYWHERE | dialect_for_key_family(family).odbc_keys[family]


def refusal_reason(key: str) -> str | None:
    """Why a known lower-case key is refused (whichever driver knows it), or None."""
    for dialect in (*DIALECTS, GENERIC_ODBC):
        reason = dialect.refused_odbc_keys.get(key)
        if reason is not None:
            return reason
    return None


__all__ = [
    "DIALECTS",
    "GENERIC_ODBC",
    "Dialect",
    "allowed_keys",
    "dialect_for_driver",
    "dialect_for_key_family",
    "dialect_for_odbc",
    "dialect_for_pairs",
    "dialect_named",
    "dialect_names",
    "is_generic",
    "refusal_reason",
]
