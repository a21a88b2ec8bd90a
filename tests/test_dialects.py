"""One Dialect per database kind (issue 12, item 3): detection, the registry, a complete interface, and a
sixth dialect added by one class and one registry entry, as a new server kind would be."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from batch_exporter import database, dialects
from batch_exporter.database import QueryError, harden_connection_string, odbc_dialect, open_database
from batch_exporter.dialects.base import (
    Dialect,
    ErrorCodes,
    Pairs,
    Reading,
    Row,
    fetch_streamed,
    keys,
    odbc_get,
)
from batch_exporter.sqlcheck import StatementError, check_read_only
from fake_pyodbc import FakePyodbc

# The connection strings of test_database.py, and the driver each one names.
DETECTED = [
    ("Driver={PostgreSQL Unicode};Server=x", "postgresql"),
    ("DRIVER=/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so", "postgresql"),
    ("driver={MariaDB Unicode}", "mysql"),
    ("Driver={MySQL ODBC 8.0 Unicode Driver}", "mysql"),
    ("Driver={ODBC Driver 18 for SQL Server}", "mssql"),
    ("Driver={SQLite3}", "sqlite"),
    ("Driver={Oracle 21 ODBC driver}", "odbc"),
    ("Driver={FreeTDS};Server=db", "odbc"),
    ("DSN=payments", "odbc"),
]
INTERFACE = {
    "name", "drives", "key_family", "odbc_keys", "refused_odbc_keys", "check_odbc_value", "harden",
    "start_session", "error_codes", "fetch_head", "readings", "side_effect_functions",
}
REQUIRED_KINDS = {"postgresql", "mysql", "mssql", "sqlite", "odbc"}


def every_dialect() -> tuple[Dialect, ...]:
    return (*dialects.DIALECTS, dialects.GENERIC_ODBC)


@pytest.mark.parametrize("connection_string, name", DETECTED)
def test_each_dialect_is_found_from_the_driver_it_names(connection_string: str, name: str) -> None:
    assert dialects.dialect_for_odbc(connection_string).name == name


def test_the_five_required_dialects_with_unique_names_and_key_families() -> None:
    names = [dialect.name for dialect in every_dialect()]
    assert set(names) >= REQUIRED_KINDS
    assert len(names) == len(set(names))
    assert names[-1] == "odbc"
    families = [family for dialect in every_dialect() for family in dialect.odbc_keys]
    assert len(families) == len(set(families))
    assert {dialect.name: dialects.dialect_named(dialect.name) for dialect in dialects.DIALECTS} == {
        dialect.name: dialect for dialect in dialects.DIALECTS
    }
    assert dialects.dialect_named(None) is dialects.GENERIC_ODBC
    assert dialects.dialect_named("odbc") is dialects.GENERIC_ODBC
    assert dialects.dialect_names() == tuple(names)
    with pytest.raises(ValueError, match="unknown SQL dialect 'no-such-server'; expected one of .*odbc or None"):
        dialects.dialect_named("no-such-server")


def test_no_dialect_allows_a_key_that_some_dialect_refuses() -> None:
    refused = {key for dialect in every_dialect() for key in dialect.refused_odbc_keys}
    for dialect in every_dialect():
        for family, allowed in dialect.odbc_keys.items():
            assert not allowed & refused, f"{dialect.name} {family}"


def test_freetds_is_the_generic_dialect_with_its_own_keys() -> None:
    assert odbc_dialect("Driver={FreeTDS};Server=db;TDS_Version=7.4") is None
    with pytest.raises(ValueError, match="key TDS_Version is not allowed because .* unrecognised driver"):
        odbc_dialect("Driver={Oracle 21 ODBC driver};TDS_Version=7.4")


def test_an_unknown_server_is_checked_under_every_known_reading() -> None:
    every = tuple(reading for dialect in dialects.DIALECTS for reading in dialect.readings)
    assert dialects.GENERIC_ODBC.readings == every
    codes = dialects.GENERIC_ODBC.error_codes
    for dialect in dialects.DIALECTS:
        assert dialect.error_codes.timeout_native <= codes.timeout_native
        assert dialect.error_codes.lost_states <= codes.lost_states
        assert set(dialect.error_codes.lost_texts) <= set(codes.lost_texts)
        assert dialect.error_codes.permission_states <= codes.permission_states
        assert dialect.error_codes.permission_native <= codes.permission_native
        assert dialect.side_effect_functions <= dialects.GENERIC_ODBC.side_effect_functions


def test_each_server_owns_its_side_effect_functions() -> None:
    assert "nextval" in dialects.dialect_named("postgresql").side_effect_functions
    assert "get_lock" in dialects.dialect_named("mysql").side_effect_functions
    assert "get_lock" not in dialects.dialect_named("postgresql").side_effect_functions


@pytest.mark.parametrize("name", [*dialects.dialect_names(), None])
def test_every_known_side_effect_function_is_refused_whatever_the_server(name: str | None) -> None:
    for sql in ("SELECT GET_LOCK('r', 0)", "SELECT nextval('s')", "SELECT pg_stat_reset_shared('wal')"):
        with pytest.raises(StatementError, match="outlive a read-only transaction"):
            check_read_only(sql, name)


def test_check_read_only_takes_a_dialect_or_its_name() -> None:
    for dialect in every_dialect():
        check_read_only("SELECT 1", dialect)
    with pytest.raises(StatementError):
        check_read_only("SELECT $$;$$", dialects.dialect_named("mysql"))
    check_read_only("SELECT $$;$$", dialects.dialect_named("postgresql"))


# --- the interface is complete ----------------------------------------------------------------------


def test_the_interface_is_abstract_and_every_dialect_implements_it() -> None:
    assert Dialect.__abstractmethods__ == INTERFACE
    for dialect in every_dialect():
        assert isinstance(dialect, Dialect)
        assert not type(dialect).__abstractmethods__


@pytest.mark.parametrize("member", sorted(INTERFACE))
def test_a_dialect_that_leaves_a_member_out_cannot_be_made(member: str) -> None:
    namespace = {key: value for key, value in vars(FakeDb2).items() if key != member and not key.startswith("_")}
    partial = type("PartialDb2", (Dialect,), namespace)
    with pytest.raises(TypeError, match=member):
        partial()


# --- a sixth dialect: one class (it would be dialects/db2.py) and one registry entry ----------------


class FakeDb2(Dialect):
    """Made up for these tests: reads '#' as a comment and has no dollar quotes."""

    name = "db2"
    odbc_keys: Mapping[str | None, frozenset[str]] = {"db2": keys("hostname port database protocol")}
    refused_odbc_keys: Mapping[str, str] = {"currentfunctionpath": "it changes which functions a name calls"}
    error_codes = ErrorCodes(timeout_native=frozenset({-952}), permission_native=frozenset({-551}))
    readings = (Reading("Db2 (made up)", hash_comments=True),)
    side_effect_functions = keys("admin_cmd")

    def drives(self, driver: str) -> bool:
        return "db2" in driver

    def key_family(self, driver: str) -> str | None:
        return "db2"

    def check_odbc_value(self, key: str, value: str) -> None:
        if key == "protocol" and value.lower() != "tcpip":
            raise ValueError("key protocol is not allowed with anything but TCPIP")

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        if odbc_get(pairs, "connecttimeout") is not None:
            return list(pairs)
        return [*pairs, ("ConnectTimeout", str(math.ceil(connect_timeout)))]

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        cursor = connection.cursor()
        cursor.execute("SET CURRENT QUERY ACCELERATION NONE")
        cursor.close()

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        return fetch_streamed(cursor, sql, params, limit)


DB2 = "Driver={IBM DB2 ODBC DRIVER};Hostname=db;Database=sample"


@pytest.fixture()
def db2(monkeypatch: pytest.MonkeyPatch) -> Dialect:
    """FakeDb2 registered for one test."""
    dialect = FakeDb2()
    monkeypatch.setattr(dialects, "DIALECTS", (*dialects.DIALECTS, dialect))
    return dialect


def test_a_new_dialect_is_detected_and_its_keys_checked(db2: Dialect) -> None:
    assert dialects.dialect_for_odbc(DB2) is db2
    assert odbc_dialect(DB2) == "db2"
    with pytest.raises(ValueError, match="key CurrentFunctionPath is not allowed because it changes which"):
        odbc_dialect(DB2 + ";CurrentFunctionPath=evil")
    with pytest.raises(ValueError, match="key Server is not allowed because .* for the db2 driver"):
        odbc_dialect(DB2 + ";Server=x")
    with pytest.raises(ValueError, match="key protocol is not allowed with anything but TCPIP"):
        odbc_dialect(DB2 + ";Protocol=LOCAL")
    assert harden_connection_string(DB2, query_timeout=1, connect_timeout=2.5) == DB2 + ";ConnectTimeout=3;"


def test_a_new_dialect_reads_statements_its_own_way(db2: Dialect) -> None:
    hidden_by_a_hash_comment = "SELECT 1 # ; DELETE FROM t\n"
    check_read_only(hidden_by_a_hash_comment, "db2")
    with pytest.raises(StatementError):
        check_read_only(hidden_by_a_hash_comment, "postgresql")
    check_read_only("SELECT $$;$$", "postgresql")
    with pytest.raises(StatementError, match="more than one statement"):
        check_read_only("SELECT $$;$$", "db2")
    # an unknown server now also has to pass the new reading
    assert db2.readings[0] in dialects.GENERIC_ODBC.readings
    assert db2.readings[0] in dialects.dialect_for_odbc("Driver={Oracle 21 ODBC driver}").readings


def test_a_new_dialect_s_side_effect_functions_are_refused_whatever_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls_admin_cmd = "SELECT sysproc.admin_cmd('REORG TABLE t') FROM sysibm.sysdummy1"
    check_read_only(calls_admin_cmd, "postgresql")  # not a known function yet
    db2 = FakeDb2()
    monkeypatch.setattr(dialects, "DIALECTS", (*dialects.DIALECTS, db2))
    assert "db2" in dialects.dialect_names()
    for name in ("db2", "postgresql", None):
        with pytest.raises(StatementError, match=r"admin_cmd\(\) has effects that outlive"):
            check_read_only(calls_admin_cmd, name)


@pytest.mark.parametrize("native, reason", [(-952, "timeout"), (-551, "permission"), (1317, "query")])
def test_a_new_dialect_sets_up_the_session_and_names_its_timeouts(
    db2: Dialect, monkeypatch: pytest.MonkeyPatch, native: int, reason: str
) -> None:
    def fails_every_select(fake: FakePyodbc, number: int, sql: str) -> None:
        if sql.startswith("SELECT"):
            raise fake.Error("HY000", f"[HY000] something went wrong ({native}) (SQLExecDirectW)")

    fake = FakePyodbc("IBM DB2 ODBC DRIVER", on_execute=fails_every_select, description=None)
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("mainframe", odbc=DB2, query_timeout=30)
    with pytest.raises(QueryError) as caught:
        db.query("SELECT 1 FROM sysibm.sysdummy1")
    assert caught.value.reason == reason  # 1317 is a MariaDB timeout, nothing to Db2
    assert fake.statements == ["SET CURRENT QUERY ACCELERATION NONE", "SELECT 1 FROM sysibm.sysdummy1"]


def test_a_session_left_limited_is_never_used_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def limit_stuck_on_first_connection(fake: FakePyodbc, number: int, sql: str) -> None:
        if number == 1 and sql == "SET SESSION sql_select_limit = DEFAULT":
            raise fake.Error("HY000", "[HY000] Lost in thought (4031) (SQLExecDirectW)")

    fake = FakePyodbc("MariaDB Unicode", on_execute=limit_stuck_on_first_connection, fetchone=("10.11.6-MariaDB",))
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("shop", odbc="Driver={MariaDB Unicode};Server=db", query_timeout=5)
    with pytest.raises(QueryError) as caught:
        db.query_head("SELECT 1 UNION ALL SELECT 2", limit=1)
    assert caught.value.reason == "connect"
    assert "could not lift the row limit, reconnecting: SQLSTATE HY000" in str(caught.value)
    assert db.query_head("SELECT 1 UNION ALL SELECT 2", limit=1) == [(1,)]
    assert fake.connects == 2
    assert [sql for number, sql in fake.executed if number == 2] == [
        "SELECT VERSION()",
        "SET SESSION TRANSACTION READ ONLY",
        "SET SESSION max_statement_time = 5.000",
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION sql_select_limit = 1",
        "SELECT 1 UNION ALL SELECT 2",
        "SET SESSION sql_select_limit = DEFAULT",
    ]
