"""MariaDB and MySQL through the MariaDB or MySQL ODBC driver: the session is hardened by SET statements."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .base import Dialect, ErrorCodes, Pairs, Reading, Row, SessionSpoiled, keys, odbc_get, rows_of

_READING = Reading(
    "MySQL/MariaDB",
    backslash_escapes=True,
    double_quote_backslash=True,
    backticks=True,
    hash_comments=True,
    dash_comment_needs_space=True,
    executable_comments=True,
)


class MySql(Dialect):
    name = "mysql"
    odbc_keys: Mapping[str | None, frozenset[str]] = {
        "mariadb": keys(
            "server port database db user password socket conn_timeout read_timeout write_timeout sslkey sslcert "
            "sslca sslcapath sslcipher sslverify sslcrl sslcrlpath tlsversion forcetls sslfp sslfplist"
        )
    }
    refused_odbc_keys: Mapping[str, str] = {
        "initstmt": "the driver runs its SQL on every connect, which can write or lift the read-only session",
        "use_mycnf": "it makes the driver read my.cnf, whose init-command runs SQL on every connect",
        "option": "its bit flags include automatic reconnect (which loses the read-only session) and "
                  "multiple statements per query",
        "auto_reconnect": "a silent reconnect loses the read-only session",
        "multi_statements": "it lets one query carry several statements",
        "no_ssps": "it makes the driver paste parameters into the statement text itself",
        "plugin_dir": "it makes the driver load client plugins (code) from that folder",
    }
    error_codes = ErrorCodes(
        timeout_native=frozenset({1317, 1969, 3024}),  # interrupted, max_statement_time, max_execution_time
        lost_native=frozenset({2006, 2013, 2055}),  # client: gone away, lost during query
        # access denied to the database, to the account (login), to a table, to a column; a privilege
        # missing (SUPER and the like); EXECUTE denied on a routine
        permission_native=frozenset({1044, 1045, 1142, 1143, 1227, 1370}),
    )
    readings = (
        _READING,
        replace(
            _READING,
            label="MySQL/MariaDB with NO_BACKSLASH_ESCAPES",
            backslash_escapes=False,
            double_quote_backslash=False,
        ),
    )
    side_effect_functions = keys(
        "get_lock release_lock release_all_locks is_used_lock load_file master_pos_wait source_pos_wait "
        "master_gtid_wait sys_exec sys_eval"
    )

    def drives(self, driver: str) -> bool:
        return any(tag in driver for tag in ("mariadb", "mysql", "maodbc", "myodbc"))

    def key_family(self, driver: str) -> str | None:
        return "mariadb"

    def check_odbc_value(self, key: str, value: str) -> None:
        pass  # no allowed key takes a value that could change the session

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        """Connect, read and write timeouts, so that a silent peer cannot block forever."""
        pairs = list(pairs)
        socket_seconds = math.ceil(query_timeout) + 5  # a backstop behind max_statement_time and cancel
        for key, value in (
            ("CONN_TIMEOUT", math.ceil(connect_timeout)),
            ("READ_TIMEOUT", socket_seconds),
            ("WRITE_TIMEOUT", socket_seconds),
        ):
            if odbc_get(pairs, key) is None:
                pairs.append((key, str(value)))
        return pairs

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        cursor = connection.cursor()
        version = str(cursor.execute("SELECT VERSION()").fetchone()[0]).lower()
        limit = (
            f"max_statement_time = {query_timeout:.3f}"
            if "mariadb" in version
            else f"max_execution_time = {math.ceil(query_timeout * 1000)}"
        )
        for statement in (
            "SET SESSION TRANSACTION READ ONLY",
            f"SET SESSION {limit}",
            "SET SESSION time_zone = '+00:00'",
        ):
            cursor.execute(statement)
        cursor.close()
        connection.rollback()

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        # the driver reads the whole result into memory at execute: the server is asked for no more
        cursor.execute(f"SET SESSION sql_select_limit = {int(limit)}")
        try:
            cursor.execute(sql, *params)
            return rows_of(cursor, limit)
        finally:
            try:
                cursor.execute("SET SESSION sql_select_limit = DEFAULT")
            except driver_error as exc:
                # a session left limited would cut every later result short
                raise SessionSpoiled("could not lift the row limit", exc) from None
