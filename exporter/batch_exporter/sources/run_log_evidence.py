"""Log evidence about the latest run: the pattern matches its logs gained while it was in progress.

A run that the table calls a success while its log gained error lines is a success nobody should
trust; this source gives the alert rules the count, from what the runs and log scan sources already
read (no database). With a state folder it keeps the latest run's counts in a small file of its
own, so that a restart does not wipe the evidence of a finished run nobody has looked at yet."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, NonNegativeInt

from ..masking import mask_digits
from ..runsummary import LatestRun, RunRow
from ..snapshot import SampleBuilder, Snapshot
from ..tailing.state import evidence_file_name, read_model, write_atomically
from .errors import SourceError

log = logging.getLogger(__name__)

# a run in one of these states with no end has not ended: its window reaches to now
_NOT_ENDED = ("running", "queued", "unknown")
# runs without an end in the table whose first sighting as finished is remembered
SEEN_FINISHED_RUNS = 64
# Run tables often keep whole seconds: a recorded end may be up to this much before the true one.
END_PRECISION = 1.0
KIND: Final = "batch-exporter/evidence"


class MatchReader(Protocol):
    """What the evidence needs of a log scan (sources.logscan.LogScanSource)."""

    @property
    def patterns(self) -> tuple[str, ...]: ...
    @property
    def read_until(self) -> float | None: ...
    def matches_between(self, pattern: str, start: float, end: float) -> int: ...
    def first_read_after(self, moment: float) -> float | None: ...


@dataclass(frozen=True)
class WatchedLog:
    name: str  # the log's name under batches.<batch>.logs
    scan: MatchReader
    interval: float  # the log's poll interval: lines written just after the run's end still count within it


@dataclass
class _Tally:
    """One log's counts for the latest run: the matches read by polls at times in (start, through]."""

    start: float
    through: float
    counts: dict[str, int] = field(default_factory=dict)
    closed: tuple[float, float] | None = None  # (the run's end, the last read time of its window)

    def add(self, scan: MatchReader, start: float, end: float, sign: int = 1) -> None:
        if end <= start:
            return
        for pattern in scan.patterns:
            count = self.counts.get(pattern, 0) + sign * scan.matches_between(pattern, start, end)
            self.counts[pattern] = max(0, count)


class RunLogEvidenceSource:
    """Exports, per log and pattern, the matches read while the latest run was in progress: by polls
    that ended after its start, up to its end plus the log's poll interval, and at least up to the end of
    the first poll that began END_PRECISION after its end (that poll read every line written before the
    end, however late a busy machine ran it, even when the table cut the end to a whole second). While
    the run runs, or no such poll has begun yet, up to now.

    Matches are placed by when the exporter read them, so lines written just before the start count
    when read after it; lines read late (the first read of a file, after a restart) never count (see
    LogScanSource). When another run ended at or before the latest one's start, the window starts one
    log poll interval after that end at the earliest: the previous run's last lines, read after the
    retry began, are not the retry's.

    Counts are added up poll by poll, so they do not fade when the timeline drops old entries (a run
    of more than 48 hours, a weekly batch); they go down only when the window turns out shorter than
    what was counted (the runs source saw the end late). A finished run whose table keeps no end ends
    when this source first saw it finished. Nothing is exported before the runs source has seen a run
    with a start.

    With `state_dir` the counts of the latest run are saved after every poll that changed them and
    restored at the next start: a restart adds what it reads afterwards to the saved counts."""

    def __init__(self, batch: str, latest_run: Callable[[], LatestRun | None], logs: Sequence[WatchedLog],
                 clock: Callable[[], float] = time.time, state_dir: Path | None = None) -> None:
        self.name = f"evidence:{batch}"
        self._batch = batch
        self._latest_run = latest_run
        self._logs = tuple(logs)
        self._clock = clock
        self._lock = threading.Lock()  # poll() may be called from several threads: the tallies are shared
        self._run: tuple[str, float] | None = None  # (run id, start) the tallies are of
        self._tallies: dict[str, _Tally] = {}  # by log name
        self._seen_finished: OrderedDict[tuple[str, float], float] = OrderedDict()
        self._state_path = Path(state_dir) / evidence_file_name(batch) if state_dir is not None else None
        self._saved: dict[str, object] | None = None  # what the state file holds, less the read times
        self._restore()

    def poll(self) -> Snapshot:
        """Count once; raises SourceError('state') carrying the counts when the state file cannot be written."""
        with self._lock:
            out = SampleBuilder()
            latest = self._latest_run()
            started = latest.run.started_at if latest is not None else None
            if latest is None or started is None:
                return out.build(self.name)  # the tallies stay: the runs source may not have polled yet
            run = latest.run
            key = (run.run_id, started.timestamp())
            if key != self._run:
                self._run, self._tallies = key, {}
            end = self._end(run, key)
            for watched in self._logs:
                tally = self._count(watched, self._window_start(latest, key[1], watched.interval), end)
                for pattern in watched.scan.patterns:
                    out.add("batch_run_latest_log_matches", tally.counts.get(pattern, 0), batch=self._batch,
                            log=watched.name, pattern=pattern)
            snapshot = out.build(self.name)
            self._save(key, snapshot)
            return snapshot

    def _end(self, run: RunRow, key: tuple[str, float]) -> float | None:
        """When the run ended: its end, or for a finished run without one, when it was first seen finished;
        None while it runs."""
        if run.ended_at is not None:
            return run.ended_at.timestamp()
        if run.status in _NOT_ENDED:
            return None
        seen = self._seen_finished.get(key)
        if seen is None:
            seen = self._seen_finished[key] = self._clock()
            while len(self._seen_finished) > SEEN_FINISHED_RUNS:
                self._seen_finished.popitem(last=False)
        return seen

    @staticmethod
    def _window_start(latest: LatestRun, started: float, interval: float) -> float:
        previous = latest.previous_end.timestamp() if latest.previous_end is not None else None
        if previous is None or previous > started:
            return started
        return max(started, previous + interval)

    def _count(self, watched: WatchedLog, start: float, end: float | None) -> _Tally:
        """One log's tally, moved to the window (start, end + interval] (end None: open) and brought up to
        what the log scan has read; each step asks the timeline only about the reads it adds or takes
        back, which are recent."""
        scan = watched.scan
        # read before counting: a poll recorded up to `read_until` has put every match it read in already
        read_until = scan.read_until
        tally = self._tallies.get(watched.name)
        if tally is None:
            tally = self._tallies[watched.name] = _Tally(start, start)
        if start > tally.start:  # the previous run's end became known late, or the log's interval changed
            tally.add(scan, tally.start, min(start, tally.through), -1)
            tally.through = max(tally.through, start)
        elif start < tally.start:
            tally.add(scan, start, tally.start)
        tally.start = start
        limit = self._window_end(tally, watched, end)
        if limit is not None and limit < tally.through:
            # the run ended before reads already counted for it (seen running after its end): take them back
            cut = max(limit, tally.start)
            tally.add(scan, cut, tally.through, -1)
            tally.through = cut
        if read_until is not None:
            upto = read_until if limit is None else min(read_until, limit)
            tally.add(scan, tally.through, upto)
            tally.through = max(tally.through, upto)
        return tally

    @staticmethod
    def _window_end(tally: _Tally, watched: WatchedLog, end: float | None) -> float | None:
        """The latest read time that belongs to the run, None while it is open. Kept once known: the
        log scan forgets old polls, and a later answer would let lines written after the run count."""
        if end is None:
            return None
        if tally.closed is not None and tally.closed[0] == end:
            return tally.closed[1]
        first = watched.scan.first_read_after(end + END_PRECISION)
        if first is None:
            return None  # every poll so far began before the end: all it read was written during the run
        tally.closed = (end, max(end + watched.interval, first))
        return tally.closed[1]

    # --- the state file -------------------------------------------------------------------------

    def _record(self, key: tuple[str, float]) -> EvidenceState:
        names = {w.name: w.scan.patterns for w in self._logs}
        return EvidenceState(
            batch=self._batch, run_id=key[0], started_at=key[1], seen_finished=self._seen_finished.get(key),
            logs={name: LogTally(start=t.start, through=t.through,
                                 counts={p: c for p, c in t.counts.items() if p in names[name]})
                  for name, t in self._tallies.items() if name in names})

    def _save(self, key: tuple[str, float], snapshot: Snapshot) -> None:
        if self._state_path is None:
            return
        record = self._record(key)
        if _significant(record) == self._saved:
            return  # only the read times moved: the saved counts still hold up to their own read time
        try:
            write_atomically(self._state_path, record.model_dump_json().encode("utf-8"))
        except OSError as exc:
            raise SourceError("state", f"cannot write evidence state file {self._state_path}: "
                                       f"{exc.strerror or exc}", snapshot=snapshot) from None
        self._saved = _significant(record)

    def _restore(self) -> None:
        if self._state_path is None:
            return
        try:
            record = load_evidence(self._state_path)
        except StateFileError as exc:
            log.warning("%s: %s; the evidence of the latest run starts again from what is read from now on",
                        self.name, exc)
            return
        if record is None:
            return
        if record.batch != self._batch:
            log.warning("%s: evidence state file %s was written for batch %r; ignoring it", self.name,
                        self._state_path, record.batch)
            return
        key = (record.run_id, record.started_at)
        patterns = {w.name: w.scan.patterns for w in self._logs}
        self._run = key
        self._tallies = {name: _Tally(t.start, t.through, {p: c for p, c in t.counts.items() if p in patterns[name]})
                         for name, t in record.logs.items() if name in patterns}
        if record.seen_finished is not None:
            self._seen_finished[key] = record.seen_finished
        self._saved = _significant(record)
        log.info("%s: restored the log evidence of run %s from %s", self.name, mask_digits(record.run_id),
                 self._state_path)


class StateFileError(Exception):
    """An evidence state file exists but is unusable; the message says why, never what it holds."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogTally(_Record):
    start: float  # the window's start (exclusive)
    through: float  # the counts are of the matches read up to this time
    counts: dict[str, NonNegativeInt]  # by pattern name


class EvidenceState(_Record):
    """The latest run's counts, per log and pattern; no log text."""

    kind: Literal["batch-exporter/evidence"] = KIND
    version: Literal[1] = 1
    batch: str
    run_id: str
    started_at: float
    seen_finished: float | None = None  # when a run whose table keeps no end was first seen finished
    logs: dict[str, LogTally]


def _significant(record: EvidenceState) -> dict[str, object]:
    """The record less its read times: a change of these alone is not worth a write."""
    return record.model_dump(exclude={"logs": {"__all__": {"through"}}})


def load_evidence(path: Path) -> EvidenceState | None:
    """The saved evidence, or None when there is none; StateFileError when one exists but is unusable."""
    return read_model(path, EvidenceState, "evidence state file", "is not valid", StateFileError)

