"""An alerting path with redundancy on loopback: Alertmanagers in one gossip cluster, Prometheus replicas
that each send to every Alertmanager, a static exporter and a webhook recorder (issue 15, item 1).

Built from the pieces of `promstack`: the shipped rules and routing copied with an `Overlay`, the
webhook recorder, free ports. What this adds is more than one of each server, and members that the
test can SIGKILL and start again on the same ports and data. How each Alertmanager is started
(`AlertmanagerArgs`) and what each Prometheus adds to the shipped config (`ReplicaConfig`) come from
the caller: tests/test_ha_paging.py takes both from docs/ha.md. Every process started is stopped
when the `with` block ends, however it ends.

    with StaticExporter(fleet.exposition) as exporter, WebhookRecorder() as hook, \\
            PagingPath(workdir, exporter=exporter.address, recorder=hook, ...) as path:
        path.start_alertmanagers()
        path.wait_settled(timeout=60)
        path.start_prometheus()
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml

from promstack import (
    Overlay,
    StackError,
    WebhookRecorder,
    alertmanager_config,
    find_binary,
    free_port,
    prepare_prometheus,
    wait_until,
)

# --- the exporter: a few batches' series, as of the test's clock ----------------------------------------

STATUSES = ("success", "failed", "running", "queued", "unknown")
RUN_MINUTES = 10.0  # how long a played run takes
POLL_AGE = 5.0      # seconds since a healthy source's last poll, at any moment
STALE_AGE = 1800.0  # a stale source last completed a poll half an hour ago (the rule's limit is 15 min)


@dataclass(frozen=True)
class Run:
    status: str  # success or failed
    start: float
    end: float


class Fleet:
    """The series an exporter serves for a few batches: each batch's latest run and its run source.

    A batch starts with one successful run that ended an hour before the clock's reading at creation;
    `run_fails` and `run_succeeds` play a new run that ends at the current reading. Only the series the
    run and exporter-health rules read are served (no schedule, log or check series), so no other alert
    of the pack can fire. A source named in `stale` has not completed a poll for half an hour, at every
    moment; the others polled a few seconds ago.
    """

    def __init__(self, batches: Sequence[str], clock: Callable[[], float], *, stale: Collection[str] = ()) -> None:
        unknown = set(stale) - set(batches)
        if unknown:
            raise ValueError(f"stale sources of unknown batches: {sorted(unknown)}")
        self._clock = clock
        self._stale = frozenset(stale)
        end = clock() - 3600
        first = Run("success", end - RUN_MINUTES * 60, end)
        self._latest: dict[str, Run] = dict.fromkeys(batches, first)
        self._last_success: dict[str, float] = dict.fromkeys(batches, end)

    def _play(self, batch: str, status: str) -> None:
        if batch not in self._latest:
            raise KeyError(f"{batch!r} is not a batch of this fleet ({', '.join(self._latest)})")
        end = self._clock()
        self._latest[batch] = Run(status, end - RUN_MINUTES * 60, end)
        if status == "success":
            self._last_success[batch] = end

    def run_fails(self, batch: str) -> None:
        self._play(batch, "failed")

    def run_succeeds(self, batch: str) -> None:
        self._play(batch, "success")

    def exposition(self) -> str:
        """The text format, as a scrape at the clock's current reading sees it."""
        now = self._clock()
        families: dict[str, list[tuple[dict[str, str], float]]] = {}

        def sample(name: str, value: float, **labels: str) -> None:
            families.setdefault(name, []).append((labels, value))

        for batch, run in self._latest.items():
            sample("batch_run_idempotent", 1, batch=batch)
            sample("batch_run_last_start_timestamp_seconds", run.start, batch=batch)
            sample("batch_run_last_end_timestamp_seconds", run.end, batch=batch)
            sample("batch_run_last_success_timestamp_seconds", self._last_success[batch], batch=batch)
            sample("batch_run_last_duration_seconds", run.end - run.start, batch=batch)
            for status in STATUSES:
                sample("batch_run_last_status", float(status == run.status), batch=batch, status=status)
            sample("batch_run_last_status_code", 1, batch=batch, code="OK" if run.status == "success" else "ABEND")
            sample("batch_run_running", 0, batch=batch)
            source = f"runs:{batch}"
            sample("batch_exporter_source_up", 1, source=source)
            age = STALE_AGE if batch in self._stale else POLL_AGE
            sample("batch_exporter_source_last_success_timestamp_seconds", now - age, source=source)
        lines = []
        for name, samples in families.items():
            lines.append(f"# TYPE {name} gauge")
            for labels, value in samples:
                inner = ",".join(f'{key}="{text}"' for key, text in labels.items())
                lines.append(f"{name}{{{inner}}} {value!r}")
        return "\n".join(lines) + "\n"


class StaticExporter:
    """Serves `render()` at /metrics on a free loopback port, rendered afresh for every scrape."""

    def __init__(self, render: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- server processes ----------------------------------------------------------------------------------

def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class Server:
    """One server process that can be SIGKILLed and started again with the same arguments and data."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_url: str) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready_url = ready_url
        self.pids: list[int] = []  # of every process this server has been
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise StackError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:  # a restart appends to the same log
            self._proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        self.pids.append(self._proc.pid)

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise StackError(f"{self.name} exited with {code}; the end of {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(ready, timeout=timeout, what=f"{self.name} at {self.ready_url}", interval=0.05)
        except TimeoutError as exc:
            raise StackError(f"{exc}; the end of {self.log_path}:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, no state written to disk."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; reaped either way."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- how the members are started -----------------------------------------------------------------------

@dataclass(frozen=True)
class AlertmanagerSlot:
    """Where one Alertmanager of the cluster lives: its ports, its peers, its files."""

    index: int
    web: str                 # host:port of its API (what Prometheus sends to)
    cluster: str             # host:port of its gossip listener (TCP and UDP)
    peers: tuple[str, ...]   # the other members' gossip addresses
    config_file: Path
    data_dir: Path


# An Alertmanager's command-line arguments (after the binary) for its slot.
AlertmanagerArgs = Callable[[AlertmanagerSlot], list[str]]
# What replica `name` adds to the shipped Prometheus config, given every Alertmanager's address:
# {"global": {...}, "alerting": {...}}; each top-level mapping is merged into the copy's own.
ReplicaConfig = Callable[[str, Sequence[str]], dict[str, Any]]


def without_gossip(args: AlertmanagerArgs) -> AlertmanagerArgs:
    """The same members, each on its own: every --cluster flag dropped and the gossip listener disabled."""
    def alone(slot: AlertmanagerSlot) -> list[str]:
        kept = [arg for arg in args(slot) if not arg.startswith("--cluster.")]
        return [*kept, "--cluster.listen-address="]
    return alone


@dataclass(frozen=True)
class ClusterView:
    """What one Alertmanager says of its cluster (/api/v2/status)."""

    member: int
    status: str               # settling, ready, or disabled without gossip
    peers: tuple[str, ...]    # gossip addresses, itself included


@dataclass(frozen=True)
class Sent:
    """One notification as the webhook received it, and which Alertmanager sent it."""

    receiver: str
    group: str               # the group's labels but the exporter's address: "BatchRunFailed card-authorization"
    status: str              # firing or resolved
    alerts: tuple[str, ...]  # each alert's status
    sender: int              # the Alertmanager's index

    def __str__(self) -> str:
        return f"{self.receiver} {self.group} {self.status}"


def tally(sent: Iterable[Sent]) -> dict[str, int]:
    """How many times each receiver, group and status was notified."""
    return dict(sorted(Counter(str(s) for s in sent).items()))


class PagingPath:
    """N Alertmanagers (one config, one cluster unless the args say otherwise) and Prometheus replicas.

    The shipped Alertmanager config with `overlay`'s timings is written once and given to every member;
    each replica gets a copy of the shipped Prometheus config and rules (`prepare_prometheus`), scraping
    `exporter`, with `replica_config`'s additions. Use as a context manager: leaving it stops every
    server, those that were killed and started again included.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        exporter: str,
        recorder: WebhookRecorder,
        overlay: Overlay,
        alertmanager_args: AlertmanagerArgs,
        replica_config: ReplicaConfig,
        alertmanagers: int = 3,
        replicas: Sequence[str] = ("a", "b"),
    ) -> None:
        self.workdir = workdir
        self.overlay = overlay
        self._recorder = recorder
        self._exporter = exporter
        self._replica_config = replica_config
        self._prometheus_binary = find_binary(["prometheus"])
        alertmanager_binary = find_binary(["prometheus-alertmanager", "alertmanager"])
        workdir.mkdir(parents=True, exist_ok=True)
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(
            yaml.safe_dump(alertmanager_config(webhook_base=recorder.url, overlay=overlay), sort_keys=False),
            encoding="utf-8",
        )
        webs = [f"127.0.0.1:{free_port()}" for _ in range(alertmanagers)]
        gossip = [f"127.0.0.1:{free_port()}" for _ in range(alertmanagers)]
        self.slots = [
            AlertmanagerSlot(i, webs[i], gossip[i], tuple(g for j, g in enumerate(gossip) if j != i),
                             config_file, workdir / f"alertmanager-{i}")
            for i in range(alertmanagers)
        ]
        self.alertmanagers = [
            Server(f"alertmanager-{slot.index}", [alertmanager_binary, *alertmanager_args(slot)],
                   workdir / f"alertmanager-{slot.index}.log", f"http://{slot.web}/-/ready")
            for slot in self.slots
        ]
        self.prometheus: dict[str, Server] = {}
        for name in replicas:
            port = free_port()
            self.prometheus[name] = Server(f"prometheus-{name}", self._prometheus_argv(name, port),
                                           workdir / f"prometheus-{name}.log", f"http://127.0.0.1:{port}/-/ready")

    def _prometheus_argv(self, replica: str, port: int) -> list[str]:
        folder = self.workdir / f"prometheus-{replica}"
        config_path = prepare_prometheus(folder, exporter_targets=[self._exporter],
                                         alertmanager=self.slots[0].web, overlay=self.overlay)
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        for key, value in self._replica_config(replica, [slot.web for slot in self.slots]).items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key].update(value)
            else:
                config[key] = value
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return [self._prometheus_binary, f"--config.file={config_path}", f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", f"--rules.alert.resend-delay={self.overlay.resend_delay}"]

    # --- lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def servers(self) -> list[Server]:
        return [*self.prometheus.values(), *self.alertmanagers]

    def stop(self) -> None:
        """Prometheus first (it would only retry sending), then the Alertmanagers."""
        errors = []
        for server in self.servers():
            try:
                server.stop()
            except Exception as exc:  # stop the others all the same
                errors.append(f"{server.name}: {exc}")
        if errors:
            raise StackError("could not stop " + "; ".join(errors))

    def pids(self) -> set[int]:
        """Every process started, those killed and started again included."""
        return {pid for server in self.servers() for pid in server.pids}

    def start_alertmanagers(self, timeout: float = 60) -> None:
        for server in self.alertmanagers:
            server.start()
        for server in self.alertmanagers:
            server.wait_ready(timeout)

    def start_prometheus(self, timeout: float = 60) -> None:
        for server in self.prometheus.values():
            server.start()
        for server in self.prometheus.values():
            server.wait_ready(timeout)

    def kill_alertmanager(self, index: int) -> None:
        self.alertmanagers[index].kill()

    def restart_alertmanager(self, index: int, timeout: float = 60) -> None:
        self.alertmanagers[index].start()
        self.alertmanagers[index].wait_ready(timeout)

    def kill_prometheus(self, replica: str) -> None:
        self.prometheus[replica].kill()

    def restart_prometheus(self, replica: str, timeout: float = 60) -> None:
        self.prometheus[replica].start()
        self.prometheus[replica].wait_ready(timeout)

    # --- what the servers say

    def cluster(self) -> list[ClusterView]:
        """Each running Alertmanager's view of the cluster."""
        views = []
        for slot, server in zip(self.slots, self.alertmanagers, strict=True):
            if server.running:
                status = get_json(f"http://{slot.web}/api/v2/status")["cluster"]
                peers = tuple(sorted(peer["address"] for peer in status.get("peers") or []))
                views.append(ClusterView(slot.index, status["status"], peers))
        return views

    def wait_settled(self, *, gossip: bool = True, timeout: float = 60) -> list[ClusterView]:
        """Until every running member is ready and sees every running member (or, without gossip, says
        its cluster is disabled); the views at that moment."""
        running = {slot.cluster for slot, server in zip(self.slots, self.alertmanagers, strict=True) if server.running}

        def settled() -> list[ClusterView]:
            try:
                views = self.cluster()
            except (OSError, ValueError, KeyError):
                return []
            if gossip:
                done = all(v.status == "ready" and set(v.peers) == running for v in views)
            else:
                done = all(v.status == "disabled" for v in views)
            return views if done else []

        return wait_until(settled, timeout=timeout, what=f"the Alertmanagers to settle ({len(running)} members)",
                          interval=0.05)

    def wait_sending(self, replica: str, timeout: float = 60) -> None:
        """Until replica's Prometheus has firing alerts and sends to every Alertmanager."""
        url = self.prometheus[replica].ready_url.removesuffix("/-/ready")
        wanted = {f"http://{slot.web}/api/v2/alerts" for slot in self.slots}

        def sending() -> bool:
            try:
                active = get_json(f"{url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
                alerts = get_json(f"{url}/api/v1/alerts")["data"]["alerts"]
            except (OSError, ValueError, KeyError):
                return False
            return {am["url"] for am in active} == wanted and any(a["state"] == "firing" for a in alerts)

        wait_until(sending, timeout=timeout, what=f"prometheus-{replica} to fire and send to every Alertmanager")

    def sent(self) -> list[Sent]:
        """Every notification the recorder received, oldest first."""
        members = {f"http://{slot.web}": slot.index for slot in self.slots}
        out = []
        for note in self._recorder.notifications():
            body = note.payload
            group = " ".join(v for k, v in sorted(body["groupLabels"].items(), key=_group_order) if k != "instance")
            out.append(Sent(note.receiver, group, body["status"], tuple(a["status"] for a in body["alerts"]),
                            members[body["externalURL"].rstrip("/")]))
        return out

    def wait_quiet(self, seconds: float, timeout: float = 120) -> None:
        """Until no notification has arrived for `seconds`."""
        deadline = time.monotonic() + timeout
        count, since = len(self.sent()), time.monotonic()
        while time.monotonic() - since < seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"notifications kept arriving for {timeout:g}s: {tally(self.sent()[count:])}")
            time.sleep(0.1)
            now = len(self.sent())
            if now != count:
                count, since = now, time.monotonic()

    def logs(self) -> str:
        return "\n".join(f"--- {server.name}\n{server.log_tail()}" for server in self.servers())


def _group_order(item: tuple[str, str]) -> tuple[int, str]:
    order = ("alertname", "batch", "attempt")
    return (order.index(item[0]) if item[0] in order else len(order), item[0])
