"""One exporter's life: built from a configuration, polled, started, reloaded, stopped, served.

`run`, `once`, the demo and the drills all go through ExporterService; `serve` is what `run` and
the demo do with one until SIGINT/SIGTERM.
"""
from __future__ import annotations

import gzip
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .app import Exporter
from .config import Config, ConfigError, load_config
from .state_dir import StateDirError
from .status_model import SourceReport, Status, build_status
from .status_page import JSON_HEADERS, PAGE_HEADERS, render_status_page
from .store import Latest, SeriesCap, Store, render
from .web import MetricsServer, Page
from .webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger(__name__)


class ExporterService:
    """The exporter of one configuration at a time; what the HTTP server talks to.

    Built and polled nothing yet: `poll_once` polls every source now, `start` polls on schedule in the
    background, `reload` swaps in a new configuration without a gap in serving, `stop` ends polling.
    Without `keep_log_state` (a one-off look) logs are read from their start and no position is saved.
    Raises StateDirError when the log state folder cannot be used.
    """

    def __init__(self, config: Config, *, config_path: Path | None = None, keep_log_state: bool = True,
                 clock: Callable[[], float] = time.time, status_render_interval: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config_path = config_path
        self._keep_log_state = keep_log_state
        self._exporter = Exporter(config, keep_log_state=keep_log_state)
        self._started = False
        self._lock = threading.Lock()
        self._status = StatusPages(clock, str(config_path.absolute()) if config_path is not None else None,
                                   min_render_interval=status_render_interval, monotonic=monotonic)

    @property
    def exporter(self) -> Exporter:
        return self._exporter

    # what MetricsServer asks
    def metrics_payload(self) -> tuple[bytes, bytes]:
        return self._exporter.store.payload()

    def is_ready(self) -> bool:
        return self._exporter.store.all_polled()

    def status_page(self) -> Page:
        return Page(*self._status.page(self._exporter), headers=PAGE_HEADERS)

    def status_json(self) -> Page:
        return Page(*self._status.json(self._exporter), headers=JSON_HEADERS)

    def poll_once(self) -> bool:
        """Poll every source once, now; True when all succeeded."""
        return self._exporter.poller.poll_all_once()

    def exposition(self) -> bytes:
        """The exposition as of now (the served payload may be up to a render interval older)."""
        return render(self._exporter.store.view())

    def start(self) -> None:
        with self._lock:
            self._exporter.start()
            self._started = True

    def reload(self, config: Config | None = None) -> None:
        """Apply a new configuration (by default `config_path` read again): build it, poll it once, swap.

        The old exporter keeps serving until the new one is ready; if loading or building the new one
        fails, the exception propagates and the old one stays in place. Its log scans stop reading first
        and hand their counters and positions over: the new ones go on from there, so no counter goes
        back and no line is counted twice (the old ones serve their last counts meanwhile)."""
        if config is None:
            if self.config_path is None:
                raise ValueError("no configuration file to reload from")
            config = load_config(self.config_path)
        with self._lock:
            old = self._exporter
            handover = old.retire_logs()
            try:
                new = Exporter(config, old.watching_since, keep_log_state=self._keep_log_state, handover=handover)
            except BaseException:
                old.resume_logs()
                raise
            try:
                new.poller.poll_all_once()
            except BaseException:
                new.stop()
                old.resume_logs()
                raise
            self._exporter = new
            old.stop()
            if self._started:
                new.start()
            log.info("configuration reloaded: %d sources", len(new.sources))

    def stop(self) -> None:
        with self._lock:  # not halfway through a reload: the exporter it swaps in would keep running
            self._started = False
            self._exporter.stop()


class StatusPages:
    """The status page and its JSON, each rendered only when asked for, from the store's latest snapshots,
    with its gzip form.

    Like the exposition (Store.payload): a request renders only when the snapshots changed since the last
    render (a reload brings a new store: that is a change too), at most once per `min_render_interval`
    seconds, and never waits for a render another request is doing: it gets the previous bytes. Only the
    very first request of each waits. The model both are written from is built once per render round."""

    def __init__(self, clock: Callable[[], float], config_path: str | None, *, min_render_interval: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._config_path = config_path
        self._min_render_interval = min_render_interval
        self._monotonic = monotonic
        self._model_lock = threading.Lock()
        self._model: tuple[tuple[int, int], Status] | None = None
        self._page = _Rendered(lambda status: render_status_page(status))
        self._json = _Rendered(lambda status: (json.dumps(status.as_json(), ensure_ascii=False, indent=1,
                                                          allow_nan=False) + "\n").encode("utf-8"))

    def page(self, exporter: Exporter) -> tuple[bytes, bytes]:
        """The HTML and its gzip."""
        return self._page.get(lambda: self._status(exporter), self._min_render_interval, self._monotonic)

    def json(self, exporter: Exporter) -> tuple[bytes, bytes]:
        """The JSON and its gzip."""
        return self._json.get(lambda: self._status(exporter), self._min_render_interval, self._monotonic)

    def _status(self, exporter: Exporter) -> tuple[tuple[int, int], Callable[[], Status]]:
        store: Store = exporter.store
        latest = store.latest()
        key = (id(store), latest.version)

        def build() -> Status:
            with self._model_lock:  # the page and the JSON of one round share one model
                if self._model is None or self._model[0] != key:
                    self._model = key, self._build(exporter.config, latest, store.view().cap)
                return self._model[1]
        return key, build

    def _build(self, config: Config, latest: Latest, cap: SeriesCap | None) -> Status:
        reports = [SourceReport(name, h.up, h.polled, h.last_success, h.last_error, h.last_error_message,
                                h.last_failure) for name, h in latest.health]
        return build_status(
            latest.snapshots, reports, now=self._clock(), zones=batch_time_zones(config),
            fleet_zones={name: fleet.runs.timezone for name, fleet in config.fleets.items()},
            config_path=self._config_path, version=__version__, rerun_batches=config.batches,
            unexported=cap.dropped_sources if cap is not None else ())


class _Rendered:
    """One rendering of the status (the page or its JSON) and its gzip, re-rendered as StatusPages says."""

    def __init__(self, write: Callable[[Status], bytes]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._at = float("-inf")
        self._bytes = (b"", b"")

    def get(self, current: Callable[[], tuple[tuple[int, int], Callable[[], Status]]], interval: float,
            monotonic: Callable[[], float]) -> tuple[bytes, bytes]:
        key, status = current()
        if key == self._key:
            return self._bytes
        first = self._key is None
        if not first and monotonic() - self._at < interval:
            return self._bytes
        if not self._lock.acquire(blocking=first):
            return self._bytes  # another request is rendering: the previous bytes meanwhile
        try:
            if self._key != key:
                text = self._write(status())
                self._bytes = (text, gzip.compress(text, compresslevel=6))
                self._key = key
                self._at = monotonic()
            return self._bytes
        finally:
            self._lock.release()


def batch_time_zones(config: Config) -> dict[str, str]:
    """Each batch's own time zone: its schedule's, else the one its run table's times are read in, else UTC."""
    zones = {}
    for name, batch in config.batches.items():
        if batch.schedule is not None:
            zones[name] = batch.schedule.timezone
        elif batch.runs is not None:
            zones[name] = batch.runs.timezone
        else:
            zones[name] = "UTC"
    return zones


def serve(config: Config, config_path: Path | None, listen: str, web_config: WebConfig | None,
          stop: threading.Event | None = None, web_config_path: Path | None = None) -> int:
    """Serve until SIGINT/SIGTERM (or `stop`); SIGHUP re-reads the configuration file and the web
    config file (TLS, users); a file that no longer validates is reported and the running one kept.
    Returns the process's exit code."""
    try:
        service = ExporterService(config, config_path=config_path)
    except StateDirError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        server = MetricsServer(listen, service, web_config)
        server.start()
    except (OSError, ValueError) as exc:
        print(f"cannot serve on --web.listen-address {listen!r}: {exc}", file=sys.stderr)
        service.stop()
        return 1
    service.start()
    log.info("serving on %s (port %d), %d sources", listen, server.port, len(service.exporter.sources))
    stop = stop or threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        stop.set()

    def on_hup(signum: int, _frame: object) -> None:
        reload_requested.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGTERM, on_stop)
        if hasattr(signal, "SIGHUP") and config_path is not None:
            signal.signal(signal.SIGHUP, on_hup)
    try:
        while not stop.wait(0.5):
            if reload_requested.is_set():
                reload_requested.clear()
                _reload(service)
                _reload_web(server, web_config_path)
    finally:
        server.shutdown()
        service.stop()
    return 0


def _reload(service: ExporterService) -> None:
    if service.config_path is None:
        return
    try:
        service.reload()
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration:\n%s", exc)
    except Exception:  # the process is serving: report, keep the running configuration
        log.exception("reload failed, keeping the running configuration")


def _reload_web(server: MetricsServer, path: Path | None) -> None:
    if path is None:
        return
    try:
        server.reload_web_config(load_web_config(path))
    except WebConfigError as exc:
        log.error("web config reload refused, keeping the running one:\n%s", exc)
        return
    log.info("web configuration reloaded from %s", path)
