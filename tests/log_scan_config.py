"""The log settings a LogScanSource reads (the fields of config's log section it uses), for tests that
build one without a configuration file."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogCfg:
    path: str
    patterns: dict[str, str]
    encoding: str = "utf-8"
    max_line_bytes: int = 1024 * 1024
    size_limit: int = 4 * 1024**3
    max_path_series: int = 20
