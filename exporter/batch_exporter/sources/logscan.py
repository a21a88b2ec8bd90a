"""Lines and pattern hits of a batch's log, read incrementally and kept across restarts."""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..snapshot import SampleBuilder, Snapshot
from ..tailing.encoding import resolve
from ..tailing.follower import FileSetFollower, Totals, TrackedFile
from ..tailing.identity import Fingerprint, Identity
from ..tailing.scanner import Counts, PatternSet
from ..tailing.state import (
    FileRecord,
    LogState,
    PatternRecord,
    StateError,
    decode_path,
    encode_path,
    load,
    state_file_name,
)
from ..tailing.state_writer import WRITER, StateWriter
from .errors import SourceError, join_problems
from .logfiles import LogConfigLike, follows_symlinks

log = logging.getLogger(__name__)

TIMELINE_SECONDS = 48 * 3600.0
# per pattern: 11 hours of the default 10-second poll finding matches every time, ~0.5 MB at most
TIMELINE_ENTRIES = 4096
# (began, ended) of the latest polls: 42 minutes of the default 10-second poll
POLL_HISTORY = 256


class MatchTimeline:
    """When matches were read: per pattern, (poll time, matches that poll read) of each poll that read
    some, oldest first. Bounded: an entry more than TIMELINE_SECONDS older than the latest poll no
    longer counts (it is dropped at the next poll with matches), and past TIMELINE_ENTRIES a pattern's
    oldest entry is dropped; a window reaching back that far counts less. It also keeps when each of the
    latest POLL_HISTORY polls began and ended, to tell which poll was the first to begin after a given
    time (that poll read every line written before it). Thread-safe (its own lock: the log scan holds
    its poll lock while it reads files)."""

    def __init__(self, max_age: float = TIMELINE_SECONDS, max_entries: int = TIMELINE_ENTRIES) -> None:
        self._max_age = max_age
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, deque[tuple[float, int]]] = {}
        self._polls: deque[tuple[float, float]] = deque(maxlen=POLL_HISTORY)
        self._read_until: float | None = None

    def record(self, at: float, grown: Mapping[str, int], began: float | None = None) -> None:
        """A poll that began at `began` (default `at`) and ended at `at`, having read `grown` more
        matches per pattern (patterns without any left out)."""
        with self._lock:
            self._polls.append((at if began is None else min(began, at), at))
            if not grown:  # the idle poll, most polls: the entries are as they were
                self._read_until = at
                return
            for pattern, added in grown.items():
                self._entries.setdefault(pattern, deque(maxlen=self._max_entries)).append((at, added))
            oldest = at - self._max_age
            for entries in self._entries.values():
                while entries and entries[0][0] < oldest:
                    entries.popleft()
            self._read_until = at  # after the entries: a reader seeing it sees them

    def between(self, pattern: str, start: float, end: float) -> int:
        """Matches of `pattern` read by polls at times in (start, end]."""
        with self._lock:
            # idle polls do not prune: what they would have dropped is left out here
            oldest = self._read_until - self._max_age if self._read_until is not None else float("-inf")
            return sum(added for at, added in self._entries.get(pattern, ()) if start < at <= end and at >= oldest)

    def first_read_after(self, moment: float) -> float | None:
        """When the first poll that began at or after `moment` ended: by then every line written before
        `moment` has been read. None while no recorded poll began that late. When `moment` is older
        than every poll kept, the oldest kept one answers (a later answer than the true one)."""
        with self._lock:
            for began, ended in self._polls:
                if began >= moment:
                    return ended
            return None

    @property
    def read_until(self) -> float | None:
        """The time of the latest poll recorded (with or without matches); None before one."""
        with self._lock:
            return self._read_until

    def copy(self, patterns: Iterable[str]) -> MatchTimeline:
        """A copy of the entries of `patterns` (those whose counts carry on), for a successor."""
        twin = MatchTimeline(self._max_age, self._max_entries)
        with self._lock:
            twin._read_until = self._read_until
            twin._polls.extend(self._polls)
            for pattern in patterns:
                if pattern in self._entries:
                    twin._entries[pattern] = deque(self._entries[pattern], maxlen=self._max_entries)
        return twin


@dataclass(frozen=True)
class LogHandover:
    """What a retired log scan gives its successor on a reload: counters and positions, and a copy of
    its match timeline (a copy: should the reload fail, the old source reads on into its own)."""

    state: LogState
    timeline: MatchTimeline


class LogScanSource:
    """Counts lines and configured patterns in the bytes appended since the last poll.

    Counters are cumulative. With a `state_dir` (the exporter always gives one, see `state_dir.py`)
    they are saved together with the read positions after every poll that read something (in one
    record, by a background writer that writes the latest at most once a second, see
    `tailing/state_writer.py`), and a restart resumes from there; without one, every start reads
    the current files from their beginning. A saved state that is damaged or belongs to another
    log is reported as a warning and ignored.

    On a reload the old source hands over to the new one: `retire` stops it reading and returns its
    state, which the new source takes as `handover` instead of the state file (that file may lag
    the old source's counters, and the old source must not count on past the state it handed over).

    It also keeps a `MatchTimeline` of when matches were read, for `matches_between`. The first poll
    of a source started from a state file or from nothing reads lines written at unknown times (while
    the exporter was down, or a whole file): that poll's matches are counted but kept out of the
    timeline. A source taking a hand-over reads only bytes written since the old one's last poll, and
    carries its timeline on.

    The constructor raises ValueError for an encoding whose lines cannot be found in raw bytes
    (utf-7, iso-2022-*, EBCDIC); `tailing.encoding.resolve` gives the same verdict for config checks.
    """

    def __init__(
        self,
        batch: str,
        log_name: str,
        log: LogConfigLike,
        state_dir: Path | None,
        clock: Callable[[], float] = time.time,
        handover: LogHandover | None = None,
        writer: StateWriter = WRITER,
    ) -> None:
        self.name = f"logscan:{batch}/{log_name}"
        self._writer = writer
        self._saved_once = False  # the first save is written by the poll itself: its errors show at once
        self._batch = batch
        self._log_name = log_name
        self._path = log.path
        self._clock = clock
        self._encoding = codecs.lookup(log.encoding).name
        self._patterns = PatternSet(dict(log.patterns), resolve(log.encoding), log.max_line_bytes)
        self._state_path = (
            Path(state_dir) / state_file_name(batch, log_name) if state_dir is not None else None
        )
        self._last_match: dict[str, float] = {}
        self._continued: frozenset[str] = frozenset()  # patterns whose restored counts carry on
        totals, files = self._restore(handover.state if handover is not None else None)
        self._follower = FileSetFollower(log.path, self._patterns, totals, files, follows_symlinks(log))
        if handover is not None and files is not None:  # taken (a hand-over of this very log)
            self._timeline = handover.timeline.copy(self._continued)
            self._backlog = False
        else:
            self._timeline = MatchTimeline()
            self._backlog = True  # the first poll reads lines written at unknown times
        self._snapshot: Snapshot | None = None
        self._unsaved = False
        self._lock = threading.Lock()  # a poll and a hand-over never overlap
        self._retired = False

    def retire(self) -> LogHandover | None:
        """Stop reading (later polls return the last counts unchanged) and return the state to hand
        over: counters and positions of the last completed poll, and the match timeline; None before
        any history (no poll yet and nothing restored), when the successor starts as this source did."""
        with self._lock:
            self._retired = True
            if not self._follower.has_history:
                return None
            return LogHandover(self._state(), self._timeline.copy(self._patterns.names))

    @property
    def log_name(self) -> str:
        """The log's name under batches.<batch>.logs."""
        return self._log_name

    @property
    def patterns(self) -> tuple[str, ...]:
        """The names of the log's patterns."""
        return self._patterns.names

    def matches_between(self, pattern: str, start: float, end: float) -> int:
        """Matches of `pattern` read by polls at times in (start, end] (clock seconds); see MatchTimeline
        for what it no longer holds. Safe to call from any thread, during a poll too."""
        return self._timeline.between(pattern, start, end)

    def first_read_after(self, moment: float) -> float | None:
        """When the first poll that began at or after `moment` (clock seconds) ended; None before one."""
        return self._timeline.first_read_after(moment)

    @property
    def read_until(self) -> float | None:
        """The time of the latest completed poll (nothing read later can fall before it); None before one."""
        return self._timeline.read_until

    def resume(self) -> None:
        """Read again after `retire`, when the hand-over did not happen (the reload failed)."""
        with self._lock:
            self._retired = False

    def poll(self) -> Snapshot:
        """Read new bytes once. Raises SourceError('io') when files cannot be listed or read, and
        SourceError('state') when the state file cannot be written; either carries the snapshot of
        what could be counted, so the other files' counts go on being exported."""
        with self._lock:
            if self._retired:
                return self._snapshot or self._build()
            return self._poll()

    def _poll(self) -> Snapshot:
        totals = self._follower.totals
        before = list(totals.counts.matches)
        began = time.monotonic()
        try:
            result = self._follower.poll()
        except OSError as exc:
            raise SourceError(
                "io",
                f"log {self._log_name}: cannot list {self._path}: {exc.strerror or exc}",
                snapshot=self._snapshot or self._build(),  # nothing read: the counts are still true
            ) from None
        now = self._clock()
        began = now - (time.monotonic() - began)  # on the injected clock, which is read once per poll
        grown: dict[str, int] = {}
        for index, name in enumerate(self._patterns.names):
            if totals.counts.matches[index] > before[index]:
                self._last_match[name] = now
                grown[name] = totals.counts.matches[index] - before[index]
        self._timeline.record(now, {} if self._backlog else grown, began)
        self._backlog = False
        if result.changed or self._snapshot is None:
            self._snapshot = self._build()
            self._unsaved = self._state_path is not None
        problems = list(result.errors)
        reason = "io"
        if self._state_path is not None and self._writer.failure(self._state_path) is not None:
            self._unsaved = True  # the background write failed: write again, here
        if self._unsaved:
            try:
                self._save()
            except OSError as exc:
                problems.insert(0, f"cannot write state file {self._state_path}: {exc.strerror or exc}")
                reason = "state"
        if problems:
            raise SourceError(reason, f"log {self._log_name}: {join_problems(problems)}", snapshot=self._snapshot)
        return self._snapshot

    def _build(self) -> Snapshot:
        totals = self._follower.totals
        counts = totals.counts
        labels = {"batch": self._batch, "log": self._log_name}
        builder = SampleBuilder()
        builder.add("batch_log_lines_total", counts.lines, **labels)
        for index, name in enumerate(self._patterns.names):
            builder.add("batch_log_matches_total", counts.matches[index], pattern=name, **labels)
        for name in self._patterns.names:
            if name in self._last_match:
                builder.add(
                    "batch_log_last_match_timestamp_seconds", self._last_match[name], pattern=name, **labels
                )
        builder.add("batch_log_rotations_total", totals.rotations, **labels)
        builder.add("batch_log_truncations_total", totals.truncations, **labels)
        builder.add("batch_log_oversized_lines_total", counts.oversized, **labels)
        builder.add("batch_log_read_bytes_total", totals.read_bytes, **labels)
        builder.add("batch_log_unread_bytes", self._follower.unread_bytes, **labels)
        return builder.build(self.name)

    def _restore(self, handover: LogState | None) -> tuple[Totals, list[TrackedFile] | None]:
        fresh = Totals(counts=self._patterns.new_counts())
        state = handover
        if state is None and self._state_path is not None:
            self._writer.flush(self._state_path)  # a predecessor in this process may have left one waiting
            try:
                state = load(self._state_path)
            except StateError as exc:
                log.warning("%s: %s; reading the log files again from their start", self.name, exc)
                return fresh, None
        if state is None:
            return fresh, None
        if (state.batch, state.log, state.path, state.encoding) != (
            self._batch,
            self._log_name,
            self._path,
            self._encoding,
        ):
            log.warning(
                "%s: state file %s was written for another log (batch %r, log %r, path %r, encoding %r); "
                "ignoring it and reading the log files again from their start",
                self.name,
                self._state_path,
                state.batch,
                state.log,
                state.path,
                state.encoding,
            )
            return fresh, None
        counts = Counts(lines=state.lines, oversized=state.oversized, matches=[])
        kept: dict[str, int] = {}  # patterns whose saved counts carry on, by name: their index
        for index, name in enumerate(self._patterns.names):
            record = state.patterns.get(name)
            if record is not None and record.regex == self._patterns.regexes[name]:
                kept[name] = index
                counts.matches.append(record.matches)
                if record.last_match is not None:
                    self._last_match[name] = record.last_match
            else:
                counts.matches.append(0)
                if record is not None:
                    log.info("%s: pattern %s changed; its count starts again from 0", self.name, name)
        self._continued = frozenset(kept)
        totals = Totals(
            counts=counts,
            rotations=state.rotations,
            truncations=state.truncations,
            read_bytes=state.read_bytes,
        )
        files = [
            TrackedFile(
                path=decode_path(r),
                identity=Identity(r.device, r.number),
                offset=r.offset,
                skipping=r.skipping,
                size=r.size,
                mtime_ns=r.mtime_ns,
                head=Fingerprint(r.head_length, r.head_digest),
                held_length=r.held_length,
                held_matches=tuple(kept[name] for name in r.held_matches if name in kept),
            )
            for r in state.files
        ]
        return totals, files

    def _save(self) -> None:
        """Save counters and positions as one record. The first save, and one after a failed write,
        is written here (raises OSError); the others go to the background writer, which writes the
        latest within its interval."""
        assert self._state_path is not None
        data = self._state().model_dump_json().encode("utf-8")
        if self._saved_once and self._writer.failure(self._state_path) is None:
            self._writer.submit(self._state_path, data)
        else:
            self._writer.write_now(self._state_path, data)
            self._saved_once = True
        self._unsaved = False

    def _state(self) -> LogState:
        totals = self._follower.totals
        counts = totals.counts
        return LogState(
            batch=self._batch,
            log=self._log_name,
            path=self._path,
            encoding=self._encoding,
            lines=counts.lines,
            oversized=counts.oversized,
            rotations=totals.rotations,
            truncations=totals.truncations,
            read_bytes=totals.read_bytes,
            patterns={
                name: PatternRecord(
                    regex=self._patterns.regexes[name],
                    matches=counts.matches[index],
                    last_match=self._last_match.get(name),
                )
                for index, name in enumerate(self._patterns.names)
            },
            files=[self._file_record(f) for f in self._follower.files],
        )

    def _file_record(self, f: TrackedFile) -> FileRecord:
        held_length, held_matches = self._follower.held_line(f)
        path, path_bytes = encode_path(f.path)
        return FileRecord(
            path=path,
            path_bytes=path_bytes,
            device=f.identity.device,
            number=f.identity.number,
            offset=f.offset,
            skipping=f.skipping,
            size=f.size if f.size >= 0 else 0,
            mtime_ns=f.mtime_ns,
            head_length=f.head.length,
            head_digest=f.head.digest,
            held_length=held_length,
            held_matches=tuple(self._patterns.names[index] for index in held_matches),
        )
