"""State files written off the poll: the latest record, and exact counts after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.tailing import state as state_module
from batch_exporter.tailing.state_writer import StateWriter
from log_scan_config import LogCfg

EXPORTER = Path(__file__).resolve().parents[1] / "exporter"


PATTERNS = {"error": "ERROR", "nocase": "(?i)warn"}


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counts(source: LogScanSource) -> tuple[int, int, int]:
    got = {(s.name, dict(s.labels).get("pattern")): s.value for s in source.poll().samples}
    return (int(got[("batch_log_lines_total", None)]), int(got[("batch_log_matches_total", "error")]),
            int(got[("batch_log_matches_total", "nocase")]))


def test_only_the_latest_state_is_written_within_the_interval(tmp_path: Path) -> None:
    written: list[bytes] = []
    writer = StateWriter(interval=3600, clock=FrozenClock(), write=lambda path, data: written.append(data))
    target = tmp_path / "s.json"
    writer.write_now(target, b"first")
    writer.submit(target, b"second")  # within the interval: waits
    writer.submit(target, b"third")  # replaces it
    assert written == [b"first"]
    writer.flush(target)
    writer.flush(target)  # nothing waits any more
    assert written == [b"first", b"third"]


def test_a_failed_background_write_is_kept_and_cleared_by_the_next_success(tmp_path: Path) -> None:
    attempts: list[bytes] = []

    def write(path: Path, data: bytes) -> None:
        attempts.append(data)
        if data == b"bad":
            raise OSError(28, "No space left on device")

    writer = StateWriter(interval=3600, clock=FrozenClock(), write=write)
    target = tmp_path / "s.json"
    writer.submit(target, b"bad")
    writer.flush(target)
    failure = writer.failure(target)
    assert failure is not None and failure.strerror == "No space left on device"
    writer.write_now(target, b"good")
    assert writer.failure(target) is None and attempts == [b"bad", b"good"]


def test_a_background_failure_is_reported_by_the_next_poll_and_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\n")
    writer = StateWriter(interval=3600, clock=FrozenClock())
    source = LogScanSource("b", "app", LogCfg(str(log), dict(PATTERNS)), tmp_path / "state", writer=writer)
    assert counts(source) == (1, 1, 0)  # the first save is written by the poll
    with log.open("a") as f:
        f.write("t2 WARN b\n")
    assert counts(source) == (2, 1, 1)  # handed to the writer, waiting for its interval

    def refuse(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(state_module.os, "replace", refuse)  # interrupted between write and rename
    state_file = next((tmp_path / "state").iterdir())
    before = state_file.read_bytes()
    writer.flush(state_file)
    assert state_file.read_bytes() == before  # the old record is whole
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(SourceError) as caught:  # the next poll tries again itself and says why
        source.poll()
    assert caught.value.reason == "state" and "Input/output error" in str(caught.value)
    monkeypatch.undo()
    assert counts(source) == (2, 1, 1)  # written again, here
    saved = json.loads(state_file.read_text())
    assert saved["lines"] == 2 and saved["files"][0]["offset"] == log.stat().st_size


def test_a_restart_in_the_same_process_resumes_from_the_latest_state(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\n")
    writer = StateWriter(interval=3600, clock=FrozenClock())
    first = LogScanSource("b", "app", LogCfg(str(log), dict(PATTERNS)), tmp_path / "state", writer=writer)
    first.poll()
    with log.open("a") as f:
        f.write("t2 warn b\n")
    assert counts(first) == (2, 1, 1)  # its state waits in the writer
    os.truncate(log, 0)  # copytruncate while restarting: only the latest state knows line 2
    log.write_text("t3 ERROR c\n")
    second = LogScanSource("b", "app", LogCfg(str(log), dict(PATTERNS)), tmp_path / "state", writer=writer)
    assert counts(second) == (3, 2, 1)


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from types import SimpleNamespace
from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.tailing.state_writer import StateWriter
cfg = SimpleNamespace(path=sys.argv[2], patterns={"error": "ERROR", "nocase": "(?i)warn"}, encoding="utf-8",
                      max_line_bytes=1 << 20, size_limit=1 << 32, max_path_series=20)
source = LogScanSource("b", "app", cfg, sys.argv[3], writer=StateWriter(interval=0.002))
polls = 0
while True:
    source.poll()
    polls += 1
    if polls == 3:
        print("polling", flush=True)
"""


@pytest.mark.parametrize("seed", range(4))
def test_counts_stay_exact_after_the_process_is_killed_while_polling(tmp_path: Path, seed: int) -> None:
    """A process polls (and saves in the background) while lines are appended, and is killed with
    SIGKILL at some moment; a new process resumes from the state file and counts every line once."""
    log = tmp_path / "app.log"
    state_dir = tmp_path / "state"
    lines = [f"t{i} {('ERROR', 'Warn', 'INFO', 'warning')[(i * (seed + 3)) % 4]} line {i}\n" for i in range(6000)]
    log.write_text("".join(lines[:1000]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(EXPORTER), str(log), str(state_dir)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "polling\n"
        for start in range(1000, 5000 + seed * 200, 100):
            with log.open("a") as f:
                f.write("".join(lines[start : start + 100]))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    with log.open("a") as f:
        f.write("".join(lines[5000 + seed * 200 :]))
    assert any(state_dir.iterdir())  # it had saved before it was killed
    resumed = LogScanSource("b", "app", LogCfg(str(log), dict(PATTERNS)), state_dir, writer=StateWriter())
    text = "".join(lines)
    assert counts(resumed) == (len(lines), text.count("ERROR"), text.lower().count("warn"))


def test_the_background_writer_outlives_a_failure_of_its_own(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the writer's loop (here its clock failing once) is logged, and later states are written."""
    import threading

    calls = {"n": 0}
    written = threading.Event()

    def clock() -> float:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("clock broke")
        return 1000.0 + calls["n"]

    writer = StateWriter(interval=0, clock=clock, write=lambda path, data: written.set())
    writer.submit(tmp_path / "s.json", b"state")
    assert written.wait(10)
    assert any("state writer failed" in record.getMessage() for record in caplog.records)
