"""The one error type a source's poll may raise."""
from __future__ import annotations

from collections.abc import Sequence

from ..snapshot import Snapshot


class SourceError(Exception):
    """A poll failed. `reason` is a small fixed word used as a metric label ('connect', 'timeout',
    'query', 'io', 'state', ...); the message is for the exporter's own log and never holds row data,
    log text or secrets.

    `snapshot` is what the poll could still measure when only part of it failed (one log file of
    several could not be read): it replaces the source's previous snapshot although the source is
    reported down. None means nothing trustworthy was measured; the previous snapshot stays."""

    def __init__(self, reason: str, message: str, snapshot: Snapshot | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.snapshot = snapshot


def join_problems(problems: Sequence[str], shown: int = 3) -> str:
    """The first `shown` problems joined, and how many more there were."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f" (and {more} more)" if more > 0 else "")
