"""Database worker pools: bounded threads (so bounded connections) per database, deadlines that abandon a stuck poll."""
from __future__ import annotations

import threading
import time

import pytest

from batch_exporter.poller import Poller, ScheduledSource, WorkerPool
from batch_exporter.snapshot import SampleBuilder, Snapshot
from batch_exporter.sources.errors import SourceError
from batch_exporter.store import Store


class ThreadRecorder:
    def __init__(self, name: str, seen: set[int], delay: float = 0.01) -> None:
        self.name = name
        self._seen = seen
        self._delay = delay

    def poll(self) -> Snapshot:
        self._seen.add(threading.get_ident())
        time.sleep(self._delay)
        out = SampleBuilder()
        out.add("batch_run_attempts", 1, batch=self.name)
        return out.build(self.name)


class Blocking:
    name = "checks:stuck"

    def __init__(self) -> None:
        self.release = threading.Event()

    def poll(self) -> Snapshot:
        self.release.wait(30)
        return Snapshot(self.name)


def _join_poll_threads(pool: str, timeout: float = 10) -> None:
    for thread in threading.enumerate():
        if thread.name.startswith(f"poll-{pool}-"):
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still running after {timeout}s"


def test_sources_of_one_database_share_at_most_size_threads() -> None:
    seen: set[int] = set()
    pool = WorkerPool("db", 2)
    sources = [ScheduledSource(ThreadRecorder(f"runs:b{i}", seen), 30, 10, pool) for i in range(12)]
    store = Store(s.source.name for s in sources)
    assert Poller(store, sources).poll_all_once()
    assert 1 <= len(seen) <= 2
    assert store.all_polled()
    pool.close()


def test_a_stuck_poll_is_abandoned_and_reported_until_it_returns() -> None:
    pool = WorkerPool("stuckdb", 1)
    blocking = Blocking()
    with pytest.raises(SourceError) as first:
        pool.run(blocking, 0.05)
    assert first.value.reason == "timeout" and "0.05s" in str(first.value)
    with pytest.raises(SourceError, match="stuck") as second:
        pool.run(blocking, 0.05)
    assert second.value.reason == "timeout"
    blocking.release.set()
    _join_poll_threads("stuckdb")  # the abandoned call has returned and its thread ended
    assert pool.run(blocking, 1).source == "checks:stuck"
    pool.close()


def test_failures_are_recorded_with_their_reason() -> None:
    class Failing:
        name = "runs:x"

        def poll(self) -> Snapshot:
            raise SourceError("connect", "database main: connection refused")

    class Buggy:
        name = "runs:y"

        def poll(self) -> Snapshot:
            raise KeyError("bug")

    store = Store(["runs:x", "runs:y"])
    poller = Poller(store, [ScheduledSource(Failing(), 30), ScheduledSource(Buggy(), 30)])
    assert not poller.poll_all_once()
    text = store.payload()[0].decode()
    assert 'batch_exporter_source_errors_total{reason="connect",source="runs:x"} 1.0' in text
    assert 'batch_exporter_source_errors_total{reason="internal",source="runs:y"} 1.0' in text


def test_a_failure_that_carries_a_partial_snapshot_exports_it() -> None:
    class PartlyFailing:
        def __init__(self, name: str) -> None:
            self.name = name
            self.lines = 0

        def poll(self) -> Snapshot:
            self.lines += 10
            out = SampleBuilder()
            out.add("batch_log_lines_total", self.lines, batch="b", log=self.name)
            raise SourceError("io", f"log {self.name}: cannot read one of its files", snapshot=out.build(self.name))

    inline, pooled = PartlyFailing("inline"), PartlyFailing("pooled")
    pool = WorkerPool("db", 1)  # the error crosses a worker thread on the way
    store = Store([inline.name, pooled.name], min_render_interval=0)
    poller = Poller(store, [ScheduledSource(inline, 30), ScheduledSource(pooled, 30, 5, pool)])
    for polls in (1, 2):
        assert not poller.poll_all_once()
        text = store.payload()[0].decode()
        for name in (inline.name, pooled.name):
            assert f'batch_log_lines_total{{batch="b",log="{name}"}} {10.0 * polls}' in text
            assert f'batch_exporter_source_up{{source="{name}"}} 0.0' in text
            assert f'batch_exporter_source_errors_total{{reason="io",source="{name}"}} {float(polls)}' in text
    pool.close()


def test_a_stuck_poll_does_not_keep_the_process_from_exiting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    script = tmp_path / "stuck.py"
    script.write_text(
        "import threading\n"
        "from batch_exporter.poller import WorkerPool\n"
        "from batch_exporter.sources.errors import SourceError\n"
        "class Stuck:\n"
        "    name = 'checks:x'\n"
        "    def poll(self):\n"
        "        threading.Event().wait(600)\n"
        "try:\n"
        "    WorkerPool('db', 1).run(Stuck(), 0.2)\n"
        "except SourceError as exc:\n"
        "    print(exc.reason)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "timeout", result.stderr


def test_a_stuck_worker_is_skipped_while_another_connection_is_free() -> None:
    pool = WorkerPool("db", 2)
    blocking = Blocking()
    with pytest.raises(SourceError):
        pool.run(blocking, 0.05)  # one worker is now stuck in its abandoned call
    seen: set[int] = set()
    for index in range(4):
        assert pool.run(ThreadRecorder(f"runs:b{index}", seen, delay=0), 1).source == f"runs:b{index}"
    assert len(seen) == 1  # always the free worker
    blocking.release.set()
    pool.close()


def test_no_poll_thread_starts_after_the_pool_is_closed() -> None:
    pool = WorkerPool("closed", 1)
    pool.close()
    with pytest.raises(SourceError) as stopped:
        pool.run(ThreadRecorder("runs:x", set()), 1)
    assert stopped.value.reason == "stopped"
    assert not [t for t in threading.enumerate() if t.name.startswith("poll-closed")]


def test_a_slow_database_does_not_hold_up_local_sources() -> None:
    release = threading.Event()

    class StuckDb:
        def __init__(self, index: int) -> None:
            self.name = f"runs:b{index}"

        def poll(self) -> Snapshot:
            release.wait(30)
            return Snapshot(self.name)

    wanted = 8
    local_polls: list[int] = []
    enough = threading.Event()

    class Local:
        name = "logscan:x/app"

        def poll(self) -> Snapshot:
            local_polls.append(1)
            if len(local_polls) >= wanted:
                enough.set()
            return Snapshot(self.name)

    pool = WorkerPool("slowdb", 1)
    sources = [ScheduledSource(StuckDb(i), 0.05, 30, pool) for i in range(30)] + [ScheduledSource(Local(), 0.05)]
    poller = Poller(Store(s.source.name for s in sources), sources)
    poller.start()
    try:
        # every database poll is queued behind one connection that never answers; the log source
        # must still be polled again and again on its own threads
        assert enough.wait(20), f"the log source was polled {len(local_polls)} times while the database hung"
    finally:
        poller.stop()
        release.set()
