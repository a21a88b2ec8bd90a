"""A login refused or a grant missing is QueryError reason "permission", on the real PostgreSQL and MariaDB
servers and, for SQL Server and an unknown server, with the codes their drivers report."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from batch_exporter import database
from batch_exporter.config import DatabaseConfig
from batch_exporter.database import REASONS, QueryError, open_database
from batch_exporter.rerun.gather import _unavailable
from db_servers import admin_connection, odbc_connection_string, requires_odbc, scratch_table, unique_name


def failure(call: Any, *args: object) -> QueryError:
    with pytest.raises(QueryError) as caught:
        call(*args)
    return caught.value


def as_account(kind: str, user: str, password: str, *, database_key: bool = True) -> str:
    """The test server's connection string, logged in as ``user``."""
    text = re.sub(r"UID=[^;]*;PWD=[^;]*;", f"UID={user};PWD={password};", odbc_connection_string(kind))
    return text if database_key else re.sub(r"DATABASE=[^;]*;", "", text)


# --- PostgreSQL (trust authentication: only a missing grant can be shown) ---------------------------


@pytest.fixture()
def postgresql_role_without_grants() -> Iterator[str]:
    role = unique_name("bx_role")
    admin = admin_connection("postgresql")
    try:
        admin.cursor().execute(f"CREATE ROLE {role} LOGIN")
        yield role
    finally:
        admin.cursor().execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


@requires_odbc("postgresql")
def test_postgresql_select_without_a_grant_is_a_permission_error(postgresql_role_without_grants: str) -> None:
    with scratch_table("postgresql", "id INT", [(1,)]) as table:
        db = open_database("ledger", odbc=as_account("postgresql", postgresql_role_without_grants, ""))
        try:
            error = failure(db.query, f"SELECT id FROM {table}")
            assert error.reason == "permission"
            assert str(error).startswith("database 'ledger': permission denied: SQLSTATE 42501")
            assert db.query("SELECT 1") == [(1,)]  # the session stays usable
        finally:
            db.close()


# --- MariaDB ----------------------------------------------------------------------------------------


@pytest.fixture()
def mariadb_user_without_grants() -> Iterator[tuple[str, str]]:
    user, password = unique_name("bx_user"), "not-a-secret"
    admin = admin_connection("mariadb")
    hosts = ("%", "localhost")
    try:
        for host in hosts:
            admin.cursor().execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        yield user, password
    finally:
        for host in hosts:
            admin.cursor().execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()


@requires_odbc("mariadb")
def test_mariadb_select_without_a_grant_is_a_permission_error(mariadb_user_without_grants: tuple[str, str]) -> None:
    user, password = mariadb_user_without_grants
    with scratch_table("mariadb", "id INT", [(1,)]) as table:
        db = open_database("shop", odbc=as_account("mariadb", user, password, database_key=False))
        try:
            error = failure(db.query, f"SELECT id FROM test.{table}")
            assert error.reason == "permission"
            assert "native 1142" in str(error)
            assert db.query("SELECT 1") == [(1,)]
        finally:
            db.close()


@requires_odbc("mariadb")
@pytest.mark.parametrize("wrong_password, native", [(True, 1045), (False, 1044)])
def test_mariadb_login_refused_is_a_permission_error(
    mariadb_user_without_grants: tuple[str, str], wrong_password: bool, native: int
) -> None:
    user, password = mariadb_user_without_grants
    # a wrong password is refused at login (1045); the right one, for a database not granted, too (1044)
    db = open_database("shop", odbc=as_account("mariadb", user, "wrong" if wrong_password else password))
    try:
        error = failure(db.query, "SELECT 1")
        assert error.reason == "permission"
        assert str(error).startswith("database 'shop': login refused: SQLSTATE")
        assert f"native {native}" in str(error)
        assert "wrong" not in str(error) and password not in str(error)
    finally:
        db.close()


# --- SQL Server and an unknown server: the codes their drivers report --------------------------------


class _FakePyodbc:
    """Just enough of pyodbc: the connect or every SELECT fails with the SQLSTATE and native code given."""

    class Error(Exception):
        pass

    def __init__(self, state: str, native: int, *, at_connect: bool) -> None:
        self.state, self.native, self.at_connect = state, native, at_connect

    def error(self, call: str) -> Exception:
        return self.Error(self.state, f"[{self.state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"
                                      f"The permission was denied. ({self.native}) ({call})")

    def drivers(self) -> list[str]:
        return ["ODBC Driver 18 for SQL Server", "FreeTDS"]

    def connect(self, *_: object, **__: object) -> Any:
        if self.at_connect:
            raise self.error("SQLDriverConnect")
        fake = self

        class Cursor:
            description = None

            def execute(self, sql: str, *_: object) -> Cursor:
                raise fake.error("SQLExecDirectW")

            def cancel(self) -> None: ...

            def close(self) -> None: ...

        class Connection:
            timeout = 0

            def cursor(self) -> Cursor:
                return Cursor()

            def rollback(self) -> None: ...

            def close(self) -> None: ...

        return Connection()


SQL_SERVER = "Driver={ODBC Driver 18 for SQL Server};Server=db;Database=pay"
FREETDS = "Driver={FreeTDS};Server=db;Database=pay"


@pytest.mark.parametrize(
    "connection_string, state, native, at_connect, reason",
    [
        (SQL_SERVER, "28000", 18456, True, "permission"),  # login failed
        (SQL_SERVER, "42000", 18456, True, "permission"),  # the native code alone says it
        (SQL_SERVER, "42000", 229, False, "permission"),  # SELECT permission denied on the object
        (SQL_SERVER, "42000", 230, False, "permission"),  # ... on a column
        (SQL_SERVER, "42000", 262, False, "permission"),  # permission denied in the database
        (SQL_SERVER, "42000", 208, False, "query"),  # invalid object name
        (SQL_SERVER, "08001", 53, True, "connect"),
        (FREETDS, "42000", 229, False, "permission"),  # an unknown server takes every dialect's codes
        (FREETDS, "42000", 1142, False, "permission"),
        (FREETDS, "28000", 0, True, "permission"),  # ODBC-standard class 28, whatever the driver
    ],
)
def test_driver_codes_for_a_refused_login_or_grant_are_permission_errors(
    monkeypatch: pytest.MonkeyPatch, connection_string: str, state: str, native: int, at_connect: bool,
    reason: str,
) -> None:
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: _FakePyodbc(state, native, at_connect=at_connect))
    db = open_database("pay", odbc=connection_string)
    error = failure(db.query, "SELECT amount FROM payment")
    assert error.reason == reason
    assert f"SQLSTATE {state}" in str(error)


def test_permission_is_a_reason_and_the_rerun_check_names_it() -> None:
    assert "permission" in REASONS
    config = DatabaseConfig(odbc=SQL_SERVER)
    for reason in REASONS:
        assert _unavailable(QueryError(reason, "database 'pay': x"), "pay", config).startswith("database 'pay' (ODBC) ")
    refused = QueryError("permission", "database 'pay': login refused: SQLSTATE 28000")
    assert _unavailable(refused, "pay", config) == (
        "database 'pay' (ODBC) refuses this account (login refused or a grant missing): login refused: SQLSTATE 28000"
    )
