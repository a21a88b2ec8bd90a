"""The latest snapshot and health of every source, and the exposition rendered from them, within a cap
on its series."""
from __future__ import annotations

import gzip
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from . import __version__, freed_memory
from .metrics import BY_NAME, CONTRACT
from .snapshot import Sample, Snapshot

log = logging.getLogger(__name__)

DEFAULT_MAX_SERIES = 200_000  # global.max_series's default

# Past the cap, sources are kept in this order, a source always whole; one that does not fit is left out
# and the ones after it still get their turn (a fleet too big for the cap must not take the batches' checks
# and logs with it):
#   0. what every batch's paging alerts join: its configuration, the scheduler's plan and its runs, kept
#      or left out together, batch by batch in configuration order; a fleet (all its jobs, one source)
#      after the batches;
#   1. what contradicts a success: checks and the log evidence of the latest run, in configuration order;
#   2. the logs' files and scans, smallest first: one glob over thousands of files goes before the rest;
#   3. a source of a kind not named here.
# The exporter's own batch_exporter_* series (a source's among them) are never left out and not counted.
KEEP_ORDER: dict[str, int] = {
    "config": 0, "schedule": 0, "runs": 0, "fleet": 0,
    "checks": 1, "evidence": 1,
    "logfiles": 2, "logscan": 2,
}
_UNKNOWN_KIND = 3
_SMALLEST_FIRST = 2
_NAMES_LOGGED = 20
_OWN_PREFIX = "batch_exporter_"


@dataclass
class SourceHealth:
    up: bool = False
    polled: bool = False
    last_success: float | None = None
    poll_duration: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None  # the reason of the latest failed poll (a word such as 'connect')
    last_error_message: str = ""  # its message, for a person (the status page); never a label
    last_failure: float | None = None  # when it failed


@dataclass(frozen=True)
class SeriesCap:
    """What the cap on series did to one view."""

    limit: int
    series: int  # of the sources kept, counted against the limit
    dropped: tuple[tuple[str, int], ...]  # every source by name, with its series left out (0 when kept)

    @property
    def dropped_sources(self) -> tuple[str, ...]:
        return tuple(name for name, count in self.dropped if count)


@dataclass(frozen=True)
class View:
    """A consistent copy of the store, what one render sees: the snapshots the cap keeps."""

    snapshots: tuple[Snapshot, ...]
    health: tuple[tuple[str, SourceHealth], ...]
    cap: SeriesCap | None = None


@dataclass(frozen=True)
class Latest:
    """Every snapshot and every source's health as of one store version (not capped), sources in
    configuration order."""

    version: int
    snapshots: tuple[Snapshot, ...]
    health: tuple[tuple[str, SourceHealth], ...]


def _copy(health: SourceHealth) -> SourceHealth:
    return replace(health, errors=dict(health.errors))


def cap_series(snapshots: Mapping[str, Snapshot], sources: Sequence[str],
               limit: int) -> tuple[tuple[Snapshot, ...], SeriesCap]:
    """The snapshots to expose (by source name; one left out keeps its batch_exporter_* samples only) and
    what was left out, `sources` being every source in configuration order (see KEEP_ORDER)."""
    sizes = {name: _counted(snapshots[name]) if name in snapshots else 0 for name in sources}
    kept: set[str] = set()
    used = 0
    for unit in _keep_units(sources, sizes):
        size = sum(sizes[name] for name in unit)
        if used + size > limit:
            continue  # a smaller unit further down may still fit: leave out as little as possible
        kept.update(unit)
        used += size
    dropped = tuple((name, 0 if name in kept else sizes[name]) for name in sorted(sources))
    exposed = tuple(snapshots[name] if name in kept else _own_only(snapshots[name])
                    for name in sorted(snapshots))
    return exposed, SeriesCap(limit, used, dropped)


def _counted(snapshot: Snapshot) -> int:
    return sum(1 for sample in snapshot.samples if not sample.name.startswith(_OWN_PREFIX))


def _own_only(snapshot: Snapshot) -> Snapshot:
    return Snapshot(snapshot.source, tuple(s for s in snapshot.samples if s.name.startswith(_OWN_PREFIX)))


def _keep_units(sources: Sequence[str], sizes: Mapping[str, int]) -> list[list[str]]:
    """Sources grouped into what is kept or left out together, most important first."""
    position = {name: index for index, name in enumerate(sources)}
    units: dict[tuple[int, str], list[str]] = {}
    for name in sources:
        kind, _, rest = name.partition(":")
        rank = KEEP_ORDER.get(kind, _UNKNOWN_KIND)
        # a batch's config, schedule and runs go together; a fleet is a unit of its own, even when a batch
        # has its name
        together = rank == 0 and kind != "fleet"
        units.setdefault((rank, rest.split("/", 1)[0] if together else name), []).append(name)

    def order(item: tuple[tuple[int, str], list[str]]) -> tuple[int, int, int]:
        (rank, _), names = item
        size = sum(sizes[name] for name in names) if rank == _SMALLEST_FIRST else 0
        return rank, size, position[names[0]]

    return [names for _, names in sorted(units.items(), key=order)]


def _report_dropped(before: tuple[str, ...], cap: SeriesCap) -> None:
    now = cap.dropped_sources
    back = sorted(set(before) - set(now))
    if now:
        log.warning("series cap reached (global.max_series %d): sources left out of the exposition: %d "
                    "(%d series): %s%s", cap.limit, len(now), sum(count for _, count in cap.dropped),
                    _name_some(now), f"; exported again: {_name_some(back)}" if back else "")
    else:
        log.warning("series cap (global.max_series %d) no longer reached: every source is exported again "
                    "(%d series); back: %s", cap.limit, cap.series, _name_some(back))


def _name_some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_LOGGED])
    rest = len(names) - _NAMES_LOGGED
    return f"{shown} and {rest} more (batch_exporter_series_dropped names them all)" if rest > 0 else shown


class Store:
    """Holds the latest snapshot per source and the exposition rendered from them.

    A scrape renders only when something changed, at most once per `min_render_interval`, and never
    waits for a render another scrape is doing: it gets the previous bytes instead. A burst of polls
    finishing together therefore costs one or two renders, not one per poll.

    The exposition holds at most `max_series` series of the sources (`sources` in configuration order:
    see KEEP_ORDER for which are left out first); what the cap keeps is worked out once per change.
    """

    def __init__(self, sources: Iterable[str], min_render_interval: float = 0.25,
                 monotonic: Callable[[], float] = time.monotonic, *,
                 max_series: int = DEFAULT_MAX_SERIES) -> None:
        if max_series < 0:
            raise ValueError(f"max_series must be 0 or more, not {max_series}")
        self._max_series = max_series
        self._min_render_interval = min_render_interval
        self._monotonic = monotonic
        self._rendered_at = float("-inf")
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        # in configuration order (a source first recorded without being named comes last)
        self._health: dict[str, SourceHealth] = {name: SourceHealth() for name in sources}
        self._version = 0
        self._capped_version = -1
        self._capped: tuple[tuple[Snapshot, ...], SeriesCap] = ((), SeriesCap(max_series, 0, ()))
        self._rendered_version = -1
        self._payload: tuple[bytes, bytes] = (b"", b"")
        self._render_lock = threading.Lock()
        self._render_cache = RenderCache()  # used under _render_lock only

    def record_success(self, snapshot: Snapshot, finished_at: float, duration: float) -> None:
        """Replace the source's snapshot and mark it up."""
        with self._lock:
            self._snapshots[snapshot.source] = snapshot
            health = self._health.setdefault(snapshot.source, SourceHealth())
            health.up, health.polled = True, True
            health.last_success = finished_at
            health.poll_duration = duration
            self._version += 1

    def record_failure(self, source: str, reason: str, duration: float, partial: Snapshot | None = None, *,
                       message: str = "", at: float | None = None) -> None:
        """Mark the source down. A `partial` snapshot (what the failed poll could still measure)
        replaces the previous one; without it the last good snapshot stays (marked by source_up 0).
        `message` and `at` (when it failed) are kept for the status page."""
        with self._lock:
            if partial is not None:
                if partial.source != source:
                    raise ValueError(f"partial snapshot of {partial.source!r} recorded for source {source!r}")
                self._snapshots[source] = partial
            health = self._health.setdefault(source, SourceHealth())
            health.up, health.polled = False, True
            health.poll_duration = duration
            health.errors[reason] = health.errors.get(reason, 0) + 1
            health.last_error, health.last_error_message, health.last_failure = reason, message, at
            self._version += 1

    def all_polled(self) -> bool:
        """True once every source has finished at least one poll (readiness)."""
        with self._lock:
            return all(h.polled for h in self._health.values())

    def view(self) -> View:
        before: tuple[str, ...] | None = None
        with self._lock:
            health = tuple(
                (name, _copy(h)) for name, h in sorted(self._health.items())
            )
            if self._capped_version != self._version:
                previous = self._capped[1].dropped_sources
                self._capped = cap_series(self._snapshots, list(self._health), self._max_series)
                self._capped_version = self._version
                if self._capped[1].dropped_sources != previous:
                    before = previous
            snapshots, cap = self._capped
        if before is not None:
            _report_dropped(before, cap)
        return View(snapshots, health, cap)

    def latest(self) -> Latest:
        """Every source's latest snapshot and health, whatever the series cap left out, with the version
        they are of: what the status page is built from."""
        with self._lock:
            return Latest(self._version, tuple(self._snapshots[name] for name in sorted(self._snapshots)),
                          tuple((name, _copy(h)) for name, h in self._health.items()))

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
                text = render(self.view(), self._render_cache)
                self._payload = (text, gzip.compress(text, compresslevel=6))
                self._rendered_version = version
                self._rendered_at = self._monotonic()
                freed_memory.give_back(len(text), freed_memory.LARGE_RENDER_BYTES)  # the previous payload
            return self._payload
        finally:
            self._render_lock.release()


# The text exposition format 0.0.4, as prometheus_client's generate_latest writes it (tests/test_store.py
# compares the two byte for byte): written here because that path costs about 10 us a series, and a fleet
# exports 160,000 of them. A snapshot's lines are written once and reused by the renders that follow;
# once rendered, they are kept as slices of the exposition itself, so that a fleet's 10 MB of lines are
# held once, not twice.
Chunk = bytes | memoryview
Chunks = dict[str, Chunk]  # metric name -> its sample lines in one snapshot


class RenderCache:
    """Each source's latest snapshot, with its sample lines by metric name."""

    def __init__(self) -> None:
        self._by_source: dict[str, tuple[Snapshot, Chunks]] = {}

    def chunks(self, snapshot: Snapshot) -> Chunks:
        cached = self._by_source.get(snapshot.source)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        self._by_source.pop(snapshot.source, None)  # before its successor is written: one of them at a time
        chunks: Chunks = dict(sample_chunks(snapshot.samples))
        self._by_source[snapshot.source] = (snapshot, chunks)
        return chunks

    def keep_only(self, sources: Iterable[str]) -> None:
        wanted = set(sources)
        for source in [name for name in self._by_source if name not in wanted]:
            del self._by_source[source]


def render(view: View, cache: RenderCache | None = None) -> bytes:
    """Text exposition (format 0.0.4) of one view: every source's samples merged by name in contract
    order, then the exporter's health."""
    cache = cache or RenderCache()
    chunks = [cache.chunks(snapshot) for snapshot in view.snapshots]
    cache.keep_only(snapshot.source for snapshot in view.snapshots)
    # the exporter's own health stands for any sample of the same name a source had
    health = {name: "".join(map(_sample_line, samples)).encode("utf-8")
              for name, samples in _health_samples(view).items()}
    out: list[Chunk] = []
    places: list[tuple[Chunks, str, int, int]] = []  # where each cached chunk lands in the exposition
    size = 0
    for spec in CONTRACT:
        name = spec.name
        if name in health:
            if health[name]:
                out += [_HEADERS[name], health[name]]
                size += len(_HEADERS[name]) + len(health[name])
            continue
        found = [(chunk, piece) for chunk in chunks if (piece := chunk.get(name))]
        if not found:
            continue
        out.append(_HEADERS[name])
        size += len(_HEADERS[name])
        for chunk, piece in found:
            out.append(piece)
            places.append((chunk, name, size, size + len(piece)))
            size += len(piece)
    body = b"".join(out)
    del out
    whole = memoryview(body)
    for chunk, name, start, end in places:
        chunk[name] = whole[start:end]
    return body


def sample_chunks(samples: Iterable[Sample]) -> dict[str, bytes]:
    """Each metric's sample lines, written one metric at a time: a fleet's 160,000 lines never live as
    small strings all at once (freed, they would leave the allocator's arenas fragmented)."""
    by_name: dict[str, list[Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample)
    return {name: "".join([_sample_line(sample) for sample in by_name.pop(name)]).encode("utf-8")
            for name in list(by_name)}


def _sample_line(sample: Sample) -> str:
    value = _number(sample.value)
    if not sample.labels:
        return f"{sample.name} {value}\n"
    labels = ",".join(f'{key}="{_escape(text)}"' for key, text in sorted(sample.labels))
    return f"{sample.name}{{{labels}}} {value}\n"


def _escape(text: str) -> str:
    if "\\" in text or "\n" in text or '"' in text:
        return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return text


def _number(value: float) -> str:
    """Go's spelling of a float, as Prometheus writes it (prometheus_client's floatToGoString)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go writes large numbers with an exponent sooner than Python does
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


_HEADERS = {spec.name: "# HELP {0} {1}\n# TYPE {0} {2}\n".format(
    spec.name, spec.help.replace("\\", r"\\").replace("\n", r"\n"), spec.kind).encode("utf-8") for spec in CONTRACT}


def _health_samples(view: View) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {
        "batch_exporter_build_info": [Sample("batch_exporter_build_info", (("version", __version__),), 1.0)],
    }
    if view.cap is not None:
        out["batch_exporter_series"] = [Sample("batch_exporter_series", (), float(view.cap.series))]
        out["batch_exporter_series_limit"] = [Sample("batch_exporter_series_limit", (), float(view.cap.limit))]
        out["batch_exporter_series_dropped"] = [Sample("batch_exporter_series_dropped", (("source", source),),
                                                       float(count)) for source, count in view.cap.dropped]

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
