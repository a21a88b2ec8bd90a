"""Calls run on a long-lived thread of their own and are waited for at most a deadline.

One implementation serves both the poller (a database's worker threads, so a thread-bound connection
survives between polls) and the one-shot commands (`rerun-check`, `check-config`), which must end even
when a server accepts a connection and then never answers.

A driver call cannot always be interrupted: a call that misses its deadline is abandoned with its
thread, and while it is still inside that call no other thread is started in its place (a stuck
thread holds a connection). Threads are daemons, so a stuck call never keeps the process from exiting.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "Future[Any]"]


class DeadlineMissed(Exception):
    """The call did not return in time; it was abandoned, still running, on its thread."""


class StillStuck(Exception):
    """A call abandoned earlier has not returned yet: nothing else runs here until it does."""


class Closed(Exception):
    """The thread was closed; no further call runs."""


class DeadlineThread:
    """Runs one call at a time on its thread; see the module's docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] | None = None
        self._stuck: Future[Any] | None = None
        self._closed = False
        # close() may come from another thread (a stop) while a call is being queued
        self._lock = threading.Lock()

    @property
    def stuck(self) -> bool:
        """True while a call abandoned at its deadline is still running."""
        return self._stuck is not None and not self._stuck.done()

    def call(self, function: Callable[[], T], timeout: float | None) -> T:
        """`function()` on this thread, waited for at most `timeout` seconds (None: no limit); its
        exception is raised here. Raises DeadlineMissed, StillStuck or Closed."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise Closed(self.name)
            if self._stuck is not None:
                if not self._stuck.done():
                    raise StillStuck(self.name)
                self._stuck = None
            jobs = self._jobs or self._start_thread()
            jobs.put((function, future))
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            with self._lock:
                self._stuck = future
                if self._jobs is jobs:
                    jobs.put(None)  # the abandoned thread ends once its call returns
                    self._jobs = None
            raise DeadlineMissed(self.name) from None

    def close(self) -> None:
        """No more calls; the thread ends after the call it is running, if any."""
        with self._lock:
            self._closed = True
            if self._jobs is not None:
                self._jobs.put(None)
                self._jobs = None

    def _start_thread(self) -> queue.SimpleQueue[_Job | None]:
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(jobs,), name=self.name, daemon=True).start()
        self._jobs = jobs
        return jobs


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        function, future = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(function())
        except BaseException as exc:  # handed to the waiting caller
            future.set_exception(exc)
