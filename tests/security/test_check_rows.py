"""Issue 11, item 9: a check query returning millions of rows is read no further than its second row.

Each query makes its row 3 (4 on SQLite, whose Python cursor steps one row ahead) fail, as a full read
would: the check only succeeds when the exporter stops fetching early, whatever the memory.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from batch_exporter.config import CheckConfig
from batch_exporter.database import Database, QueryError, open_database
from batch_exporter.sources.checks import ChecksSource
from db_servers import odbc_connection_string, odbc_params

# 5 million rows; the first is 1/(3-1) = 0 after integer division, row 3 divides by zero
_MANY_ROWS = {
    "postgresql": "SELECT 1 / (3 - g) AS v FROM generate_series(1, 5000000) AS g",
    # MariaDB answers NULL to 1/0; a subquery of two rows is an error it cannot hide
    "mariadb": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000000) "
               "SELECT CASE WHEN x = 3 THEN (SELECT 1 UNION ALL SELECT 2) ELSE 7 - x END AS v FROM n",
}
# abs() of the smallest integer overflows: a SQLite error at row 4
_SQLITE_MANY_ROWS = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000000) "
    "SELECT CASE WHEN x = 4 THEN abs(-9223372036854775807 - 1) ELSE 7 - x END AS v FROM n"
)
_FIRST = {"postgresql": 0.0, "mariadb": 6.0, "sqlite": 6.0}


def _odbc(kind: str) -> Database:
    return open_database(kind, odbc=odbc_connection_string(kind), query_timeout=20)


def _sqlite(tmp_path: Path) -> Database:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    return open_database("sqlite", sqlite=str(path), query_timeout=20)


def _poll_twice(db: Database, sql: str, caplog: pytest.LogCaptureFixture) -> list[float]:
    source = ChecksSource("b", {"many": CheckConfig(query=sql)}, db)
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.checks"):
        values = [s.value for poll in (source.poll(), source.poll()) for s in poll.samples
                  if s.name == "batch_check_value"]
    return values


@pytest.mark.parametrize("kind", odbc_params())
def test_a_check_reads_two_rows_of_five_million_on_a_server(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    db = _odbc(kind)
    try:
        with pytest.raises(QueryError):  # the trap is real: reading every row fails
            db.query(_MANY_ROWS[kind])
        assert _poll_twice(db, _MANY_ROWS[kind], caplog) == [_FIRST[kind]] * 2
        # the session is not left limited: a later full query still gets every row
        assert len(db.query("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")) == 3
    finally:
        db.close()
    warnings = [r.getMessage() for r in caplog.records if "more than one row" in r.getMessage()]
    assert len(warnings) == 1 and "check many" in warnings[0]  # said once, not at every poll


def test_a_check_reads_two_rows_of_five_million_in_sqlite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _sqlite(tmp_path)
    try:
        with pytest.raises(QueryError, match="integer overflow"):
            db.query(_SQLITE_MANY_ROWS)
        assert _poll_twice(db, _SQLITE_MANY_ROWS, caplog) == [_FIRST["sqlite"]] * 2
    finally:
        db.close()
    assert sum("more than one row" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("kind", odbc_params())
def test_query_head_keeps_parameters_and_single_rows(kind: str) -> None:
    db = _odbc(kind)
    try:
        assert db.query_head("SELECT ? + 1", (41,), limit=2) == [(42,)]
        assert db.query_head("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3", limit=1) == [(1,)]
    finally:
        db.close()
