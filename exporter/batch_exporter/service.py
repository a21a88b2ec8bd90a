"""One exporter's life: built from a configuration, polled, started, reloaded, stopped, served.

`run`, `once`, the demo and the drills all go through ExporterService; `serve` is what `run` and
the demo do with one until SIGINT/SIGTERM.
"""
from __future__ import annotations

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
from .status_model import SourceReport, build_status
from .status_page import render_status_page
from .store import Latest, Store, render
from .web import MetricsServer
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
                 clock: Callable[[], float] = time.time) -> None:
        self.config_path = config_path
        self._keep_log_state = keep_log_state
        self._exporter = Exporter(config, keep_log_state=keep_log_state)
        self._started = False
        self._lock = threading.Lock()
        self._status = StatusPages(clock, str(config_path.absolute()) if config_path is not None else None)

    @property
    def exporter(self) -> Exporter:
        return self._exporter

    # what MetricsServer asks
    def metrics_payload(self) -> tuple[bytes, bytes]:
        return self._exporter.store.payload()

    def is_ready(self) -> bool:
        return self._exporter.store.all_polled()

    def status_page(self) -> bytes:
        return self._status.payload(self._exporter)[0]

    def status_json(self) -> bytes:
        return self._status.payload(self._exporter)[1]

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
    """The status page and its JSON, rendered from the store's latest snapshots once per change of them
    (a reload brings a new store: that is a change too), like the exposition."""

    def __init__(self, clock: Callable[[], float], config_path: str | None) -> None:
        self._clock = clock
        self._config_path = config_path
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self._payload = (b"", b"")

    def payload(self, exporter: Exporter) -> tuple[bytes, bytes]:
        store: Store = exporter.store
        with self._lock:  # renders are rare (once per poll at most) and cheap: the next caller waits for one
            latest = store.latest()
            key = (id(store), latest.version)
            if key != self._key:
                self._payload = self._render(exporter.config, latest)
                self._key = key
            return self._payload

    def _render(self, config: Config, latest: Latest) -> tuple[bytes, bytes]:
        reports = [SourceReport(name, h.up, h.polled, h.last_success, h.last_error, h.last_error_message,
                                h.last_failure) for name, h in latest.health]
        status = build_status(
            latest.snapshots, reports, now=self._clock(), zones=batch_time_zones(config),
            fleet_zones={name: fleet.runs.timezone for name, fleet in config.fleets.items()},
            config_path=self._config_path, version=__version__, rerun_batches=config.batches)
        text = json.dumps(status.as_json(), ensure_ascii=False, indent=1, allow_nan=False) + "\n"
        return render_status_page(status), text.encode("utf-8")


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
