"""`batch-exporter healthcheck`: does the exporter beside this process answer on /-/healthy?

A container's HEALTHCHECK runs as a separate process, so it cannot know the `--web.listen-address`
the exporter was started with. It reads it from the serving process's command line in /proc instead
(PID 1 in a container), which keeps the check right for any address the operator chooses.
"""
from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .web import DEFAULT_PORT, parse_listen_address
from .webconfig import WebConfigError, load_web_config

SERVING_COMMANDS = frozenset({"run", "demo"})
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class Target:
    """Where the serving exporter listens, and the web config file it was given (TLS, users)."""

    listen: str = f":{DEFAULT_PORT}"
    web_config: Path | None = None


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of `name=VALUE` or `name VALUE` in a command line; the last one wins, as in argparse."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


def is_serving_exporter(argv: list[str]) -> bool:
    """A `batch-exporter run|demo ...` command line (the console script runs under a Python interpreter)."""
    for i, arg in enumerate(argv):
        if Path(arg).name == "batch-exporter":
            return any(a in SERVING_COMMANDS for a in argv[i + 1:])
    return False


def find_target(proc: Path, own_pid: int) -> Target:
    """The serving exporter with the lowest process id, or the image's default when none is found."""
    pids = sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    for pid in pids:
        if pid == own_pid:
            continue
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        if not is_serving_exporter(argv):
            continue
        web_config = flag_value(argv, "--web.config.file")
        path = None
        if web_config is not None:
            path = Path(web_config)
            if not path.is_absolute():
                path = (proc / str(pid) / "cwd").resolve() / path
        return Target(flag_value(argv, "--web.listen-address") or f":{DEFAULT_PORT}", path)
    return Target()


def health_url(listen: str, tls: bool) -> str:
    host, port = parse_listen_address(listen)
    host = _LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/-/healthy"


def check(target: Target, timeout: float = 4.0) -> tuple[bool, str]:
    """(healthy, what happened). With basic auth a 401 still shows a live server; TLS is not verified,
    because the question is whether the process answers, not who it is."""
    tls = False
    needs_auth = False
    if target.web_config is not None:
        try:
            web = load_web_config(target.web_config)
        except WebConfigError as exc:
            return False, f"cannot read the exporter's web config: {exc}"
        tls = web.tls is not None
        needs_auth = bool(web.basic_auth_users)
    url = health_url(target.listen, tls)
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return True, f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and needs_auth:
            return True, f"{url} answered 401 (basic auth is on)"
        return False, f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def run(listen: str | None, proc: Path = Path("/proc"), own_pid: int | None = None) -> int:
    target = find_target(proc, os.getpid() if own_pid is None else own_pid) if proc.is_dir() else Target()
    if listen is not None:
        target = Target(listen, target.web_config)
    healthy, detail = check(target)
    print(("healthy: " if healthy else "unhealthy: ") + detail)
    return 0 if healthy else 1
