"""Any other ODBC driver (the one the exporter does not recognise, FreeTDS among them), and a bare DSN.

Nothing is known of the server, so statements must pass every known dialect's reading, any known error
code counts, any known side-effect function is refused, and only the ODBC-standard query timeout is set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from operator import or_
from typing import Any

from .base import Dialect, ErrorCodes, Pairs, Reading, Row, fetch_streamed, keys

_log = logging.getLogger(__name__)


class GenericOdbc(Dialect):
    """The fallback dialect; ``known`` gives the registered dialects (read when asked, not at creation)."""

    name = "odbc"
    odbc_keys: Mapping[str | None, frozenset[str]] = {
        "freetds": keys("server servername port database tds_version clientcharset encryption"),
        None: keys("server port database"),
    }
    refused_odbc_keys: Mapping[str, str] = {
        "filedsn": "it reads further keys from a file the exporter cannot check",
        "dsn": "a DSN takes its settings from odbc.ini (or the Windows registry), which may hold keys that run SQL "
               "on every connect (ConnSettings, InitStmt) and which the exporter cannot check; without a Driver= "
               "key the exporter cannot even harden the session. Write the keys out: Driver={...};Server=...;"
               "Database=...",
    }

    def __init__(self, known: Callable[[], Sequence[Dialect]]) -> None:
        self._known = known

    def drives(self, driver: str) -> bool:
        return True

    def key_family(self, driver: str) -> str | None:
        return "freetds" if "freetds" in driver or "tdsodbc" in driver else None

    def check_odbc_value(self, key: str, value: str) -> None:
        pass  # no allowed key takes a value that could change the session

    def harden(self, pairs: Pairs, *, query_timeout: float, connect_timeout: float) -> Pairs:
        return list(pairs)  # no known key to add

    def start_session(
        self, connection: Any, query_timeout: float, driver_error: type[Exception], database: str
    ) -> None:
        try:
            connection.timeout = math.ceil(query_timeout)  # query timeout, where the driver supports it
        except driver_error:
            _log.debug("database %r: driver has no query timeout; relying on cancel", database)

    @property
    def error_codes(self) -> ErrorCodes:
        return reduce(or_, (dialect.error_codes for dialect in self._known()), ErrorCodes())

    def fetch_head(
        self, cursor: Any, sql: str, params: tuple[object, ...], limit: int, driver_error: type[Exception]
    ) -> list[Row]:
        return fetch_streamed(cursor, sql, params, limit)

    @property
    def readings(self) -> tuple[Reading, ...]:
        """Every reading of every known dialect: a statement accepted here is accepted by any server."""
        return tuple(reading for dialect in self._known() for reading in dialect.readings)

    @property
    def side_effect_functions(self) -> frozenset[str]:
        return frozenset().union(*(dialect.side_effect_functions for dialect in self._known()))
