"""Microsoft SQL Server through Microsoft's ODBC driver (FreeTDS is served by the generic ODBC dialect)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import Dialect, ErrorCodes, Pairs, Reading, Row, fetch_streamed, keys, odbc_get


class SqlServer(Dialect):
    name = "mssql"
    odbc_keys: Mapping[str | None, frozenset[str]] = {
        "mssql": keys(
            "server address addr database encrypt trustservercertificate hostnameincertificate servercertificate "
            "applicationintent multisubnetfailover trusted_connection authentication connectretrycount "
            "connectretryinterval app wsid transparentnetworkipresolution serverspn keepalive "
            "keepaliveinterval"
        )
    }
    refused_odbc_keys: Mapping[str, str] = {
        "attachdbfilename": "it attaches a database file to the server",
        "savefile": "it writes the connection string, password included, to a file",
        "quotedid": "it changes how the server reads quotes in statements",
        "ansinpw": "it changes how the server reads statements",
    }
    error_codes = ErrorCodes(
        # login failed; SELECT / other permission denied on an object or a column; permission denied in a database
        permission_native=frozenset({18456, 229, 230, 262}),
    )
    readings = (Reading("SQL Server", brackets=True, brackets_double=True, nested_comments=True),)
    side_effect_functions: frozenset[str] = frozenset()  # its procedures (EXEC) are refused as keywords

    def drives(self, driver: str) -> bool:
        return any(tag in driver for tag in ("sql server", "msodbcsql", "sqlncli"))

    def key_family(self, driver: str) -> str | None:
        return "mssql"

    def check_odbc_value(self, key: str, value: str) -> None:
        pass  # no allowed key takes a value that could change the session

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        """``ApplicationIntent=ReadOnly`` (a routing hint to a readable secondary) unless the user set it."""
        if odbc_get(pairs, "applicationintent") is not None:
            return list(pairs)
        return [*pairs, ("ApplicationIntent", "ReadOnly")]

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        connection.timeout = math.ceil(query_timeout)  # the driver's query timeout

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        return fetch_streamed(cursor, sql, params, limit)
