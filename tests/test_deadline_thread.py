"""The one way a call runs with a deadline: the poller's database workers and the one-shot commands."""
from __future__ import annotations

import threading

import pytest

from batch_exporter.deadline_thread import Closed, DeadlineMissed, DeadlineThread, StillStuck


def test_a_call_returns_its_value_and_raises_its_exception_on_the_same_thread_each_time() -> None:
    worker = DeadlineThread("t-value")
    threads = {worker.call(threading.get_ident, 5) for _ in range(3)}
    assert len(threads) == 1 and threading.get_ident() not in threads  # one thread of its own, kept

    def fails() -> None:
        raise ValueError("from the call")

    with pytest.raises(ValueError, match="from the call"):
        worker.call(fails, 5)
    assert worker.call(lambda: 42, 5) == 42
    worker.close()
    with pytest.raises(Closed):
        worker.call(lambda: 1, 5)


def test_a_call_past_its_deadline_is_abandoned_and_nothing_runs_until_it_returns() -> None:
    worker = DeadlineThread("t-stuck")
    release = threading.Event()
    with pytest.raises(DeadlineMissed):
        worker.call(lambda: release.wait(30), 0.05)
    assert worker.stuck
    with pytest.raises(StillStuck):
        worker.call(lambda: 1, 5)
    release.set()
    # the abandoned call ends; the next call gets a new thread
    for thread in threading.enumerate():
        if thread.name == "t-stuck":
            thread.join(10)
    assert not worker.stuck
    assert worker.call(lambda: "again", 5) == "again"
    worker.close()
