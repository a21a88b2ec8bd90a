"""Following one configured log (a path or a glob) across appends, rotations and truncations.

Files are tracked by identity (device, file number), not by name, so a file renamed within the
set keeps its read position. At each poll:

- a file whose size and modification time are unchanged (and older than a time stamp tick) costs
  one `stat` and nothing else;
- a tracked file that left the set was renamed away or deleted: it is looked up by identity in
  its directory and, while it still exists (rotation by rename), read to its end at this poll and
  the next ones, because the writer may still be appending to it. The first later poll that finds it
  no longer growing (or gone, or rewritten) ends it: its held last line is counted and it is
  forgotten;
- a file whose `stat` fails (EIO, ESTALE on a network share) is reported and left as it is: a
  tracked file under that name is neither ended nor forgotten, so it is not read again from its
  start when the `stat` works again;
- a file new to the set is read from its start and, after the first poll, counts as a rotation;
- a tracked file that shrank below the read position (copytruncate) or whose first bytes changed
  (truncated and written again past the old position, or a new file that got a reused inode) counts
  as a truncation and is read again from its start.

An unterminated last line is held in memory (at most `max_line_bytes`) until its newline arrives or
its file ends; the saved position is the start of that line, so a restart reads it again. For the
case where the file ends while the exporter is down, the state also keeps that line's length and
the patterns it matched (numbers, never its text): `held_line` gives them, and a file restored with
them counts that line once if it turns out truncated, rewritten or gone before the line is read again.
"""

from __future__ import annotations

import io
import os
import stat
import time
from dataclasses import dataclass, field

from .identity import HEAD_BYTES, Fingerprint, Identity, identity_of, open_shared, read_head
from .paths import expand, label
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
    # A held line restored from a state (its bytes are not in memory): its length and the patterns
    # it matched, counted if its file ends before the line is read again.
    held_length: int = 0
    held_matches: tuple[int, ...] = ()
    moved: bool = False  # left the set at an earlier poll and still followed (memory only)
    scanner: LineScanner | None = field(default=None, repr=False)

    @property
    def read_pos(self) -> int:
        """Where the next read starts."""
        return self.offset + len(self.partial)

    @property
    def seen_end(self) -> int:
        """How far the file is known to reach: a restored held line counts although not in memory."""
        return self.offset + (len(self.partial) or self.held_length)


@dataclass(frozen=True)
class PollResult:
    changed: bool  # anything read or any file seen to come, go or move
    errors: tuple[str, ...]  # files that could not be read (the others were)


class FileSetFollower:
    """The files one configured path or glob names, followed from poll to poll."""

    def __init__(
        self,
        path: str,
        patterns: PatternSet,
        totals: Totals,
        files: list[TrackedFile] | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        """`files` comes from a saved state; None means no history, so the files present at the
        first poll are read from their start without counting rotations. Without `follow_symlinks`
        a name that is a symbolic link is no file of the set (its target is never read: a file is
        only read when the opened file is the one the listing found)."""
        self.path = path
        self._follow_symlinks = follow_symlinks
        self.totals = totals
        self.unread_bytes = 0
        self._patterns = patterns
        self._files: dict[Identity, TrackedFile] = {f.identity: f for f in files or []}
        self._has_history = files is not None
        # Paths whose stat failed before the first poll that had history to go by: their files are
        # read from their start when seen at last, like the others at that first poll, no rotation.
        self._unseen_at_start: set[str] = set()
        self._buffer: bytearray | None = None

    @property
    def files(self) -> list[TrackedFile]:
        return list(self._files.values())

    @property
    def has_history(self) -> bool:
        """False until a first poll, unless files came from a saved state."""
        return self._has_history

    def poll(self) -> PollResult:
        """Read what was written since the last poll. Raises OSError only when the directory of a
        glob cannot be listed; a file that cannot be stat'ed or read is reported in the result."""
        present: dict[Identity, tuple[str, os.stat_result]] = {}
        failed: set[str] = set()  # stat failed: whether these files are still there is unknown
        first_sight: set[Identity] = set()
        errors: list[str] = []
        follow = self._follow_symlinks
        for path in expand(self.path, follow):
            try:
                st = os.stat(path) if follow else os.lstat(path)
            except FileNotFoundError:
                self._unseen_at_start.discard(path)
                continue
            except OSError as exc:
                errors.append(f"cannot stat {label(path)}: {exc.strerror or exc}")
                failed.add(path)
                if not self._has_history:
                    self._unseen_at_start.add(path)
                continue
            if path in self._unseen_at_start:
                self._unseen_at_start.discard(path)
                first_sight.add(identity_of(st))
            if stat.S_ISREG(st.st_mode):
                present.setdefault(identity_of(st), (path, st))

        changed = False
        unread = 0
        for identity in [i for i in self._files if i not in present]:
            outside = self._files[identity]
            if outside.path in failed:
                continue  # not seen this poll, which is not the same as gone
            changed = True
            try:
                keep, file_unread = self._follow_outside(outside, failed)
            except OSError as exc:
                errors.append(f"cannot finish reading {label(outside.path)}: {exc.strerror or exc}")
                keep, file_unread = False, 0
            if keep:
                unread += file_unread
            else:
                self._end_file(outside)
                del self._files[identity]

        for identity, (path, st) in sorted(
            present.items(), key=lambda item: (item[1][1].st_mtime_ns, item[1][0])
        ):
            tracked = self._files.get(identity)
            if tracked is None:
                tracked = self._files[identity] = TrackedFile(path=path, identity=identity)
                if self._has_history and identity not in first_sight:
                    self.totals.rotations += 1
                changed = True
            elif tracked.path != path or tracked.moved:
                tracked.path, tracked.moved = path, False
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
                errors.append(f"cannot read {label(path)}: {exc.strerror or exc}")
        self._has_history = True
        self.unread_bytes = unread
        return PollResult(changed=changed, errors=tuple(errors))

    def held_line(self, tracked: TrackedFile) -> tuple[int, tuple[int, ...]]:
        """Length and matched patterns (indices) of the file's held unterminated line, (0, ()) when
        none: what a saved state needs to count that line once if its file ends while the exporter
        is down (and what it must not count when the line is simply read again)."""
        if tracked.partial and not tracked.skipping and tracked.scanner is not None:
            return len(tracked.partial), tracked.scanner.tail_matches(tracked.partial)
        return tracked.held_length, tracked.held_matches

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
            if size < tracked.seen_end or not _same_head(tracked.head, head):
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

    def _follow_outside(self, tracked: TrackedFile, failed: set[str]) -> tuple[bool, int]:
        """A tracked file missing from the set: read what it gained if it still exists nearby
        (renamed away). Returns whether to go on following it, and its bytes still unread.

        It is followed at the first poll that misses it and after that as long as it grows: the
        writer may append to the renamed file until it reopens its log. Gone, rewritten or no longer
        growing, it is to be ended."""
        path = _locate(tracked)
        if path is None:
            return False, 0
        if path in failed:  # renamed within the set, to a name whose stat failed at the listing
            tracked.path, tracked.moved = path, False
            return True, 0
        with open_shared(path) as f:
            st = os.fstat(f.fileno())
            head = read_head(f, min(HEAD_BYTES, st.st_size))
            if (
                identity_of(st) != tracked.identity
                or st.st_size < tracked.seen_end
                or not _same_head(tracked.head, head)
            ):
                return False, 0
            grew = st.st_size != tracked.size
            if tracked.scanner is None:
                tracked.scanner = self._patterns.scanner_for(head)
            self._scan(tracked, f, st.st_size)
            tracked.head = Fingerprint.of(head)
            tracked.size, tracked.mtime_ns = st.st_size, st.st_mtime_ns
            unread = max(0, os.fstat(f.fileno()).st_size - tracked.read_pos)
        tracked.path = path
        if tracked.moved and not grew:
            return False, 0
        tracked.moved = True
        return True, unread

    def _end_file(self, tracked: TrackedFile) -> None:
        """The file will not grow any more (rotated, truncated, deleted): its unterminated last
        line is a line."""
        counts = self.totals.counts
        if tracked.partial:
            if not tracked.skipping and tracked.scanner is not None:
                tracked.scanner.count_tail(tracked.partial, counts)
            self.totals.read_bytes += len(tracked.partial)
        elif tracked.held_length and not tracked.skipping:  # restored from a state, not read again
            counts.lines += 1
            for index in tracked.held_matches:
                counts.matches[index] += 1
            self.totals.read_bytes += tracked.held_length
        tracked.offset = tracked.seen_end
        tracked.partial = b""
        tracked.held_length, tracked.held_matches = 0, ()

    def _scan(self, tracked: TrackedFile, f: io.FileIO, size: int) -> None:
        """Read from the file's position up to `size` in chunks, counting complete lines. What it counts
        reaches the totals only with the new position: should a read or a count raise half-way, the file
        and the totals are as they were, and the next poll reads the same bytes once."""
        scanner = tracked.scanner
        assert scanner is not None
        entry = (tracked.skipping, tracked.held_length, tracked.held_matches)
        counts = Counts(matches=[0] * len(self.totals.counts.matches))
        try:
            read = self._scan_counting(tracked, scanner, f, size, counts)
        except BaseException:
            tracked.skipping, tracked.held_length, tracked.held_matches = entry
            raise
        totals = self.totals
        totals.read_bytes += read
        totals.counts.lines += counts.lines
        totals.counts.oversized += counts.oversized
        for index, added in enumerate(counts.matches):
            totals.counts.matches[index] += added

    def _scan_counting(self, tracked: TrackedFile, scanner: LineScanner, f: io.FileIO, size: int,
                       counts: Counts) -> int:
        """_scan's reading into `counts`; moves the file's position and returns the bytes read."""
        tracked.held_length, tracked.held_matches = 0, ()  # a restored held line is read again now
        enc = scanner.encoding
        unit = enc.unit
        limit = self._patterns.max_line_bytes
        read = 0
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
                        read += end - kept
                        buf[:kept] = buf[end - kept : end]
                        continue
                    start = newline + unit
                    tracked.skipping = False
                    read += start
                last = enc.rfind_newline(buf, start, end)
                if last >= 0:
                    stop = last + unit
                    scanner.count_block(buf, start, stop, counts)
                    read += stop - start
                    start = stop
                rest = end - start
                if rest > limit:
                    scanner.count_long_head(buf, start, counts)
                    tracked.skipping = True
                    kept = rest % unit
                    read += rest - kept
                    buf[:kept] = buf[end - kept : end]
                else:
                    buf[:rest] = buf[start:end]
                    kept = rest
        tracked.partial = bytes(buf[:kept])
        tracked.offset = pos - kept
        return read

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


def _locate(tracked: TrackedFile) -> str | None:
    """The path that now holds a tracked file: its last known path, else searched by identity in
    that path's directory."""
    try:
        st = os.stat(tracked.path)
        if identity_of(st) == tracked.identity and stat.S_ISREG(st.st_mode):
            return tracked.path
    except OSError:
        pass
    directory = os.path.dirname(tracked.path) or os.curdir
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.inode() != tracked.identity.number:
                continue
            st = os.stat(entry.path)
        except OSError:
            continue
        if identity_of(st) == tracked.identity and stat.S_ISREG(st.st_mode):
            return entry.path
    return None
