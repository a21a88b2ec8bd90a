"""The one error type a source's poll may raise."""
from __future__ import annotations


class SourceError(Exception):
    """A poll failed. `reason` is a small fixed word used as a metric label ('connect', 'timeout',
    'query', 'io', 'state', ...); the message is for the exporter's own log and never holds row data,
    log text or secrets."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
