"""A real Prometheus and Alertmanager on loopback, built from the shipped rules and routing.

The shipped Prometheus config, `*.rules.yml` files and Alertmanager config are copied into a
temporary folder with the repository's layout (`deploy/prometheus/prometheus.yml` next to
`../../alerts/`), and an `Overlay` of short intervals, loopback ports and webhook URLs is applied to
the copies. The shipped files are never modified.

The shipped files are found in the source checkout the package runs from (an editable install or
`python -m` from the repository), else in the current folder when it is a checkout, else in the
installed package, where setup.py copies them when the wheel is built (`batch_exporter/shipped/`, with
the repository's layout). Other files are named with `ShippedFiles.locate(rules_dir=...,
prometheus_config=...)` (the `--rules-dir` and `--prometheus-config` flags of `demo --stack` and `drill`).

Used by `batch-exporter demo --stack`, `batch-exporter drill` and the end-to-end tests. Needs only the
standard library and PyYAML, plus the Debian `prometheus` and `prometheus-alertmanager` binaries.

    with WebhookRecorder() as hook, PromStack(workdir, exporter_targets=["127.0.0.1:10117"],
                                                 webhook_base=hook.url) as stack:
        wait_until(lambda: hook.alerts("pager"), timeout=30, what="a page")
"""
from __future__ import annotations

import atexit
import functools
import importlib.resources
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml

# The checkout this package was loaded from, when it was (exporter/batch_exporter/practice/stack.py).
PACKAGE_CHECKOUT = Path(__file__).resolve().parents[3]
# The copy of the shipped files in an installed package (batch_exporter/shipped/, made by setup.py).
INSTALLED_SHIPPED = "shipped"
PROMETHEUS_CONFIG = Path("deploy/prometheus/prometheus.yml")
ALERTMANAGER_CONFIG = Path("alerts/alertmanager.yml")
RULES_GLOB = "alerts/*.rules.yml"
RULES_PATTERN = "*.rules.yml"
EXPORTER_JOB = "batch-exporter"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"

T = TypeVar("T")


class StackError(RuntimeError):
    """A binary or file is missing, a process exited early or did not become ready, or an API call failed."""


class MissingBinaryError(StackError):
    """Neither the named binary nor any of its usual names is on PATH."""


@dataclass(frozen=True)
class ShippedFiles:
    """The stack's three shipped inputs: the Prometheus config, the rule files, the Alertmanager config."""

    prometheus_config: Path
    rules: tuple[Path, ...]
    alertmanager_config: Path

    @classmethod
    def from_root(cls, root: Path) -> ShippedFiles:
        """The files of a checkout at `root` (raises StackError naming what is missing)."""
        return cls.locate(root=root)

    @classmethod
    def locate(
        cls,
        *,
        root: Path | None = None,
        rules_dir: Path | None = None,
        prometheus_config: Path | None = None,
        alertmanager_config: Path | None = None,
    ) -> ShippedFiles:
        """Explicit paths win; the rest come from `root`, else the package's checkout, else the cwd when
        it is a checkout, else the installed package's copy.

        `rules_dir` holds the `*.rules.yml` files and, unless `alertmanager_config` is given, the
        Alertmanager config as `alertmanager.yml` (the layout of the repository's `alerts/`).
        """
        base = root if root is not None else _find_shipped_root()
        if rules_dir is None and base is not None:
            rules_dir = base / RULES_GLOB.split("/")[0]
        if prometheus_config is None and base is not None:
            prometheus_config = base / PROMETHEUS_CONFIG
        if alertmanager_config is None and rules_dir is not None:
            alertmanager_config = rules_dir / ALERTMANAGER_CONFIG.name
        if rules_dir is None or prometheus_config is None or alertmanager_config is None:
            raise StackError(
                "cannot find the shipped alert rules and Prometheus config: neither this installation "
                "(batch_exporter/shipped/, copied there when the package is built) nor a source checkout "
                "has them. Reinstall batch-exporter, run from a checkout (pip install -e .), or pass "
                "--rules-dir ALERTS_DIR and --prometheus-config PROMETHEUS_YML"
            )
        rules = tuple(sorted(Path(rules_dir).glob(RULES_PATTERN)))
        if not rules:
            raise StackError(f"{rules_dir}: no {RULES_PATTERN} files (expected the repository's alerts/)")
        for path in (prometheus_config, alertmanager_config):
            if not Path(path).is_file():
                raise StackError(f"{path}: no such file (the shipped configuration the stack starts from)")
        return cls(Path(prometheus_config), rules, Path(alertmanager_config))


def _has_shipped_files(root: Path) -> bool:
    return (root / PROMETHEUS_CONFIG).is_file() and any(root.glob(RULES_GLOB))


def _find_shipped_root() -> Path | None:
    """A folder with the repository's layout: the package's checkout, the cwd, or the installed copy."""
    for candidate in (PACKAGE_CHECKOUT, Path.cwd()):
        if _has_shipped_files(candidate):
            return candidate
    installed = _installed_shipped()
    return installed if installed is not None and _has_shipped_files(installed) else None


# what as_file extracted from a zipped installation, removed when the process exits
_EXTRACTED = ExitStack()
atexit.register(_EXTRACTED.close)


@functools.cache
def _installed_shipped() -> Path | None:
    """The installed package's copy of the shipped files, as a real folder (Prometheus reads paths)."""
    folder = importlib.resources.files("batch_exporter").joinpath(INSTALLED_SHIPPED)
    if not folder.is_dir():
        return None  # an editable install or a checkout: setup.py made no copy
    # the folder itself when installed from a wheel; a temporary copy when imported from a zip (Python 3.12+)
    return _EXTRACTED.enter_context(importlib.resources.as_file(folder))


def _shipped(repo_root: Path | None, shipped: ShippedFiles | None) -> ShippedFiles:
    if shipped is not None:
        return shipped
    return ShippedFiles.locate(root=repo_root)


@dataclass(frozen=True)
class Overlay:
    """Short timings laid over the copies of the shipped files.

    `alert_for` replaces every non-zero `for` and `keep_firing_for` every `keep_firing_for` in the
    rules (None keeps the shipped value); zero `for` stays zero; the alerts named in `shipped_for` keep
    their `for`. Expressions, their range windows, labels and annotations are untouched.
    """

    scrape_interval: str = "1s"
    scrape_timeout: str = "1s"
    evaluation_interval: str = "1s"
    alert_for: str | None = "2s"
    keep_firing_for: str | None = "2s"
    resend_delay: str = "1s"
    group_wait: str = "1s"
    group_interval: str = "1s"
    repeat_interval: str = "1h"
    shipped_for: tuple[str, ...] = ()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def find_binary(names: Sequence[str], explicit: str | None = None) -> str:
    """The first of `names` on PATH (or `explicit`, a name or a path); raises with an install hint."""
    for name in [explicit] if explicit else list(names):
        found = shutil.which(name)
        if found:
            return found
    wanted = explicit or " or ".join(names)
    raise MissingBinaryError(f"{wanted} not found on PATH; install it with: {INSTALL_HINT}")


@dataclass(frozen=True)
class StackBinaries:
    """The Prometheus and Alertmanager binaries a PromStack runs."""

    prometheus: str
    alertmanager: str

    @classmethod
    def find(cls, prometheus: str | None = None, alertmanager: str | None = None) -> StackBinaries:
        """Each as named (a name or a path), else under its usual names on PATH; MissingBinaryError if absent."""
        return cls(find_binary(["prometheus"], prometheus),
                   find_binary(["prometheus-alertmanager", "alertmanager"], alertmanager))


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so `finally` blocks stop the servers and restore.

    Only in the main thread (elsewhere the block runs unchanged). The previous handler comes back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block has ended, then go to their handlers.

    Around starting a server (a child started but not yet recorded could not be stopped) and stopping
    them (an interrupt in the middle would leave the rest running).
    """
    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield  # handlers can only be changed in the main thread, and one set outside Python cannot be put back
        return
    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held_signum in dict.fromkeys(held):
            signal.raise_signal(held_signum)


def _rewrite_rules(rules: dict[str, Any], overlay: Overlay) -> dict[str, Any]:
    for group in rules.get("groups", []):
        group.pop("interval", None)  # the overlay's evaluation_interval applies to every group
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            if (overlay.alert_for is not None and rule.get("for") not in (None, "0s", "0m", 0)
                    and rule["alert"] not in overlay.shipped_for):
                rule["for"] = overlay.alert_for
            if overlay.keep_firing_for is not None and "keep_firing_for" in rule:
                rule["keep_firing_for"] = overlay.keep_firing_for
    return rules


def prepare_prometheus(
    workdir: Path,
    *,
    exporter_targets: Sequence[str],
    alertmanager: str,
    overlay: Overlay,
    repo_root: Path | None = None,
    scrape_extra: Mapping[str, Any] | None = None,
    shipped: ShippedFiles | None = None,
) -> Path:
    """Copy the shipped Prometheus config and rules into `workdir` with the overlay; return the config path.

    The copy keeps the repository layout: the config in `deploy/prometheus/`, the rules in `alerts/`,
    and `rule_files` pointing at the copied rules. `scrape_extra` is merged into the batch-exporter
    scrape job (e.g. scheme, basic_auth, tls_config).
    """
    files = _shipped(repo_root, shipped)
    config = yaml.safe_load(files.prometheus_config.read_text(encoding="utf-8"))
    config.setdefault("global", {}).update(
        scrape_interval=overlay.scrape_interval,
        scrape_timeout=overlay.scrape_timeout,
        evaluation_interval=overlay.evaluation_interval,
    )
    config["rule_files"] = [f"../../{RULES_GLOB}"]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    jobs = [job for job in config.get("scrape_configs", []) if job.get("job_name") == EXPORTER_JOB]
    if len(jobs) != 1:
        raise StackError(f"{files.prometheus_config}: expected one scrape job named {EXPORTER_JOB}")
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    jobs[0]["static_configs"] = [{"targets": list(exporter_targets)}]
    jobs[0].update(scrape_extra or {})

    config_path = workdir / PROMETHEUS_CONFIG
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    rules_dir = workdir / Path(RULES_GLOB).parent
    rules_dir.mkdir(parents=True, exist_ok=True)
    for source in files.rules:
        rules = yaml.safe_load(source.read_text(encoding="utf-8"))
        (rules_dir / source.name).write_text(
            yaml.safe_dump(_rewrite_rules(rules, overlay), sort_keys=False), encoding="utf-8"
        )
    return config_path


def _walk_routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _walk_routes(child)


def alertmanager_config(
    *,
    webhook_base: str | None,
    overlay: Overlay,
    repo_root: Path | None = None,
    shipped: ShippedFiles | None = None,
) -> dict[str, Any]:
    """The shipped Alertmanager config with the overlay's timings.

    With `webhook_base`, every webhook URL of a receiver becomes `<webhook_base>/<receiver name>`,
    so one recorder sees which receiver each notification went to.
    """
    files = _shipped(repo_root, shipped)
    config: dict[str, Any] = yaml.safe_load(files.alertmanager_config.read_text(encoding="utf-8"))
    timings = {
        "group_wait": overlay.group_wait,
        "group_interval": overlay.group_interval,
        "repeat_interval": overlay.repeat_interval,
    }
    for route in _walk_routes(config["route"]):
        for key, value in timings.items():
            if key in route or route is config["route"]:
                route[key] = value
    if webhook_base is not None:
        for receiver in config.get("receivers", []):
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = f"{webhook_base.rstrip('/')}/{receiver['name']}"
    return config


class _Process:
    """One server process with its log file and a readiness endpoint."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_url: str) -> None:
        self.name = name
        self._argv = argv
        self._log_path = log_path
        self._ready_url = ready_url
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("wb") as log, _signals_held():
            self._proc = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us only; we stop the servers in order
            )

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self._ready_url, timeout=2) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(ready, timeout=timeout, what=f"{self.name} at {self._ready_url}")
        except TimeoutError as exc:
            raise StackError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"(no log at {self._log_path})"
        return "\n".join(text.splitlines()[-lines:])


class PromStack:
    """Prometheus with the shipped rules and Alertmanager with the shipped routing, on loopback.

    `workdir` (an empty temporary folder) receives the config copies, both data folders and the
    process logs (`prometheus.log`, `alertmanager.log`). Binaries are looked up when the object is
    made (unless given as `binaries`), so a missing one raises MissingBinaryError before anything starts.
    Every exit path stops both servers: `start` stops what it started when it fails or is interrupted,
    and an interrupt during `stop` waits until both have stopped.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        exporter_targets: Sequence[str] = (),
        webhook_base: str | None = None,
        overlay: Overlay = Overlay(),
        repo_root: Path | None = None,
        scrape_extra: Mapping[str, Any] | None = None,
        binaries: StackBinaries | None = None,
        shipped: ShippedFiles | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.overlay = overlay
        self.binaries = binaries or StackBinaries.find()
        self.shipped = _shipped(repo_root, shipped)
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"
        self.alertmanager_url = f"http://127.0.0.1:{self.alertmanager_port}"
        self._exporter_targets = list(exporter_targets)
        self._webhook_base = webhook_base
        self._scrape_extra = scrape_extra
        self._processes: list[_Process] = []

    def start(self, timeout: float = 30.0) -> Self:
        """Write the configs, start both servers and wait until both answer /-/ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        am_config = self.workdir / "alertmanager.yml"
        am_config.write_text(
            yaml.safe_dump(
                alertmanager_config(webhook_base=self._webhook_base, overlay=self.overlay,
                                    shipped=self.shipped),
                sort_keys=False,
            ),
            encoding="utf-8",
        )
        prom_config = prepare_prometheus(
            self.workdir,
            exporter_targets=self._exporter_targets,
            alertmanager=f"127.0.0.1:{self.alertmanager_port}",
            overlay=self.overlay,
            scrape_extra=self._scrape_extra,
            shipped=self.shipped,
        )
        self._processes = [
            _Process(
                "alertmanager",
                [
                    self.binaries.alertmanager,
                    f"--config.file={am_config}",
                    f"--storage.path={self.workdir / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                    "--cluster.listen-address=",  # no gossip port: a single local instance
                ],
                self.workdir / "alertmanager.log",
                f"{self.alertmanager_url}/-/ready",
            ),
            _Process(
                "prometheus",
                [
                    self.binaries.prometheus,
                    f"--config.file={prom_config}",
                    f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                    f"--rules.alert.resend-delay={self.overlay.resend_delay}",
                    "--web.enable-lifecycle",
                ],
                self.workdir / "prometheus.log",
                f"{self.prometheus_url}/-/ready",
            ),
        ]
        try:
            for process in self._processes:
                process.start()
            for process in self._processes:
                process.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        with _signals_held():
            for process in reversed(self._processes):
                process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def logs(self) -> str:
        """The last lines of both servers' logs, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self._processes)

    def prometheus_api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> on Prometheus and return its `data`."""
        body = _get_json(f"{self.prometheus_url}/api/v1/{path}", params)
        if body.get("status") != "success":
            raise StackError(f"Prometheus {path}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector's samples as returned by the API."""
        data = self.prometheus_api("query", query=expr)
        return list(data["result"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.prometheus_api("rules")["groups"])

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them."""
        return list(self.prometheus_api("alerts")["alerts"])

    def alertmanager_alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts on Alertmanager (filters such as inhibited="true")."""
        result = _get_json(f"{self.alertmanager_url}/api/v2/alerts", filters)
        return list(result)

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts straight to Alertmanager's /api/v2/alerts (labels, annotations, ...)."""
        data = json.dumps(list(alerts)).encode()
        request = urllib.request.Request(
            f"{self.alertmanager_url}/api/v2/alerts",
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise StackError(f"Alertmanager refused alerts: {exc.code} {exc.read()!r}") from None


def _get_json(url: str, params: Mapping[str, str]) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise StackError(f"GET {url}: {exc.code} {exc.read()!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StackError(f"GET {url}: {exc}") from None


@dataclass(frozen=True)
class Notification:
    """One webhook POST from Alertmanager: the receiver (from the URL path), its JSON body, when it came."""

    receiver: str
    payload: dict[str, Any]
    received_at: float = field(default_factory=time.time)


class WebhookRecorder:
    """A loopback HTTP server that records Alertmanager webhook notifications.

    Pass `url` as `webhook_base` to PromStack: each receiver then posts to `<url>/<receiver>`.
    `on_notification`, when given, is called (in the server thread) with each notification.
    """

    def __init__(self, on_notification: Callable[[Notification], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._notifications: list[Notification] = []
        self._on_notification = on_notification
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                notification = Notification(self.path.strip("/"), body)
                with recorder._lock:
                    recorder._notifications.append(notification)
                self.send_response(200)
                self.end_headers()
                if recorder._on_notification is not None:
                    recorder._on_notification(notification)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def notifications(self, receiver: str | None = None) -> list[Notification]:
        with self._lock:
            return [n for n in self._notifications if receiver is None or n.receiver == receiver]

    def alerts(self, receiver: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every notification (to `receiver`, with `status` firing/resolved)."""
        return [
            alert
            for n in self.notifications(receiver)
            for alert in n.payload.get("alerts", [])
            if status is None or alert.get("status") == status
        ]
