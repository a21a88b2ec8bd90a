"""Shared helpers for tests that reach the real PostgreSQL and MariaDB servers through ODBC.

Kinds are "postgresql" and "mariadb". Connection strings default to the local test servers and can be
pointed elsewhere with BATCH_EXPORTER_TEST_POSTGRESQL / BATCH_EXPORTER_TEST_MARIADB.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

KINDS = ("postgresql", "mariadb")
_DRIVERS = {"postgresql": "PostgreSQL Unicode", "mariadb": "MariaDB Unicode"}
_DEFAULTS = {
    "postgresql": "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;PWD=;",
    "mariadb": "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;DATABASE=test;UID=root;PWD=;",
}
# What identifies the server-side session, and how to sleep, per kind.
SESSION_ID_SQL = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}
SLEEP_SQL = {"postgresql": "SELECT pg_sleep(?)", "mariadb": "SELECT SLEEP(?)"}


def odbc_connection_string(kind: str) -> str:
    """The ODBC connection string of the test server of ``kind``."""
    return os.environ.get(f"BATCH_EXPORTER_TEST_{kind.upper()}", _DEFAULTS[kind])


def odbc_missing(kind: str) -> str | None:
    """Why ODBC tests for ``kind`` cannot run here (pyodbc, libodbc or the driver missing), else None."""
    try:
        import pyodbc
    except ImportError as exc:
        return f"pyodbc cannot be imported ({exc}): apt-get install unixodbc; pip install pyodbc"
    if _DRIVERS[kind] not in pyodbc.drivers():
        package = {"postgresql": "odbc-postgresql", "mariadb": "odbc-mariadb"}[kind]
        return f"ODBC driver {_DRIVERS[kind]!r} is not installed (apt-get install {package})"
    return None


def requires_odbc(kind: str) -> pytest.MarkDecorator:
    """Skip marker for a test that needs the ODBC driver of ``kind``."""
    reason = odbc_missing(kind)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def odbc_params() -> list[Any]:
    """``pytest.mark.parametrize`` values for every kind, each skipped if its driver is missing."""
    return [pytest.param(kind, marks=requires_odbc(kind), id=kind) for kind in KINDS]


def admin_connection(kind: str) -> Any:
    """A writable autocommit pyodbc connection for setting up and inspecting test data."""
    import pyodbc

    return pyodbc.connect(odbc_connection_string(kind), autocommit=True, timeout=5)


def unique_name(prefix: str = "bx") -> str:
    """A table name no other test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def scratch_table(kind: str, columns: str, rows: Iterable[Sequence[object]] = ()) -> Iterator[str]:
    """Create a uniquely named table with DDL ``columns`` (e.g. ``"id INT, note VARCHAR(20)"``), fill it
    with ``rows`` through ``?`` parameters, yield its name and drop it afterwards."""
    name = unique_name()
    connection = admin_connection(kind)
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE TABLE {name} ({columns})")
        try:
            for row in rows:
                marks = ", ".join("?" for _ in row)
                cursor.execute(f"INSERT INTO {name} VALUES ({marks})", *row)
            yield name
        finally:
            connection.cursor().execute(f"DROP TABLE IF EXISTS {name}")
    finally:
        connection.close()
