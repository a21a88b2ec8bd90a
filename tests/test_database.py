"""Read-only access with deadlines, on a real SQLite file and the real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import re
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from batch_exporter import database
from batch_exporter.database import (
    REASONS,
    Database,
    QueryError,
    harden_connection_string,
    odbc_dialect,
    open_database,
    redact,
)
from batch_exporter.values import as_float, as_text, as_utc_datetime
from db_servers import (
    SESSION_ID_SQL,
    SLEEP_SQL,
    admin_connection,
    odbc_connection_string,
    odbc_missing,
    odbc_params,
    requires_odbc,
    scratch_table,
)
from fake_pyodbc import FakePyodbc

TOKYO = ZoneInfo("Asia/Tokyo")
UTC_ZONE = ZoneInfo("UTC")
MOMENT = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)  # 2026-11-27 02:00:05 in Tokyo
SLOW_SQLITE = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) "
               "SELECT count(*) FROM n")


class FakeClock:
    """Monotonic clock for the reconnect backoff, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failure(call: Any, *args: object, **kwargs: object) -> QueryError:
    with pytest.raises(QueryError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason in REASONS
    return caught.value


@pytest.fixture()
def no_statement_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let statements through to the driver, to prove the session layer refuses writes on its own."""
    monkeypatch.setattr(database, "check_read_only", lambda sql, dialect=None: None)


# ---------------------------------------------------------------------------------------------- SQLite


@pytest.fixture()
def runs_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as writer:
        writer.execute(
            "CREATE TABLE batch_run (run_id INTEGER, status TEXT, started_at TEXT, amount NUMERIC)"
        )
        writer.executemany(
            "INSERT INTO batch_run VALUES (?, ?, ?, ?)",
            [(1, "OK", "2026-11-27 02:00:05", 1234.56), (2, "NG", "2026-11-28T02:00:05+09:00", None)],
        )
    writer.close()
    return path


@pytest.fixture()
def sqlite_db(runs_file: Path) -> Iterator[Database]:
    db = open_database("runs", sqlite=str(runs_file), query_timeout=0.5)
    yield db
    db.close()


def sqlite_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as reader:
        return reader.execute("SELECT * FROM batch_run ORDER BY run_id").fetchall()


def test_sqlite_reads_rows_with_qmark_parameters(sqlite_db: Database) -> None:
    rows = sqlite_db.query("SELECT run_id, status, started_at FROM batch_run WHERE status = ?", ["OK"])
    assert rows == [(1, "OK", "2026-11-27 02:00:05")]
    assert as_utc_datetime(rows[0][2], TOKYO) == MOMENT
    assert sqlite_db.name == "runs"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO batch_run VALUES (3, 'RUN', NULL, NULL)",
        "UPDATE batch_run SET status = 'NG'",
        "DELETE FROM batch_run",
        "CREATE TABLE other (a INTEGER)",
        "CREATE TEMP TABLE scratch (a INTEGER)",
        "DROP TABLE batch_run",
        "PRAGMA journal_mode = WAL",
    ],
)
def test_sqlite_refuses_writes_even_past_the_statement_check(
    no_statement_check: None, sqlite_db: Database, runs_file: Path, sql: str
) -> None:
    before = sqlite_rows(runs_file)
    error = failure(sqlite_db.query, sql)
    assert error.reason == "query"
    assert sqlite_rows(runs_file) == before
    assert sqlite_db.query("SELECT count(*) FROM batch_run") == [(2,)]


def test_sqlite_cannot_attach_another_file(
    no_statement_check: None, sqlite_db: Database, tmp_path: Path
) -> None:
    target = tmp_path / "attached.db"
    error = failure(sqlite_db.query, f"ATTACH DATABASE '{target}' AS other")
    assert error.reason == "query"
    assert not target.exists()


def test_statement_check_runs_before_the_driver(sqlite_db: Database, runs_file: Path) -> None:
    error = failure(sqlite_db.query, "SELECT 1; DELETE FROM batch_run")
    assert error.reason == "query"
    assert "statement refused: more than one statement" in str(error)
    assert "'runs'" in str(error)
    assert len(sqlite_rows(runs_file)) == 2


def test_sqlite_slow_query_is_stopped_at_the_deadline_and_the_connection_reused(sqlite_db: Database) -> None:
    error = failure(sqlite_db.query, SLOW_SQLITE)
    assert error.reason == "timeout"
    assert "deadline" in str(error)
    assert sqlite_db.query("SELECT count(*) FROM batch_run") == [(2,)]


def test_sqlite_missing_file_is_a_connect_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    db = open_database("absent", sqlite=str(path))
    error = failure(db.query, "SELECT 1")
    assert error.reason == "connect"
    assert not path.exists()


def test_sqlite_file_that_is_no_database_is_a_connect_error(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_text("not a database, just text " * 100)
    error = failure(open_database("text", sqlite=str(path)).query, "SELECT 1")
    assert error.reason == "connect"


def test_connect_failures_back_off_doubling_and_reset_on_success(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "late.db"
    db = open_database("late", sqlite=str(path), clock=clock)

    first = failure(db.query, "SELECT 1")
    assert first.reason == "connect" and "next connect attempt" not in str(first)
    sqlite3.connect(path).close()  # the file appears, but the backoff window still holds
    blocked = failure(db.query, "SELECT 1")
    assert blocked.reason == "connect"
    assert "next connect attempt in 1.0s" in str(blocked)

    clock.now += 1.0
    assert db.query("SELECT 1") == [(1,)]
    db.close()

    path.unlink()
    db = open_database("late", sqlite=str(path), clock=clock)
    failure(db.query, "SELECT 1")
    clock.now += 1.0
    failure(db.query, "SELECT 1")  # a real second attempt, failing again
    assert "next connect attempt in 2.0s" in str(failure(db.query, "SELECT 1"))
    clock.now += 1.5
    assert "next connect attempt in 0.5s" in str(failure(db.query, "SELECT 1"))


def test_backoff_stops_at_sixty_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    db = open_database("never", sqlite=str(tmp_path / "never.db"), clock=clock)
    waits = []
    for _ in range(9):
        failure(db.query, "SELECT 1")
        message = str(failure(db.query, "SELECT 1"))
        waits.append(float(message.rsplit("in ", 1)[1].rstrip("s")))
        clock.now += 1000
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_closed_database_refuses_queries(sqlite_db: Database) -> None:
    assert sqlite_db.query("SELECT 1") == [(1,)]
    sqlite_db.close()
    error = failure(sqlite_db.query, "SELECT 1")
    assert error.reason == "connect" and "closed" in str(error)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of"),
        ({"sqlite": "a.db", "odbc": "DSN=x"}, "exactly one of"),
        ({"sqlite": "a.db", "query_timeout": 0}, "must be positive"),
        ({"sqlite": "a.db", "connect_timeout": -1}, "must be positive"),
    ],
)
def test_open_database_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_database("x", **kwargs)


def test_missing_pyodbc_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # import now fails as it does without the package
    error = failure(open_database, "payments", odbc="Driver={PostgreSQL Unicode};Server=x;PWD=sekret")
    assert error.reason == "driver_missing"
    assert "apt-get install unixodbc" in str(error) and "pip install pyodbc" in str(error)
    assert "sekret" not in str(error)


# ------------------------------------------------------------------------------- connection strings


def test_postgresql_gets_read_only_utc_and_statement_timeout() -> None:
    hardened = harden_connection_string(
        "Driver={PostgreSQL Unicode};Server=db;PWD={a;b}", query_timeout=2.5, connect_timeout=3
    )
    assert hardened == (
        "Driver={PostgreSQL Unicode};Server=db;PWD={a;b};"
        "pqopt={options='-c default_transaction_read_only=on -c statement_timeout=2500 -c TimeZone=UTC' "
        "connect_timeout='3'};"
    )


def test_postgresql_user_pqopt_is_kept_and_ours_come_last() -> None:
    hardened = harden_connection_string(
        "DRIVER={PostgreSQL Unicode};PQOPT={sslmode=require options='-c TimeZone=Asia/Tokyo' connect_timeout=9}",
        query_timeout=1,
        connect_timeout=5,
    )
    assert hardened.endswith(
        "pqopt={sslmode='require' options='-c TimeZone=Asia/Tokyo -c default_transaction_read_only=on "
        "-c statement_timeout=1000 -c TimeZone=UTC' connect_timeout='9'};"
    )
    assert "PQOPT" not in hardened


def test_mariadb_gets_socket_timeouts_unless_given() -> None:
    hardened = harden_connection_string(
        "DRIVER={MariaDB Unicode};SERVER=db;read_timeout=30", query_timeout=10, connect_timeout=4.2
    )
    assert hardened == "DRIVER={MariaDB Unicode};SERVER=db;read_timeout=30;CONN_TIMEOUT=5;WRITE_TIMEOUT=15;"


def test_sql_server_gets_read_only_intent_unless_given() -> None:
    base = "Driver={ODBC Driver 18 for SQL Server};Server=db1"
    assert harden_connection_string(base, query_timeout=1, connect_timeout=1).endswith(
        ";ApplicationIntent=ReadOnly;"
    )
    given = base + ";applicationintent=ReadWrite"
    assert "ReadOnly" not in harden_connection_string(given, query_timeout=1, connect_timeout=1)


def test_unknown_driver_is_left_alone() -> None:
    assert (
        harden_connection_string("Driver={Oracle 21 ODBC driver};UID=m", query_timeout=1, connect_timeout=1)
        == "Driver={Oracle 21 ODBC driver};UID=m;"
    )


@pytest.mark.parametrize(
    "connection_string, dialect",
    [
        ("Driver={PostgreSQL Unicode};Server=x", "postgresql"),
        ("DRIVER=/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so", "postgresql"),
        ("driver={MariaDB Unicode}", "mysql"),
        ("Driver={MySQL ODBC 8.0 Unicode Driver}", "mysql"),
        ("Driver={ODBC Driver 18 for SQL Server}", "mssql"),
        ("Driver={SQLite3}", "sqlite"),
        ("Driver={Oracle 21 ODBC driver}", None),
    ],
)
def test_dialect_is_read_from_the_driver(connection_string: str, dialect: str | None) -> None:
    assert odbc_dialect(connection_string) == dialect


@pytest.mark.parametrize("bad", ["Driver={PostgreSQL Unicode;PWD=sekret", "PWD=sekret;garbage", "PWD={x}y;"])
def test_malformed_connection_string_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_database("payments", odbc=bad)
    assert "sekret" not in str(caught.value) and "payments" in str(caught.value)


@pytest.mark.parametrize(
    "text, sql, expected",
    [
        (
            'invalid input syntax for type integer: "4111111111111111"',
            "SELECT CAST(? AS INTEGER)",
            'invalid input syntax for type integer: "..."',
        ),
        (
            'relation "batch_runs" does not exist',
            "SELECT * FROM batch_runs",
            'relation "batch_runs" does not exist',
        ),
        ("Duplicate entry 'x' for key", "SELECT x FROM t", "Duplicate entry 'x' for key"),
        ("Duplicate entry 'x' for key", "SELECT xy FROM t", "Duplicate entry '...' for key"),
        ("Key (id)=(4111111111111111) already exists", "", "Key (id)=(************1111) already exists"),
        ("Key (account)=(12345678) already exists", "", "Key (account)=(...) already exists"),
        ("bad card 4111 1111 1111 1111 in row", "", "bad card **** **** **** 1111 in row"),
        ("bad card 4111-1111-1111-1111.", "", "bad card ****-****-****-1111."),
        ("amex 3782\u2013822463\u201310005 refused", "", "amex ****\u2013******\u2013*0005 refused"),
        ("split 4\u200b1\u200b11 1111 1111 1111", "", "split **** **** **** 1111"),
        ("  spread\n  over lines  ", "", "spread over lines"),
        ("ERROR: failed\nDETAIL: see log\x1b[31m", "", "ERROR: failed DETAIL: see log[31m"),
        ("at 2026-11-27 02:00:01.123 from 10.1.2.3:5432", "", "at 2026-11-27 02:00:01.123 from 10.1.2.3:5432"),
    ],
)
def test_driver_text_is_redacted(text: str, sql: str, expected: str) -> None:
    assert redact(text, sql) == expected


_JOINERS = st.lists(st.sampled_from(" -./_+\n\u00a0\u2013\u2014\u2212\u3000\uff0d\u200b"), min_size=1,
                    max_size=3).map("".join)


@given(st.lists(st.text("0123456789", min_size=3, max_size=6), min_size=2, max_size=5), _JOINERS,
       st.sampled_from(["value {} is out of range", "Key (pan)=({}) exists", "bad '{}'", 'x "{}"', "{}"]))
def test_no_card_number_survives_in_driver_text(groups: list[str], joiner: str, message: str) -> None:
    digits, written = "".join(groups), joiner.join(groups)
    assume(12 <= len(digits) <= 19)
    assume(not re.fullmatch(r"(?:25[0-5]|2[0-4]\d|1\d\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d)){3}", written))  # an address
    shown = redact(message.format(written))
    assert re.sub(r"\D", "", shown) in ("", digits[-4:])


# ------------------------------------------------------------------------------------------------ ODBC

TABLE_DDL = {
    "postgresql": "id INT, ts TIMESTAMP, tstz TIMESTAMPTZ, amount NUMERIC(12,2), note VARCHAR(40), state CHAR(5)",
    "mariadb": "id INT, ts DATETIME(6), tstz TIMESTAMP(6) NULL, amount DECIMAL(12,2), note VARCHAR(40), "
    "state CHAR(5)",
}
SET_TOKYO = {"postgresql": "SET TIME ZONE 'Asia/Tokyo'", "mariadb": "SET time_zone = '+09:00'"}
# (id, local wall time written in a Tokyo session for both ts and tstz, amount, note, state)
ROWS = [
    (1, "2026-11-27 02:00:05", Decimal("1234.56"), "認可済み", "OK"),
    (2, None, None, None, None),
    (3, "2026-11-27 02:00:05.250000", Decimal("-0.01"), "カード決済", "NG"),
]
EXPECTED = [
    (1.0, MOMENT, MOMENT, 1234.56, "認可済み", "OK"),
    (2.0, None, None, None, None, None),
    (3.0, MOMENT.replace(microsecond=250000), MOMENT.replace(microsecond=250000), -0.01, "カード決済", "NG"),
]
SELECT_ROWS = "SELECT id, ts, tstz, amount, note, state FROM {table} WHERE id >= ? ORDER BY id"


def converted(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Driver rows through values.py: ts is Tokyo wall time, tstz arrives in the session's UTC."""
    return [
        (
            as_float(i),
            as_utc_datetime(ts, TOKYO),
            as_utc_datetime(tstz, UTC_ZONE),
            as_float(a),
            as_text(n),
            as_text(s),
        )
        for i, ts, tstz, a, n, s in rows
    ]


def write_rows(kind: str, table: str) -> None:
    """ROWS written from a Tokyo session: ts keeps the wall time, tstz stores the instant."""
    writer = admin_connection(kind)
    try:
        cursor = writer.cursor()
        cursor.execute(SET_TOKYO[kind])
        for i, wall, amount, note, state in ROWS:
            cursor.execute(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)", i, wall, wall, amount, note, state
            )
    finally:
        writer.close()


@pytest.fixture()
def odbc_table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    kind = request.param
    with scratch_table(kind, TABLE_DDL[kind]) as table:
        write_rows(kind, table)
        yield kind, table


def on_port(kind: str, port: int) -> str:
    return re.sub(r"PORT=\d+", f"PORT={port}", odbc_connection_string(kind))


@pytest.fixture()
def odbc_db(request: pytest.FixtureRequest) -> Iterator[tuple[str, Database]]:
    kind = request.param
    db = open_database(kind, odbc=odbc_connection_string(kind), query_timeout=1.0, connect_timeout=2.0)
    yield kind, db
    db.close()


def session_id(db: Database, kind: str) -> int:
    return int(db.query(SESSION_ID_SQL[kind])[0][0])  # type: ignore[call-overload]


def server_session_state(kind: str, ident: int) -> str | None:
    """What the server says session ``ident`` is doing, None if it is gone."""
    sql = {
        "postgresql": "SELECT state FROM pg_stat_activity WHERE pid = ?",
        "mariadb": "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = ?",
    }[kind]
    admin = admin_connection(kind)
    try:
        row = admin.cursor().execute(sql, ident).fetchone()
        return None if row is None else str(row[0])
    finally:
        admin.close()


def test_same_rows_read_the_same_from_sqlite_postgresql_and_mariadb(tmp_path: Path) -> None:
    results = {}
    sqlite_path = tmp_path / "same.db"
    with sqlite3.connect(sqlite_path) as writer:
        writer.execute(
            "CREATE TABLE same (id INTEGER, ts TEXT, tstz TEXT, amount NUMERIC, note TEXT, state TEXT)"
        )
        for i, wall, amount, note, state in ROWS:
            aware = None if wall is None else wall.replace(" ", "T") + "+09:00"
            writer.execute(
                "INSERT INTO same VALUES (?, ?, ?, ?, ?, ?)",
                (i, wall, aware, amount and str(amount), note, state),
            )
    writer.close()
    db = open_database("sqlite", sqlite=str(sqlite_path))
    results["sqlite"] = converted(db.query(SELECT_ROWS.format(table="same"), [1]))
    for kind in ("postgresql", "mariadb"):
        if odbc_missing(kind):
            pytest.skip(odbc_missing(kind) or "")
        with scratch_table(kind, TABLE_DDL[kind]) as table:
            write_rows(kind, table)
            db = open_database(kind, odbc=odbc_connection_string(kind))
            raw = db.query(SELECT_ROWS.format(table=table), [1])
            db.close()
        assert all(type(row) is tuple for row in raw)
        assert isinstance(raw[0][3], Decimal) and raw[0][3] == Decimal(
            "1234.56"
        )  # exact, as the driver gave it
        assert raw[1] == (2, None, None, None, None, None)
        results[kind] = converted(raw)
    assert results == {kind: EXPECTED for kind in results}


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_session_is_read_only_utc_and_time_limited(odbc_db: tuple[str, Database]) -> None:
    kind, db = odbc_db
    if kind == "postgresql":
        settings = db.query(
            "SELECT current_setting('default_transaction_read_only'), current_setting('statement_timeout'), "
            "current_setting('TimeZone')"
        )
        assert settings == [("on", "1s", "UTC")]
    else:
        settings = db.query(
            "SELECT @@session.tx_read_only, @@session.max_statement_time, @@session.time_zone"
        )
        assert settings == [(1, 1.0, "+00:00")]


WRITES = {
    "postgresql": [
        "INSERT INTO {table} (id) VALUES (9)",
        "UPDATE {table} SET note = 'x'",
        "DELETE FROM {table}",
        "WITH d AS (DELETE FROM {table} RETURNING id) SELECT count(*) FROM d",
        "SELECT * INTO {table}_copy FROM {table}",
        "CREATE TABLE {table}_new (a INT)",
        "DROP TABLE {table}",
    ],
    "mariadb": [
        "INSERT INTO {table} (id) VALUES (9)",
        "UPDATE {table} SET note = 'x'",
        "DELETE FROM {table}",
        "CREATE TABLE {table}_new (a INT)",
        "DROP TABLE {table}",
    ],
}


@pytest.mark.parametrize("odbc_table", odbc_params(), indirect=True)
def test_writes_fail_on_the_server_even_past_the_statement_check(
    no_statement_check: None, odbc_table: tuple[str, str]
) -> None:
    kind, table = odbc_table
    db = open_database(kind, odbc=odbc_connection_string(kind))
    try:
        for statement in WRITES[kind]:
            error = failure(db.query, statement.format(table=table))
            assert error.reason == "query", statement
            assert "SQLSTATE 25006" in str(error), str(error)
        assert len(db.query(f"SELECT id FROM {table}")) == len(ROWS)
        missing = failure(db.query, f"SELECT 1 FROM {table}_new")
        assert missing.reason == "query"
    finally:
        db.close()


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_slow_query_stops_at_the_deadline_and_the_session_stays(odbc_db: tuple[str, Database]) -> None:
    kind, db = odbc_db
    before = session_id(db, kind)
    error = failure(db.query, SLEEP_SQL[kind], [5])
    assert error.reason == "timeout"
    assert "deadline" in str(error)
    assert session_id(db, kind) == before
    assert server_session_state(kind, before) in ("idle", "Sleep")  # the sleep is really gone


@pytest.mark.parametrize("kind", odbc_params())
def test_client_side_cancel_stops_a_statement_without_server_limits(kind: str) -> None:
    import pyodbc

    connection = admin_connection(kind)  # no statement_timeout / max_statement_time on this session
    try:
        cursor = connection.cursor()
        watchdog = database._Watchdog(cursor.cancel, 0.3)
        with pytest.raises(pyodbc.Error) as caught, watchdog:
            cursor.execute(SLEEP_SQL[kind], 5)
            cursor.fetchall()
        assert watchdog.fired
        assert caught.value.args[0] in ("57014", "HY018")
        assert connection.cursor().execute("SELECT 1").fetchall()[0][0] == 1
    finally:
        connection.close()


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_lost_connection_is_dropped_and_the_next_call_reconnects(odbc_db: tuple[str, Database]) -> None:
    kind, db = odbc_db
    victim = session_id(db, kind)
    admin = admin_connection(kind)
    try:
        if kind == "postgresql":
            admin.cursor().execute("SELECT pg_terminate_backend(?, 5000)", victim).fetchall()
        else:
            admin.cursor().execute(f"KILL CONNECTION {victim}")
    finally:
        admin.close()
    deadline = time.monotonic() + 10
    while server_session_state(kind, victim) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    error = failure(db.query, "SELECT 1")
    assert error.reason == "connect" and "connection lost" in str(error)
    assert session_id(db, kind) != victim


@pytest.mark.parametrize("kind", odbc_params())
def test_refused_port_fails_fast_then_backs_off(kind: str) -> None:
    clock = FakeClock()
    refused = on_port(kind, 1) + "PWD=sekret;"
    db = open_database("payments", odbc=refused, connect_timeout=2, clock=clock)
    first = failure(db.query, "SELECT 1")
    assert first.reason == "connect"
    assert "'payments'" in str(first) and "SQLSTATE" in str(first)
    blocked = failure(db.query, "SELECT 1")
    assert blocked.reason == "connect" and "next connect attempt in 1.0s" in str(blocked)
    for message in (str(first), str(blocked)):
        assert "sekret" not in message and "PORT=" not in message and "127.0.0.1" not in message


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", odbc_params())
def test_silent_server_fails_the_connect_instead_of_hanging(kind: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts TCP in the kernel, never answers
    try:
        port = listener.getsockname()[1]
        db = open_database("silent", odbc=on_port(kind, port), connect_timeout=1)
        assert failure(db.query, "SELECT 1").reason == "connect"
    finally:
        listener.close()


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_each_thread_has_its_own_connection(odbc_db: tuple[str, Database]) -> None:
    kind, db = odbc_db
    barrier = threading.Barrier(3, timeout=20)
    seen: dict[str, tuple[int, int]] = {}
    problems: list[BaseException] = []

    def worker() -> None:
        try:
            first = session_id(db, kind)
            barrier.wait()  # all three connections are open at once
            seen[threading.current_thread().name] = (first, session_id(db, kind))
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    threads = [threading.Thread(target=worker, name=f"poller-{n}") for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not problems
    assert all(first == again for first, again in seen.values())  # reused within a thread
    assert len({first for first, _ in seen.values()}) == 3


@pytest.mark.parametrize("kind", odbc_params())
def test_missing_odbc_driver_is_named(kind: str) -> None:
    db = open_database("payments", odbc="DRIVER={No Such Driver 99};SERVER=db;PWD=sekret")
    error = failure(db.query, "SELECT 1")
    assert error.reason == "driver_missing"
    assert "installed drivers:" in str(error) and "sekret" not in str(error)


@pytest.mark.parametrize(
    "odbc_db", [pytest.param("postgresql", marks=requires_odbc("postgresql"))], indirect=True
)
def test_error_messages_hide_values(odbc_db: tuple[str, Database]) -> None:
    _, db = odbc_db
    error = failure(db.query, "SELECT CAST(? AS INTEGER)", ["4111111111111111"])
    assert error.reason == "query"
    assert "SQLSTATE 22" in str(error) and "4111" not in str(error)


def _lost_on_first_connection(fake: FakePyodbc, number: int, sql: str) -> None:
    """The first connection's query fails the way psqlODBC reports a loss (its session check passes)."""
    if number == 1 and not sql.startswith("SELECT current_setting("):
        raise fake.Error("HY000", "[HY000] The connection has been lost (35) (SQLExecDirectW)")


def test_psqlodbc_connection_has_been_lost_is_a_connect_error_and_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    # the session check at connect: our settings took
    fake = FakePyodbc("PostgreSQL Unicode", on_execute=_lost_on_first_connection, fetchone=("on", "5s", "UTC"))
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("payments", odbc="Driver={PostgreSQL Unicode};Server=db", query_timeout=5)
    error = failure(db.query, "SELECT 1")
    assert error.reason == "connect" and "connection lost" in str(error)
    assert db.query("SELECT 1") == [(1,)]
    assert fake.connects == 2


# --- PostgreSQL: the session is checked once, at connect ------------------------------------------------


_DEVART = "Driver={Devart ODBC Driver for PostgreSQL};Server=db;Database=ledger"
_SETTINGS_CHECK = (
    "SELECT current_setting('default_transaction_read_only'), current_setting('statement_timeout'), "
    "current_setting('TimeZone')"
)


def test_postgresql_session_is_checked_by_one_statement_at_connect_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePyodbc("Devart ODBC Driver for PostgreSQL", fetchone=("on", "30s", "UTC"))
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("ledger", odbc=_DEVART, query_timeout=30)
    assert db.query("SELECT 1") == [(1,)]
    assert db.query("SELECT 1") == [(1,)]
    assert fake.statements == [_SETTINGS_CHECK, "SELECT 1", "SELECT 1"]


@pytest.mark.parametrize(
    "settings, wrong",
    [
        (("off", "30s", "UTC"), "default_transaction_read_only is 'off' (expected 'on')"),
        (("on", "0", "UTC"), "statement_timeout is '0' (expected the query timeout)"),
        (("on", "30s", "Europe/Paris"), "TimeZone is 'Europe/Paris' (expected 'UTC')"),
    ],
)
def test_postgresql_session_that_did_not_take_our_settings_is_refused(
    monkeypatch: pytest.MonkeyPatch, settings: tuple[str, str, str], wrong: str
) -> None:
    fake = FakePyodbc("Devart ODBC Driver for PostgreSQL", fetchone=settings)
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("ledger", odbc=_DEVART, query_timeout=30)
    error = failure(db.query, "SELECT 1")
    assert error.reason == "connect"
    assert str(error).startswith("database 'ledger': the session did not take the exporter's read-only")
    assert wrong in str(error)
    assert "use the psqlODBC driver" in str(error)
    assert fake.statements == [_SETTINGS_CHECK]  # the query never ran
    assert fake.closed == 1


@requires_odbc("postgresql")
def test_postgresql_session_check_passes_with_psqlodbc_and_refuses_a_bare_session() -> None:
    import pyodbc

    from batch_exporter.dialects import dialect_named
    from batch_exporter.dialects.base import SessionNotHardened

    postgresql = dialect_named("postgresql")
    hardened = harden_connection_string(odbc_connection_string("postgresql"), query_timeout=5, connect_timeout=5)
    for connection_string, refused in ((hardened, False), (odbc_connection_string("postgresql"), True)):
        connection = pyodbc.connect(connection_string, autocommit=False, timeout=5)
        try:
            if refused:
                with pytest.raises(SessionNotHardened, match="default_transaction_read_only is 'off'"):
                    postgresql.start_session(connection, 5, pyodbc.Error, "test")
            else:
                postgresql.start_session(connection, 5, pyodbc.Error, "test")
        finally:
            connection.close()


# --- query_batches: a result handed over batch by batch -------------------------------------------------


def test_query_batches_sends_the_statement_once_and_hands_every_row_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[tuple[object, ...]] = [(number,) for number in range(database.FETCH_BATCH * 2 + 7)]
    fake = FakePyodbc("MariaDB Unicode", fetchone=("10.11.6-MariaDB",), fetchmany=rows)
    monkeypatch.setattr(database, "_load_pyodbc", lambda name: fake)
    db = open_database("scheduler", odbc="Driver={MariaDB Unicode};Server=db", query_timeout=5)
    batches: list[list[tuple[object, ...]]] = []
    db.query_batches("SELECT job FROM runs", (), batches.append)
    assert [len(batch) for batch in batches] == [database.FETCH_BATCH, database.FETCH_BATCH, 7]
    assert [row for batch in batches for row in batch] == rows
    assert fake.statements.count("SELECT job FROM runs") == 1


def test_query_batches_refuses_a_write_before_the_driver(sqlite_db: Database) -> None:
    error = failure(sqlite_db.query_batches, "DELETE FROM batch_run", (), lambda rows: None)
    assert error.reason == "query" and "statement refused" in str(error)


def test_sqlite_query_batches_reads_what_query_reads(sqlite_db: Database, runs_file: Path) -> None:
    batches: list[list[tuple[object, ...]]] = []
    sqlite_db.query_batches("SELECT * FROM batch_run ORDER BY run_id", (), batches.append)
    assert [row for batch in batches for row in batch] == sqlite_rows(runs_file)


class Refused(Exception):
    pass


def _refuse(rows: list[tuple[object, ...]]) -> None:
    raise Refused(len(rows))


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_query_batches_streams_a_large_result_and_survives_a_consumer_that_gives_up(
    odbc_db: tuple[str, Database]
) -> None:
    kind, db = odbc_db
    count = database.FETCH_BATCH * 3 + 11
    numbers = {
        "postgresql": f"SELECT n FROM generate_series(1, {count}) AS g(n) ORDER BY n",
        "mariadb": f"SELECT seq FROM seq_1_to_{count} ORDER BY seq",
    }[kind]
    before = session_id(db, kind)
    sizes: list[int] = []
    seen: list[object] = []

    def take(rows: list[tuple[object, ...]]) -> None:
        sizes.append(len(rows))
        seen.extend(row[0] for row in rows)

    db.query_batches(numbers, (), take)
    assert sizes == [database.FETCH_BATCH] * 3 + [11]
    assert seen == list(range(1, count + 1))
    # what the consumer raises reaches the caller; the statement (PostgreSQL: our cursor) is gone with it
    with pytest.raises(Refused):
        db.query_batches(numbers, (), _refuse)
    sizes.clear()
    seen.clear()
    db.query_batches(numbers, (), take)
    assert seen == list(range(1, count + 1))
    assert session_id(db, kind) == before  # the same session throughout
    assert server_session_state(kind, before) in ("idle", "Sleep")


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_query_batches_stops_at_the_deadline(odbc_db: tuple[str, Database]) -> None:
    kind, db = odbc_db
    error = failure(db.query_batches, SLEEP_SQL[kind], [5], lambda rows: None)
    assert error.reason == "timeout"
    assert db.query("SELECT 1") == [(1,)]


@requires_odbc("postgresql")
def test_postgresql_query_batches_fetches_through_a_cursor_of_its_own() -> None:
    """psqlODBC buffers a whole result at execute; query_batches asks the server for a batch at a time."""
    db = open_database("pg", odbc=odbc_connection_string("postgresql"), query_timeout=5)
    try:
        ident = session_id(db, "postgresql")
        last_statements: list[str] = []

        def take(rows: list[tuple[object, ...]]) -> None:
            admin = admin_connection("postgresql")
            try:
                found = admin.cursor().execute("SELECT query FROM pg_stat_activity WHERE pid = ?", ident).fetchone()
                last_statements.append(str(found[0]))
            finally:
                admin.close()

        db.query_batches("SELECT n FROM generate_series(1, 1200) AS g(n)", (), take)
        assert len(last_statements) == 3
        # psqlODBC wraps each statement in savepoints of its own; the session is fetching from our cursor
        assert "FETCH FORWARD 500 FROM batch_exporter_batches" in last_statements[0], last_statements
        assert not any("generate_series" in text for text in last_statements), last_statements
    finally:
        db.close()


@pytest.mark.parametrize("odbc_db", odbc_params(), indirect=True)
def test_the_deadline_counts_the_drivers_time_not_the_time_spent_on_each_batch(odbc_db: tuple[str, Database]) -> None:
    """query_timeout is 1 s here: handing over three batches takes 1.8 s of the caller's own time."""
    kind, db = odbc_db
    numbers = {
        "postgresql": f"SELECT n FROM generate_series(1, {database.FETCH_BATCH * 3}) AS g(n)",
        "mariadb": f"SELECT seq FROM seq_1_to_{database.FETCH_BATCH * 3}",
    }[kind]
    taken: list[int] = []

    def slow(rows: list[tuple[object, ...]]) -> None:
        time.sleep(0.6)
        taken.append(len(rows))

    db.query_batches(numbers, (), slow)
    assert taken == [database.FETCH_BATCH] * 3
    assert db.query("SELECT 1") == [(1,)]


@requires_odbc("postgresql")
def test_postgresql_batches_leave_the_session_as_they_found_it() -> None:
    db = open_database("pg", odbc=odbc_connection_string("postgresql"), query_timeout=5)
    try:
        db.query_batches("SELECT n FROM generate_series(1, 10) AS g(n)", (), lambda rows: None)
        assert db.query("SELECT current_setting('cursor_tuple_fraction')") == [("0.1",)]
        assert db.query("SELECT count(*) FROM pg_cursors") == [(0,)]
    finally:
        db.close()


def test_sqlite_batches_are_handed_over_after_the_read_so_writers_never_wait(runs_file: Path) -> None:
    db = open_database("runs", sqlite=str(runs_file), query_timeout=5)
    written: list[int] = []

    def write_meanwhile(rows: list[tuple[object, ...]]) -> None:
        writer = sqlite3.connect(runs_file, timeout=0)  # no waiting: a held lock fails at once
        try:
            writer.execute("INSERT INTO batch_run VALUES (3, 'OK', '2026-11-29 02:00:05', NULL)")
            writer.commit()
            written.append(len(rows))
        finally:
            writer.close()

    db.query_batches("SELECT * FROM batch_run", (), write_meanwhile)
    assert written == [2]
    db.close()


def test_the_watchdog_counts_only_the_drivers_time() -> None:
    cancelled: list[int] = []
    with database._Watchdog(lambda: cancelled.append(1), 0.3) as watchdog:
        with watchdog.paused():
            time.sleep(0.5)  # the caller's own work: not the statement's
        assert not watchdog.fired
        time.sleep(0.6)  # the driver's again: 0.3 s of it is all the statement gets
    assert watchdog.fired and cancelled == [1]
