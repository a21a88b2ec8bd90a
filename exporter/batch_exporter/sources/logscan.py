"""Lines and pattern hits of a batch's log, read incrementally and kept across restarts."""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections.abc import Callable
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
    save,
    state_file_name,
)
from .errors import SourceError, join_problems
from .logfiles import LogConfigLike, follows_symlinks

log = logging.getLogger(__name__)


class LogScanSource:
    """Counts lines and configured patterns in the bytes appended since the last poll.

    Counters are cumulative. With a `state_dir` (the exporter always gives one, see `state_dir.py`)
    they are saved together with the read positions after every poll that read something, and a
    restart resumes from there; without one, every start reads the current files from their
    beginning. A saved state that is damaged or belongs to another log is reported as a warning and
    ignored.

    On a reload the old source hands over to the new one: `retire` stops it reading and returns its
    state, which the new source takes as `handover` instead of the state file (that file may lag
    the old source's counters, and the old source must not count on past the state it handed over).

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
        handover: LogState | None = None,
    ) -> None:
        self.name = f"logscan:{batch}/{log_name}"
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
        totals, files = self._restore(handover)
        self._follower = FileSetFollower(log.path, self._patterns, totals, files, follows_symlinks(log))
        self._snapshot: Snapshot | None = None
        self._unsaved = False
        self._lock = threading.Lock()  # a poll and a hand-over never overlap
        self._retired = False

    def retire(self) -> LogState | None:
        """Stop reading (later polls return the last counts unchanged) and return the state to hand
        over: counters and positions of the last completed poll; None before any history (no poll
        yet and nothing restored), when the successor starts as this source did."""
        with self._lock:
            self._retired = True
            return self._state() if self._follower.has_history else None

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
        try:
            result = self._follower.poll()
        except OSError as exc:
            raise SourceError(
                "io",
                f"log {self._log_name}: cannot list {self._path}: {exc.strerror or exc}",
                snapshot=self._snapshot or self._build(),  # nothing read: the counts are still true
            ) from None
        now = self._clock()
        for index, name in enumerate(self._patterns.names):
            if totals.counts.matches[index] > before[index]:
                self._last_match[name] = now
        if result.changed or self._snapshot is None:
            self._snapshot = self._build()
            self._unsaved = self._state_path is not None
        problems = list(result.errors)
        reason = "io"
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
        """Write counters and positions as one state file; raises OSError."""
        assert self._state_path is not None
        save(self._state_path, self._state())
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
