"""Freed memory goes back to the system after large polls and renders, and only then."""
from __future__ import annotations

import pytest

from batch_exporter import freed_memory
from batch_exporter.poller import Poller, ScheduledSource
from batch_exporter.snapshot import SampleBuilder, Snapshot
from batch_exporter.store import Store


class Trims:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> Trims:
    counter = Trims()
    monkeypatch.setattr(freed_memory, "_TRIM", counter)
    return counter


class Batches:
    """A source whose snapshot holds `count` series."""

    def __init__(self, count: int) -> None:
        self.name = f"fleet:{count}"
        self.count = count

    def poll(self) -> Snapshot:
        out = SampleBuilder()
        for index in range(self.count):
            out.add("batch_run_attempts", 1, batch=f"job-{index:06d}")
        return out.build(self.name)


def test_a_trim_runs_only_at_the_threshold(trims: Trims) -> None:
    assert not freed_memory.give_back(99, 100)
    assert freed_memory.give_back(100, 100)
    assert trims.count == 1


def test_a_large_poll_gives_memory_back_and_a_small_one_does_not(trims: Trims) -> None:
    small, large = Batches(10), Batches(freed_memory.LARGE_SNAPSHOT_SAMPLES)
    store = Store([small.name, large.name])
    poller = Poller(store, [])
    assert poller.poll(ScheduledSource(small, 1.0))
    assert trims.count == 0
    assert poller.poll(ScheduledSource(large, 1.0))
    assert trims.count == 1


def test_a_large_render_gives_memory_back_and_a_small_one_does_not(trims: Trims) -> None:
    store = Store(["fleet:x"], min_render_interval=0)
    store.record_success(Batches(10).poll(), 0.0, 0.0)
    store.payload()
    assert trims.count == 0
    store.record_success(Batches(3 * freed_memory.LARGE_SNAPSHOT_SAMPLES).poll(), 0.0, 0.0)
    body, _ = store.payload()
    assert len(body) >= freed_memory.LARGE_RENDER_BYTES
    assert trims.count == 1


def test_this_machine_can_trim() -> None:
    # the tests run on Debian (glibc): were the lookup to fail here, no fleet would ever give memory back
    assert freed_memory.available()


def test_importing_the_exporter_starts_no_child_process() -> None:
    """A child started while the package imports (ctypes.util.find_library runs ldconfig) is there before
    any signal handler: `demo --stack` was killed by a SIGTERM sent the moment a child appeared."""
    import subprocess
    import sys

    probe = (
        "import subprocess\n"
        "started = []\n"
        "real = subprocess.Popen.__init__\n"
        "def record(self, *args, **kwargs):\n"
        "    started.append(args[0] if args else kwargs.get('args'))\n"
        "    real(self, *args, **kwargs)\n"
        "subprocess.Popen.__init__ = record\n"
        "import batch_exporter.cli, batch_exporter.practice.demo_stack\n"
        "from batch_exporter import freed_memory\n"
        "print(started, freed_memory.available())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.startswith("[] "), done.stdout + done.stderr
