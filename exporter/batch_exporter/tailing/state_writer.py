"""Writing log scan state files off the poll: one background thread, the latest state per file.

A poll hands over the serialized state of its end (counters and read positions of one moment, one
record) and goes on; the thread writes it with `state.write_atomically` (temporary file, fsync,
rename, fsync of the folder). A state handed over while an earlier one of the same file still waits
replaces it, and a file is written at most once every `interval` seconds: the state on disk is always
one whole poll's, at most `interval` seconds (plus one write) behind the last poll. A crash then
makes the next start read again what those polls read, from the saved positions and with the saved
counters, so no line counts twice.

`write_now` writes in the caller (the first save of a source, and any save after a failed one, so
that a state folder that cannot be written is reported by the poll that tried); `flush` writes what
waits for one file (before a new source reads that file, so a restart or a reload in the same
process resumes from the latest state); `failure` gives the error of the last background write.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .state import write_atomically

log = logging.getLogger(__name__)

SAVE_INTERVAL = 1.0  # seconds between two writes of one state file, at most


@dataclass
class _File:
    lock: threading.Lock = field(default_factory=threading.Lock)  # one write of this file at a time
    pending: bytes | None = None
    written_at: float = float("-inf")
    failure: OSError | None = None


class StateWriter:
    """Writes the latest state handed over for each file, in a daemon thread started on first use."""

    def __init__(
        self,
        interval: float = SAVE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[Path, bytes], None] = write_atomically,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._write = write
        self._files: dict[Path, _File] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, path: Path, data: bytes) -> None:
        """Have `data` written to `path` soon, replacing what still waits for it."""
        with self._wake:
            self._file(path).pending = data
            if self._thread is None or not self._thread.is_alive():  # never started, or ended by a bug
                self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
                self._thread.start()
            self._wake.notify()

    def write_now(self, path: Path, data: bytes) -> None:
        """Write `data` to `path` in the caller, dropping what waited for it. Raises OSError."""
        entry = self._entry(path)
        with entry.lock:
            with self._wake:
                entry.pending = None
            self._write_locked(path, entry, data, raise_errors=True)

    def flush(self, path: Path) -> None:
        """Write what waits for `path`, in the caller; a failure stays in `failure`."""
        entry = self._entry(path)
        with entry.lock:
            with self._wake:
                data, entry.pending = entry.pending, None
            if data is not None:
                self._write_locked(path, entry, data, raise_errors=False)

    def flush_all(self) -> None:
        with self._wake:
            paths = list(self._files)
        for path in paths:
            self.flush(path)

    def failure(self, path: Path) -> OSError | None:
        """The error of the last write of `path`, None when it succeeded (or none was tried)."""
        with self._wake:
            entry = self._files.get(path)
            return entry.failure if entry is not None else None

    def _entry(self, path: Path) -> _File:
        with self._wake:
            return self._file(path)

    def _file(self, path: Path) -> _File:
        entry = self._files.get(path)
        if entry is None:
            entry = self._files[path] = _File()
        return entry

    def _write_locked(self, path: Path, entry: _File, data: bytes, raise_errors: bool) -> None:
        entry.written_at = self._clock()
        try:
            self._write(path, data)
        except OSError as exc:
            with self._wake:
                entry.failure = exc
            if raise_errors:
                raise
            return
        with self._wake:
            entry.failure = None

    def _due(self) -> tuple[list[Path], float | None]:
        """Files whose state waits and may be written now, and how long until the next one may."""
        now = self._clock()
        due: list[Path] = []
        wait: float | None = None
        for path, entry in self._files.items():
            if entry.pending is None:
                continue
            left = entry.written_at + self.interval - now
            if left <= 0:
                due.append(path)
            elif wait is None or left < wait:
                wait = left
        return due, wait

    def _run(self) -> None:
        while True:
            try:
                self._write_due()
            except Exception:  # a bug here must not end the saves for the rest of the process's life
                log.exception("the log state writer failed; it goes on in a second")
                time.sleep(1.0)

    def _write_due(self) -> None:
        """Wait until some file's state may be written, then write each such file's."""
        with self._wake:
            due, wait = self._due()
            while not due:
                self._wake.wait(wait)
                due, wait = self._due()
        for path in due:
            entry = self._entry(path)
            with entry.lock:
                with self._wake:
                    data, entry.pending = entry.pending, None
                if data is not None:
                    with contextlib.suppress(Exception):  # an OSError is kept in `failure`
                        self._write_locked(path, entry, data, raise_errors=False)


WRITER = StateWriter()
atexit.register(WRITER.flush_all)  # a clean exit saves what waits; a crash re-reads it (counted once)
