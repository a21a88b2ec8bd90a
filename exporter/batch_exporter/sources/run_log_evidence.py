"""Log evidence about the latest run: the pattern matches its logs gained while it was in progress.

A run that the table calls a success while its log gained error lines is a success nobody should
trust; this source gives the alert rules the count, from what the runs and log scan sources already
read (no database, no file of its own)."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..runsummary import RunRow
from ..snapshot import SampleBuilder, Snapshot

# a run in one of these states with no end has not ended: its window reaches to now
_NOT_ENDED = ("running", "queued", "unknown")


class MatchReader(Protocol):
    """What the evidence needs of a log scan (sources.logscan.LogScanSource)."""

    @property
    def patterns(self) -> tuple[str, ...]: ...
    @property
    def read_until(self) -> float | None: ...
    def matches_between(self, pattern: str, start: float, end: float) -> int: ...


@dataclass(frozen=True)
class WatchedLog:
    name: str  # the log's name under batches.<batch>.logs
    scan: MatchReader
    interval: float  # the log's poll interval: lines written just before the run's end are read within it


class RunLogEvidenceSource:
    """Exports, per log and pattern, the matches read while the latest run was in progress: by polls
    after its start and up to its end plus the log's poll interval (up to now while it runs).

    Matches are placed by when the exporter read them, so lines written just before the start count
    when read after it; lines read late (the first read of a file, after a restart) never count (see
    LogScanSource). Nothing is exported before the runs source has seen a run with a start, nor for a
    finished run without an end (no window can be drawn). Once a poll of the log has read past a
    finished run's window, its counts are kept for as long as it stays the latest run, so that they do
    not fade when the timeline drops old entries (a weekly batch)."""

    def __init__(self, batch: str, latest_run: Callable[[], RunRow | None], logs: Sequence[WatchedLog],
                 clock: Callable[[], float] = time.time) -> None:
        self.name = f"evidence:{batch}"
        self._batch = batch
        self._latest_run = latest_run
        self._logs = tuple(logs)
        self._clock = clock
        # by log name: (the run as it was when its window closed, counts by pattern)
        self._final: dict[str, tuple[RunRow, dict[str, int]]] = {}

    def poll(self) -> Snapshot:
        out = SampleBuilder()
        run = self._latest_run()
        if run is None or run.started_at is None or (run.ended_at is None and run.status not in _NOT_ENDED):
            self._final.clear()
            return out.build(self.name)
        now = self._clock()
        for watched in self._logs:
            for pattern, count in self._counts(watched, run, run.started_at, now).items():
                out.add("batch_run_latest_log_matches", count, batch=self._batch, log=watched.name,
                        pattern=pattern)
        return out.build(self.name)

    def _counts(self, watched: WatchedLog, run: RunRow, started: datetime, now: float) -> dict[str, int]:
        final = self._final.get(watched.name)
        if final is not None and final[0] == run:
            return final[1]
        end = run.ended_at.timestamp() + watched.interval if run.ended_at is not None else now
        # read before counting: a poll recorded after `end` means every match up to `end` is in already
        read_until = watched.scan.read_until
        counts = {pattern: watched.scan.matches_between(pattern, started.timestamp(), end)
                  for pattern in watched.scan.patterns}
        if run.ended_at is not None and read_until is not None and read_until > end:
            self._final[watched.name] = (run, counts)
        return counts
