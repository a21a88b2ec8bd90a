"""SQLite, read from a file (``sqlite:``, the standard library's driver in database.py) or through the SQLite
ODBC driver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Dialect, ErrorCodes, Pairs, Reading, Row, fetch_streamed, keys


class Sqlite(Dialect):
    name = "sqlite"
    odbc_keys: Mapping[str | None, frozenset[str]] = {
        "sqlite": keys("database timeout nocreat stepapi shortnames longnames bigint jdconv")
    }
    refused_odbc_keys: Mapping[str, str] = {
        "loadext": "it loads SQLite extensions (code) into the driver",
    }
    error_codes = ErrorCodes()  # the ODBC-standard codes say it all
    readings = (Reading("SQLite", brackets=True, backticks=True, sqlite_variables=True),)
    side_effect_functions: frozenset[str] = frozenset()  # the authorizer of a file allows reads only

    def drives(self, driver: str) -> bool:
        return "sqlite" in driver

    def key_family(self, driver: str) -> str | None:
        return "sqlite"

    def check_odbc_value(self, key: str, value: str) -> None:
        pass  # no allowed key takes a value that could change the session

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        return list(pairs)  # the ODBC driver has no read-only or timeout setting to add

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        pass  # nothing to set: rollback and the client-side cancel bound the session

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        return fetch_streamed(cursor, sql, params, limit)
