"""Issue 11 item 4: SIGHUP while a log is written fast and a slow check is polled never makes a log
counter go back, and no line is lost or counted twice across the reloads."""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from exporter_process import ExporterProcess, running_exporter, value

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX only")

LABELS = {"batch": "card-auth", "log": "app"}
# About 1-3 s on this machine: a reload's first poll of the new configuration waits for it, and
# while it runs the old configuration's log scan would go on counting.
SLOW_CHECK = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 4000000) "
              "SELECT count(*) - 4000000 FROM n")
RELOADS = 4


def _config(tmp_path: Path, log: Path) -> Path:
    db = tmp_path / "checks.db"
    sqlite3.connect(db).close()
    config = tmp_path / "config.yml"
    config.write_text(
        "global:\n  poll_interval: 1s\n  log_poll_interval: 1s\n"
        f"databases:\n  main:\n    sqlite: '{db}'\n    query_timeout: 60s\n"
        "batches:\n  card-auth:\n    database: main\n"
        f"    checks:\n      slow: {{query: \"{SLOW_CHECK}\", max: 0}}\n"
        f"    logs:\n      app:\n        path: '{log}'\n        patterns: {{error: ERROR}}\n"
    )
    return config


class Writer(threading.Thread):
    """Appends batches of lines (every tenth an ERROR) as fast as a busy batch job would."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.lines = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with open(self.path, "ab", buffering=0) as f:
            while not self.stop.is_set():
                block = b"".join(b"ERROR x\n" if (self.lines + i) % 10 == 0 else b"INFO line of work\n"
                                 for i in range(250))
                f.write(block)
                self.lines += 250
                time.sleep(0.01)


def _reloads_done(exporter: ExporterProcess) -> int:
    return exporter.log_path.read_text(errors="replace").count("configuration reloaded")


def test_log_counters_never_decrease_across_reloads(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    config = _config(tmp_path, log)
    env = {"BATCH_EXPORTER_STATE_DIR": str(tmp_path / "state")}
    seen: list[tuple[float, float]] = []  # (lines, matches) per scrape, in order

    def scrape(exporter: ExporterProcess) -> None:
        try:
            series = exporter.scrape()
        except OSError as exc:
            code = exporter.proc.poll()
            raise AssertionError(f"scrape failed ({exc}); exit code {code}\n{exporter.log()}") from None
        lines = value(series, "batch_log_lines_total", **LABELS)
        matches = value(series, "batch_log_matches_total", pattern="error", **LABELS)
        if lines is not None and matches is not None:
            seen.append((lines, matches))

    with running_exporter(config, tmp_path, env=env) as exporter:
        exporter.wait_for(lambda s: value(s, "batch_check_value", batch="card-auth", check="slow") is not None,
                          timeout=60, what="the first poll")
        writer = Writer(log)
        writer.start()
        try:
            for reload in range(1, RELOADS + 1):
                os.kill(exporter.proc.pid, signal.SIGHUP)
                deadline = time.monotonic() + 60
                while _reloads_done(exporter) < reload:
                    assert time.monotonic() < deadline, exporter.log()
                    scrape(exporter)
                    time.sleep(0.05)
                for _ in range(10):  # the new configuration counting on for a while
                    scrape(exporter)
                    time.sleep(0.05)
        finally:
            writer.stop.set()
            writer.join()
        written = writer.lines
        deadline = time.monotonic() + 30
        while not seen or seen[-1][0] != written:
            assert time.monotonic() < deadline, f"lines stayed at {seen[-1:]} of {written}\n{exporter.log()}"
            scrape(exporter)
            time.sleep(0.2)

    backwards = [(a, b) for a, b in zip(seen, seen[1:], strict=False) if b[0] < a[0] or b[1] < a[1]]
    assert not backwards, f"counters went back: {backwards[:5]}"
    assert seen[-1] == (written, written / 10)
