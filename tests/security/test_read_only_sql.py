"""Issue 11, item 1: no SQL text the checker accepts runs as a write or as a second statement.

The attacks of the issue run through the exporter's real paths (`check-config` and `once` as processes)
against the real PostgreSQL and MariaDB; a differential test then feeds generated queries to the checker
and sends every one it accepts to both servers, watching a sentinel row and the number of result sets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from batch_exporter.config import ConfigError, parse_config
from batch_exporter.sqlcheck import StatementError, check_read_only
from db_servers import admin_connection, odbc_connection_string, odbc_params, requires_odbc, scratch_table

from .attacks import run_exporter, write_config, yaml_text

DIALECT = {"postgresql": "postgresql", "mariadb": "mysql"}
CHECK_ATTACK = "SELECT count(*) FROM {t} --\r; COMMIT; BEGIN READ WRITE; DELETE FROM {t}; COMMIT; SELECT 1"
WHERE_ATTACK = "id > 0 --\r) ; COMMIT; BEGIN READ WRITE; DELETE FROM {t}; COMMIT; SELECT (1\n"


def row_count(kind: str, table: str) -> int:
    connection = admin_connection(kind)
    try:
        return int(connection.cursor().execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        connection.close()


@requires_odbc("postgresql")
def test_check_query_with_a_carriage_return_comment_never_deletes(tmp_path: Path) -> None:
    with scratch_table("postgresql", "id INT", [(1,), (2,)]) as victim:
        config = write_config(
            tmp_path,
            odbc_connection_string("postgresql"),
            f"    checks:\n      c:\n        query: {yaml_text(CHECK_ATTACK.format(t=victim))}\n",
        )
        checked = run_exporter("check-config", config)
        assert checked.code != 0
        assert "batches.b.checks.c.query: only a single read-only SELECT is allowed" in checked.output
        assert "carriage return" in checked.output
        once = run_exporter("once", config)
        assert once.code != 0
        assert row_count("postgresql", victim) == 2


@requires_odbc("postgresql")
def test_runs_where_with_a_carriage_return_comment_never_deletes(tmp_path: Path) -> None:
    with scratch_table(
        "postgresql", "id INT, status VARCHAR(10), started_at TIMESTAMP, ended_at TIMESTAMP", [(1, "OK", None, None)]
    ) as victim:
        batch = (
            f"    runs:\n      table: {victim}\n      where: {yaml_text(WHERE_ATTACK.format(t=victim))}\n"
            "      columns: {run_id: id}\n      status: {success: [OK], failed: [NG]}\n"
        )
        # the variant: the driver pastes parameters in, so the extra statements run
        config = write_config(tmp_path, odbc_connection_string("postgresql") + "UseServerSidePrepare=0;", batch)
        for command in ("check-config", "once"):
            assert run_exporter(command, config).code != 0
        assert row_count("postgresql", victim) == 1
        # without that key, the SQL checker alone refuses it, at the where line
        text = write_config(tmp_path, odbc_connection_string("postgresql"), batch).read_text()
        # (now refused before the SQL checker: a where may hold no comment and no ';' outside quotes)
        with pytest.raises(ConfigError, match=r"attack.yml:\d+: batches.b.runs.where: .*(carriage return|contains a)"):
            parse_config(text, "attack.yml")


def _runs_config(odbc: str, where: str) -> str:
    return (
        f"databases:\n  db:\n    odbc: {yaml_text(odbc)}\n"
        "batches:\n  b:\n    database: db\n    runs:\n      table: batch_run\n"
        f"      where: {yaml_text(where)}\n      status: {{success: [OK], failed: [NG]}}\n"
    )


def test_fragments_are_checked_as_the_database_of_the_batch_reads_them() -> None:
    where = "name = [a;b]"  # a quoted name in SQL Server, two statements anywhere else
    parse_config(_runs_config("Driver={ODBC Driver 18 for SQL Server};Server=db1", where), "c.yml")
    with pytest.raises(ConfigError, match=r"c.yml:\d+: batches.b.runs.where: .*more than one statement"):
        parse_config(_runs_config("Driver={MariaDB Unicode};Server=db1", where), "c.yml")


# ------------------------------------------------------------------------------------ differential

PAYLOAD = " DELETE FROM {t}; SELECT 2 "
OPENERS = ["--", "-- ", "--\t", "#", "# ", "/*", "/*!", "/*M!", "/* /*", "'", '"', "`", "$$", "$a$", "$\u00b7$",
           "E'", "'\\", "[", "x"]
FILLERS = ["*/", "*/ */", "'", "''", '"', "`", "$$", "$a$", "$\u00b7$", "\\", "\\'", "]", "]]", "\n", "\r",
           "\r\n", "\x0b", "\x0c", "\x7f", "\u00a0", "\u3000", " ", "x", "1", ";", "(", ")"]
# an opener, what may end it, then a payload that must stay data, then what may close the opener
QUERIES = st.builds(
    lambda opener, middle, payload, tail: "SELECT 1 AS a " + opener + "".join(middle) + payload + "".join(tail),
    st.sampled_from(OPENERS),
    st.lists(st.sampled_from(FILLERS), max_size=3),
    st.sampled_from([";" + PAYLOAD, PAYLOAD, ""]),
    st.lists(st.sampled_from(OPENERS + FILLERS), max_size=3),
)


def _accepted(sql: str, dialect: str) -> bool:
    try:
        check_read_only(sql, dialect)
    except StatementError:
        return False
    return True


def _run_on_server(connection: Any, sql: str) -> int | None:
    """Result sets the server returned, or None when it refused the text."""
    import pyodbc

    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        sets = 1
        while cursor.nextset():
            sets += 1
        return sets
    except pyodbc.Error:
        return None
    finally:
        cursor.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", odbc_params())
def test_no_accepted_query_runs_as_a_write_or_a_second_statement(kind: str) -> None:
    import pyodbc

    ran: list[str] = []
    with scratch_table(kind, "id INT", [(1,)]) as sentinel:
        connection = pyodbc.connect(odbc_connection_string(kind), autocommit=False, timeout=5)

        @seed(11)
        @settings(max_examples=500, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(QUERIES)
        def differential(template: str) -> None:
            sql = template.replace("{t}", sentinel)
            if not _accepted(sql, DIALECT[kind]):
                return
            ran.append(sql)
            sets = _run_on_server(connection, sql)
            left = connection.cursor().execute(f"SELECT count(*) FROM {sentinel}").fetchone()[0]
            connection.rollback()
            assert left == 1, f"{kind} wrote: {sql!r}"
            assert sets in (None, 1), f"{kind} ran {sets} statements: {sql!r}"

        try:
            differential()
        finally:
            connection.close()
        assert row_count(kind, sentinel) == 1
    assert len(ran) >= 50, f"only {len(ran)} generated queries were accepted: the generator needs tuning"
