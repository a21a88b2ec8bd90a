"""PostgreSQL through psqlODBC: the session is hardened by libpq options in the connection string."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .base import (
    Dialect,
    ErrorCodes,
    Pairs,
    Reading,
    Row,
    SessionNotHardened,
    brace,
    keys,
    odbc_pop,
    rows_of,
    unbrace,
)

# libpq settings allowed inside pqopt, and the -c settings allowed inside its options
_PQOPT_KEYS = keys(
    "sslmode sslrootcert sslcert sslkey sslcrl sslcrldir sslsni sslcompression requiressl gssencmode "
    "channel_binding krbsrvname connect_timeout keepalives keepalives_idle keepalives_interval keepalives_count "
    "tcp_user_timeout target_session_attrs application_name passfile options"
)
_PQOPT_SETTINGS = keys(
    "timezone application_name lock_timeout idle_in_transaction_session_timeout statement_timeout work_mem "
    "datestyle intervalstyle extra_float_digits"
)
_HEAD_CURSOR = "batch_exporter_head"
_BATCH_CURSOR = "batch_exporter_batches"
_SESSION_SETTINGS = (
    "SELECT current_setting('default_transaction_read_only'), current_setting('statement_timeout'), "
    "current_setting('TimeZone')"
)
_UTC_NAMES = frozenset({"utc", "etc/utc"})
_READING = Reading(
    "PostgreSQL", escape_string_prefix=True, dollar_quotes=True, nested_comments=True, line_comment_ends="\n\r"
)


class PostgreSql(Dialect):
    name = "postgresql"
    odbc_keys: Mapping[str | None, frozenset[str]] = {
        "postgresql": keys(
            "server servername port database username password sslmode pqopt usedeclarefetch fetch boolsaschar "
            "maxvarcharsize maxlongvarcharsize textaslongvarchar unknownsaslongvarchar byteaaslongvarbinary "
            "keepalivetime keepaliveinterval readonly"
        )
    }
    # psqlODBC also takes two-character abbreviations of its keys (A6 is ConnSettings)
    refused_odbc_keys: Mapping[str, str] = {
        "connsettings": "the driver runs its SQL on every connect, which can lift the read-only session",
        "a6": "it is psqlODBC's short name of ConnSettings, whose SQL runs on every connect",
        "useserversideprepare": "it makes the driver paste parameters into the statement text itself",
        "debug": "it writes statements and values to a driver log file",
        "commlog": "it writes statements and values to a driver log file",
    }
    error_codes = ErrorCodes(
        timeout_states=frozenset({"57014"}),  # query_canceled: statement_timeout
        # invalid_authorization_specification, invalid_password, insufficient_privilege
        permission_states=frozenset({"28000", "28P01", "42501"}),
        lost_states=frozenset({"57P01", "57P02", "57P03"}),  # backend terminated
        # psqlODBC reports some losses as the general HY000 with one of these texts
        lost_texts=(
            "connection has been lost",
            "connection lost",
            "server closed the connection",
            "no connection to the server",
        ),
    )
    # standard_conforming_strings=off makes '...' take backslash escapes too
    readings = (
        _READING,
        replace(_READING, label="PostgreSQL with standard_conforming_strings=off", backslash_escapes=True),
    )
    side_effect_functions = keys(
        "pg_advisory_* pg_try_advisory_* pg_create_* pg_drop_replication_slot pg_replication_slot_advance "
        "pg_stat_reset* pg_reload_conf pg_rotate_logfile pg_switch_wal pg_switch_xlog pg_promote "
        "pg_terminate_backend pg_cancel_backend pg_logical_emit_message pg_read_file pg_read_binary_file pg_ls_* "
        "pg_stat_file pg_file_* pg_notify set_config setval nextval lo_* dblink* txid_current pg_current_xact_id "
        "pg_export_snapshot"
    )

    def drives(self, driver: str) -> bool:
        return "postgres" in driver or "psqlodbc" in driver

    def key_family(self, driver: str) -> str | None:
        return "postgresql"

    def check_odbc_value(self, key: str, value: str) -> None:
        if key == "pqopt":
            _check_pqopt(value)

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        """pqopt options (read-only transactions, statement_timeout, UTC) merged after any the user gave, so
        that ours win."""
        pairs = list(pairs)
        user_pqopt = unbrace(odbc_pop(pairs, "pqopt") or "")
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={math.ceil(query_timeout * 1000)} "
            "-c TimeZone=UTC"
        )
        pairs.append(("pqopt", brace(_merge_pqopt(user_pqopt, options, math.ceil(connect_timeout)))))
        return pairs

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        """Check that the pqopt options added by harden took: only psqlODBC reads pqopt, and a driver that
        ignores it (other PostgreSQL drivers match ``drives`` too) would leave the session writable and
        unbounded. One statement per connection."""
        cursor = connection.cursor()
        try:
            read_only, statement_timeout, time_zone = cursor.execute(_SESSION_SETTINGS).fetchone()
        finally:
            cursor.close()
        connection.rollback()  # the next query starts its own transaction (and NOW()) afresh
        wrong = [
            f"{name} is {value!r} (expected {expected})"
            for name, value, expected, took in (
                ("default_transaction_read_only", read_only, "'on'", str(read_only).lower() == "on"),
                ("statement_timeout", statement_timeout, "the query timeout", str(statement_timeout) != "0"),
                ("TimeZone", time_zone, "'UTC'", str(time_zone).lower() in _UTC_NAMES),
            )
            if not took
        ]
        if wrong:
            raise SessionNotHardened(
                "the session did not take the exporter's read-only, timeout and UTC settings ("
                + "; ".join(wrong)
                + "): they are passed in psqlODBC's pqopt key, which this driver ignores; use the psqlODBC "
                "driver (Driver={PostgreSQL Unicode})"
            )

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        # psqlODBC reads the whole result into memory at execute: a cursor of ours fetches only the head
        # (it is gone at the rollback that ends every query)
        cursor.execute(f"DECLARE {_HEAD_CURSOR} NO SCROLL CURSOR FOR {sql}\n", *params)
        cursor.execute(f"FETCH FORWARD {int(limit)} FROM {_HEAD_CURSOR}")
        return rows_of(cursor, limit)

    def fetch_batches(self, cursor: Any, sql: str, params: tuple[object, ...], size: int) -> Iterator[list[Row]]:
        # as fetch_head: psqlODBC would hold the whole result (100,000 rows of a fleet's window) at execute.
        # Every row will be read: the cursor is planned for that, not for a fast first row (which walks a
        # whole index to skip a sort), until the rollback that ends every query.
        cursor.execute("SET LOCAL cursor_tuple_fraction = 1")
        cursor.execute(f"DECLARE {_BATCH_CURSOR} NO SCROLL CURSOR FOR {sql}\n", *params)
        while rows := cursor.execute(f"FETCH FORWARD {int(size)} FROM {_BATCH_CURSOR}").fetchall():
            yield [tuple(row) for row in rows]


def _check_pqopt(text: str) -> None:
    for key, value in _parse_conninfo(text).items():
        if key.lower() not in _PQOPT_KEYS:
            raise ValueError(f"key pqopt is not allowed with {key}: the exporter does not know it to be harmless")
        if key.lower() == "options":
            _check_pg_options(value)


def _check_pg_options(options: str) -> None:
    words = options.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            setting, i = words[i + 1], i + 2
        elif word.startswith(("-c", "--")) and len(word) > 2:
            setting, i = word[2:], i + 1
        else:
            raise ValueError("key pqopt is not allowed with options other than -c name=value settings")
        name = setting.split("=", 1)[0].lower()
        if name not in _PQOPT_SETTINGS:
            raise ValueError(f"key pqopt is not allowed with options -c {name}: it changes the session "
                             "(allowed: " + ", ".join(sorted(_PQOPT_SETTINGS)) + ")")


def _merge_pqopt(user: str, options: str, connect_timeout: int) -> str:
    """libpq conninfo with our ``-c`` options appended after the user's (the last setting wins)."""
    settings = _parse_conninfo(user)
    merged = " ".join(part for part in (settings.get("options", ""), options) if part)
    settings["options"] = merged
    settings.setdefault("connect_timeout", str(connect_timeout))
    return " ".join(f"{key}='{_conninfo_escape(value)}'" for key, value in settings.items())


def _parse_conninfo(text: str) -> dict[str, str]:
    """libpq ``key=value key='quoted value'`` syntax (backslash escapes)."""
    settings: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        equals = text.find("=", i)
        if equals < 0:
            raise ValueError(f"ODBC connection string: pqopt has a setting without '=' at character {i}")
        key = text[i:equals].strip()
        i = equals + 1
        while i < n and text[i].isspace():
            i += 1
        quoted = i < n and text[i] == "'"
        i += quoted
        value = []
        while i < n and (text[i] != "'" if quoted else not text[i].isspace()):
            if text[i] == "\\" and i + 1 < n:
                i += 1
            value.append(text[i])
            i += 1
        if quoted:
            if i >= n:
                raise ValueError("ODBC connection string: pqopt has an unterminated quoted value")
            i += 1
        settings[key] = "".join(value)
    return settings


def _conninfo_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
