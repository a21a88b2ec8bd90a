"""Hands memory freed by large polls and renders back to the operating system.

A fleet's poll reads some 100,000 rows and a render writes some 10 MiB of text; once they are freed,
glibc keeps most of that memory in its heap for later, and the exporter's RSS stays at the peak of
the largest poll. `malloc_trim` returns the free pages (measured on a 5,000-job fleet: about 30 MiB
less RSS, for under 10 ms a call). Elsewhere than on glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Below this many series in a snapshot, or bytes in a render, what was freed is not worth a trim.
LARGE_SNAPSHOT_SAMPLES = 20_000
LARGE_RENDER_BYTES = 2 * 1024 * 1024


def _glibc_trim() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # the process's own symbols, libc's among them: ctypes.util.find_library would run ldconfig as a
        # child process at import, before any signal handler is set (a SIGTERM then killed the process)
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _glibc_trim()
_LOCK = threading.Lock()  # one trim at a time: two at once would only walk the heap twice


def available() -> bool:
    """Whether this C library can give freed memory back (glibc)."""
    return _TRIM is not None


def give_back(size: int, threshold: int) -> bool:
    """Return freed heap memory to the system when `size` (what was just freed or rebuilt) reaches
    `threshold`; True when a trim ran."""
    if _TRIM is None or size < threshold or not _LOCK.acquire(blocking=False):
        return False
    try:
        _TRIM()
    finally:
        _LOCK.release()
    return True
