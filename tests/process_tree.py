"""A test's child processes as Linux shows them in /proc: who a process started, whether one still runs, and
a guard that leaves none behind whatever the test did."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextmanager
def reaped(proc: subprocess.Popen[Any]) -> Iterator[set[int]]:
    """Yields the set of `proc`'s servers for the test to fill. On the way out, however the test ended, a
    `proc` still running is killed with its current children, and every server still alive is killed."""
    servers: set[int] = set()
    try:
        yield servers
    finally:
        if proc.poll() is None:  # the test failed before its signal: take the servers down too
            servers |= children_of(proc.pid)
            proc.kill()
            proc.wait()
        for pid in servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
