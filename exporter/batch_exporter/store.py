"""The latest snapshot and health of every source, and the exposition rendered from them."""
from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from . import __version__
from .metrics import BY_NAME, CONTRACT
from .snapshot import Sample, Snapshot


@dataclass
class SourceHealth:
    up: bool = False
    polled: bool = False
    last_success: float | None = None
    poll_duration: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """A consistent copy of the store, what one render sees."""

    snapshots: tuple[Snapshot, ...]
    health: tuple[tuple[str, SourceHealth], ...]


class Store:
    """Holds the latest snapshot per source and the exposition rendered from them.

    A scrape renders only when something changed, at most once per `min_render_interval`, and never
    waits for a render another scrape is doing: it gets the previous bytes instead. A burst of polls
    finishing together therefore costs one or two renders, not one per poll.
    """

    def __init__(self, sources: Iterable[str], min_render_interval: float = 0.25,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._min_render_interval = min_render_interval
        self._monotonic = monotonic
        self._rendered_at = float("-inf")
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._health: dict[str, SourceHealth] = {name: SourceHealth() for name in sources}
        self._version = 0
        self._rendered_version = -1
        self._payload: tuple[bytes, bytes] = (b"", b"")
        self._render_lock = threading.Lock()

    def record_success(self, snapshot: Snapshot, finished_at: float, duration: float) -> None:
        """Replace the source's snapshot and mark it up."""
        with self._lock:
            self._snapshots[snapshot.source] = snapshot
            health = self._health.setdefault(snapshot.source, SourceHealth())
            health.up, health.polled = True, True
            health.last_success = finished_at
            health.poll_duration = duration
            self._version += 1

    def record_failure(self, source: str, reason: str, duration: float, partial: Snapshot | None = None) -> None:
        """Mark the source down. A `partial` snapshot (what the failed poll could still measure)
        replaces the previous one; without it the last good snapshot stays (marked by source_up 0)."""
        with self._lock:
            if partial is not None:
                if partial.source != source:
                    raise ValueError(f"partial snapshot of {partial.source!r} recorded for source {source!r}")
                self._snapshots[source] = partial
            health = self._health.setdefault(source, SourceHealth())
            health.up, health.polled = False, True
            health.poll_duration = duration
            health.errors[reason] = health.errors.get(reason, 0) + 1
            self._version += 1

    def all_polled(self) -> bool:
        """True once every source has finished at least one poll (readiness)."""
        with self._lock:
            return all(h.polled for h in self._health.values())

    def view(self) -> View:
        with self._lock:
            health = tuple(
                (name, SourceHealth(h.up, h.polled, h.last_success, h.poll_duration, dict(h.errors)))
                for name, h in sorted(self._health.items())
            )
            return View(tuple(self._snapshots[k] for k in sorted(self._snapshots)), health)

    def payload(self) -> tuple[bytes, bytes]:
        """The exposition and its gzip form (see the class docstring for when it is re-rendered)."""
        if self._version == self._rendered_version:
            return self._payload
        first = self._rendered_version < 0
        if not first and self._monotonic() - self._rendered_at < self._min_render_interval:
            return self._payload
        if not self._render_lock.acquire(blocking=first):
            return self._payload
        try:
            with self._lock:
                version = self._version
            if version != self._rendered_version:
                text = render(self.view())
                self._payload = (text, gzip.compress(text, compresslevel=6))
                self._rendered_version = version
                self._rendered_at = self._monotonic()
            return self._payload
        finally:
            self._render_lock.release()


class _ViewCollector:
    def __init__(self, view: View) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._view))


def render(view: View) -> bytes:
    """Text exposition (format 0.0.4) of one view."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ViewCollector(view))
    return generate_latest(registry)


def families(view: View) -> list[Metric]:
    """Metric families in contract order: every source's samples merged by name, then health."""
    by_name: dict[str, list[Sample]] = {}
    for snapshot in view.snapshots:
        for sample in snapshot.samples:
            by_name.setdefault(sample.name, []).append(sample)
    by_name.update(_health_samples(view))
    result: list[Metric] = []
    for spec in CONTRACT:
        samples = by_name.get(spec.name)
        if not samples:
            continue
        family_type = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        family = family_type(spec.name, spec.help, labels=list(spec.labels))
        for sample in samples:
            family.add_metric([value for _, value in sample.labels], sample.value)
        result.append(family)
    return result


def _health_samples(view: View) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {
        "batch_exporter_build_info": [Sample("batch_exporter_build_info", (("version", __version__),), 1.0)],
    }

    def add(name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        assert name in BY_NAME
        out.setdefault(name, []).append(Sample(name, labels, value))

    for source, health in view.health:
        labels = (("source", source),)
        add("batch_exporter_source_up", labels, 1.0 if health.up else 0.0)
        if health.last_success is not None:
            add("batch_exporter_source_last_success_timestamp_seconds", labels, health.last_success)
        if health.polled:
            add("batch_exporter_source_poll_duration_seconds", labels, health.poll_duration)
        for reason, count in sorted(health.errors.items()):
            add("batch_exporter_source_errors_total", labels + (("reason", reason),), float(count))
    return out
