"""Following one configured log (a path or a glob) across appends, rotations and truncations.

Files are tracked by identity (device, file number), not by name, so a file renamed within the
set keeps its read position. At each poll:

- a file whose size and modification time are unchanged (and older than a time stamp tick) costs
  one `stat` and nothing else;
- a tracked file that left the set was renamed away or deleted: it is looked up by identity in
  its directory and read to its end when it still exists (rotation by rename), then its held last
  line is counted;
- a file new to the set is read from its start and, after the first poll, counts as a rotation;
- a tracked file that shrank below the read position (copytruncate) or whose first bytes changed
  (truncated and written again past the old position, or a new file that got a reused inode) counts
  as a truncation and is read again from its start.

An unterminated last line is held in memory (at most `max_line_bytes`) until its newline arrives or
its file ends; the saved position is the start of that line, so a restart reads it again.
"""

from __future__ import annotations

import io
import os
import stat
import time
from dataclasses import dataclass, field

from .identity import HEAD_BYTES, Fingerprint, Identity, identity_of, open_shared, read_head
from .paths import expand
from .scanner import Counts, LineScanner, PatternSet

CHUNK_BYTES = 2 * 1024 * 1024
RACY_NS = 2_000_000_000  # the coarsest file time stamps (FAT) tick every 2 s

_EMPTY_HEAD = Fingerprint.of(b"")


@dataclass
class Totals:
    """Cumulative counters of one log."""

    counts: Counts
    rotations: int = 0
    truncations: int = 0
    read_bytes: int = 0


@dataclass
class TrackedFile:
    """Where reading of one file stands."""

    path: str
    identity: Identity
    offset: int = 0  # committed position: start of the held unterminated line (what a restart resumes from)
    skipping: bool = False  # inside an oversized line that is already counted
    size: int = -1  # size and modification time when last read: both unchanged means nothing to do
    mtime_ns: int = -1
    checked_ns: int = 0  # wall clock when size and modification time were last taken (memory only)
    head: Fingerprint = _EMPTY_HEAD
    partial: bytes = b""  # bytes after `offset` already read: memory only, never saved
    scanner: LineScanner | None = field(default=None, repr=False)

    @property
    def read_pos(self) -> int:
        return self.offset + len(self.partial)


@dataclass(frozen=True)
class PollResult:
    changed: bool  # anything read or any file seen to come, go or move
    errors: tuple[str, ...]  # files that could not be read (the others were)


class FileSetFollower:
    """The files one configured path or glob names, followed from poll to poll."""

    def __init__(
        self, path: str, patterns: PatternSet, totals: Totals, files: list[TrackedFile] | None = None
    ) -> None:
        """`files` comes from a saved state; None means no history, so the files present at the
        first poll are read from their start without counting rotations."""
        self.path = path
        self.totals = totals
        self.unread_bytes = 0
        self._patterns = patterns
        self._files: dict[Identity, TrackedFile] = {f.identity: f for f in files or []}
        self._has_history = files is not None
        self._buffer: bytearray | None = None

    @property
    def files(self) -> list[TrackedFile]:
        return list(self._files.values())

    def poll(self) -> PollResult:
        """Read what was written since the last poll. Raises OSError only when the directory of a
        glob cannot be listed; a file that cannot be read is reported in the result."""
        present: dict[Identity, tuple[str, os.stat_result]] = {}
        errors: list[str] = []
        for path in expand(self.path):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                errors.append(f"cannot stat {path}: {exc.strerror or exc}")
                continue
            if stat.S_ISREG(st.st_mode):
                present.setdefault(identity_of(st), (path, st))

        changed = False
        for identity in [i for i in self._files if i not in present]:
            changed = True
            gone = self._files.pop(identity)
            try:
                self._finish_moved(gone)
            except OSError as exc:
                errors.append(f"cannot finish reading {gone.path}: {exc.strerror or exc}")
                self._end_file(gone)

        unread = 0
        for identity, (path, st) in sorted(
            present.items(), key=lambda item: (item[1][1].st_mtime_ns, item[1][0])
        ):
            tracked = self._files.get(identity)
            if tracked is None:
                tracked = self._files[identity] = TrackedFile(path=path, identity=identity)
                if self._has_history:
                    self.totals.rotations += 1
                changed = True
            elif tracked.path != path:
                tracked.path = path
                changed = True
            if _unchanged(tracked, st):
                continue
            try:
                file_unread, file_changed = self._read(tracked, path)
                unread += file_unread
                changed = changed or file_changed
            except FileNotFoundError:
                continue  # gone since the listing: the next poll finishes it
            except OSError as exc:
                errors.append(f"cannot read {path}: {exc.strerror or exc}")
        self._has_history = True
        self.unread_bytes = unread
        return PollResult(changed=changed, errors=tuple(errors))

    def _read(self, tracked: TrackedFile, path: str) -> tuple[int, bool]:
        """Read a present file from its position to its current end; returns the bytes still
        unread and whether anything was read or found rewritten."""
        before = (tracked.offset, len(tracked.partial), tracked.skipping, self.totals.truncations)
        with open_shared(path) as f:
            st = os.fstat(f.fileno())
            if identity_of(st) != tracked.identity:
                return 0, False  # replaced between stat and open: the next poll sees the new file
            checked_ns = time.time_ns()
            size = st.st_size
            head = read_head(f, min(HEAD_BYTES, size))
            if size < tracked.read_pos or not _same_head(tracked.head, head):
                self._end_file(tracked)
                self.totals.truncations += 1
                tracked.offset, tracked.skipping = 0, False
            if tracked.offset == 0 and not tracked.skipping:
                self._start_file(tracked, head)
            elif tracked.scanner is None:  # resumed from a saved state
                tracked.scanner = self._patterns.scanner_for(head)
            self._scan(tracked, f, size)
            tracked.head = Fingerprint.of(head)
            tracked.size, tracked.mtime_ns, tracked.checked_ns = size, st.st_mtime_ns, checked_ns
            unread = max(0, os.fstat(f.fileno()).st_size - tracked.read_pos)
        after = (tracked.offset, len(tracked.partial), tracked.skipping, self.totals.truncations)
        return unread, after != before

    def _start_file(self, tracked: TrackedFile, head: bytes) -> None:
        """Nothing of the file is committed yet: (re)read it from its start, skipping a byte order mark."""
        tracked.partial = b""
        tracked.scanner = self._patterns.scanner_for(head)
        bom = tracked.scanner.encoding.bom
        if bom and head.startswith(bom):
            tracked.offset = len(bom)
            self.totals.read_bytes += len(bom)

    def _finish_moved(self, gone: TrackedFile) -> None:
        """A tracked file left the set: read what it gained since the last poll if it still exists
        under another name nearby (rotation by rename), then count its held last line."""
        moved = _locate(gone)
        if moved is not None:
            with open_shared(moved) as f:
                st = os.fstat(f.fileno())
                head = read_head(f, min(HEAD_BYTES, st.st_size))
                if (
                    identity_of(st) == gone.identity
                    and st.st_size >= gone.read_pos
                    and _same_head(gone.head, head)
                ):
                    if gone.scanner is None:
                        gone.scanner = self._patterns.scanner_for(head)
                    self._scan(gone, f, st.st_size)
        self._end_file(gone)

    def _end_file(self, tracked: TrackedFile) -> None:
        """The file will not grow any more (rotated, truncated, deleted): its unterminated last
        line is a line."""
        if tracked.partial:
            if not tracked.skipping and tracked.scanner is not None:
                tracked.scanner.count_tail(tracked.partial, self.totals.counts)
            self.totals.read_bytes += len(tracked.partial)
        tracked.offset = tracked.read_pos
        tracked.partial = b""

    def _scan(self, tracked: TrackedFile, f: io.FileIO, size: int) -> None:
        """Read from the file's position up to `size` in chunks, counting complete lines."""
        scanner = tracked.scanner
        assert scanner is not None
        enc = scanner.encoding
        unit = enc.unit
        limit = self._patterns.max_line_bytes
        counts = self.totals.counts
        buf = self._get_buffer()
        kept = len(tracked.partial)
        buf[:kept] = tracked.partial
        pos = tracked.read_pos
        f.seek(pos)
        with memoryview(buf) as view:
            while pos < size:
                n = f.readinto(view[kept : kept + min(CHUNK_BYTES, size - pos)])
                if not n:
                    break
                pos += n
                end = kept + n
                start = 0
                if tracked.skipping:
                    newline = enc.find_newline(buf, 0, end)
                    if newline < 0:
                        kept = end % unit  # keep a split code unit for the next read
                        self.totals.read_bytes += end - kept
                        buf[:kept] = buf[end - kept : end]
                        continue
                    start = newline + unit
                    tracked.skipping = False
                    self.totals.read_bytes += start
                last = enc.rfind_newline(buf, start, end)
                if last >= 0:
                    stop = last + unit
                    scanner.count_block(buf, start, stop, counts)
                    self.totals.read_bytes += stop - start
                    start = stop
                rest = end - start
                if rest > limit:
                    scanner.count_long_head(buf, start, counts)
                    tracked.skipping = True
                    kept = rest % unit
                    self.totals.read_bytes += rest - kept
                    buf[:kept] = buf[end - kept : end]
                else:
                    buf[:rest] = buf[start:end]
                    kept = rest
        tracked.partial = bytes(buf[:kept])
        tracked.offset = pos - kept

    def _get_buffer(self) -> bytearray:
        if self._buffer is None:
            self._buffer = bytearray(CHUNK_BYTES + self._patterns.max_line_bytes + 4)
        return self._buffer


def _unchanged(tracked: TrackedFile, st: os.stat_result) -> bool:
    """Whether a stat proves the file unchanged since it was last read: same size, same
    modification time, and that time older than the read by more than a timestamp tick. (File
    times are coarse, 4 ms to 2 s: a rewrite to the same size within the tick of the last read
    would keep both, so such a "racy" file is opened and checked until its time is old enough.)"""
    return (
        st.st_size == tracked.size
        and st.st_mtime_ns == tracked.mtime_ns
        and tracked.read_pos >= st.st_size
        and st.st_mtime_ns + RACY_NS < tracked.checked_ns
    )


def _same_head(known: Fingerprint, head: bytes) -> bool:
    return len(head) >= known.length and Fingerprint.of(head[: known.length]) == known


def _locate(gone: TrackedFile) -> str | None:
    """The path that now holds a tracked file, searched by identity in its old directory."""
    directory = os.path.dirname(gone.path) or os.curdir
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.inode() != gone.identity.number:
                continue
            st = os.stat(entry.path)
        except OSError:
            continue
        if identity_of(st) == gone.identity and stat.S_ISREG(st.st_mode):
            return entry.path
    return None
