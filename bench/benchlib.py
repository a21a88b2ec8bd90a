"""What the PostgreSQL benchmarks share: the local database, timed queries with their plans, and exporters
started as processes, loaded by wrk and measured (memory, database connections, exposition size).

Used by scrape_bench.py and fleet_bench.py; not a benchmark itself (run_all.sh runs `*_bench.py` only).
Only 127.0.0.1 is used, and every process started here is stopped before its block ends.
"""
from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # PyYAML, a dependency of batch-exporter

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
EXPORTER_SOURCE = ROOT / "exporter"
if str(EXPORTER_SOURCE) not in sys.path:
    sys.path.insert(0, str(EXPORTER_SOURCE))  # works from a checkout even without `pip install -e .`

ODBC = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;DATABASE=test;UID=postgres;PWD=;"
PG_URL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"  # prometheus-sql-exporter (Go lib/pq)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def connect() -> Any:
    """An autocommit pyodbc connection to the local PostgreSQL (pyodbc has no type hints: Any)."""
    pyodbc = importlib.import_module("pyodbc")
    return pyodbc.connect(ODBC, autocommit=True, timeout=5)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_yaml(path: Path, content: object) -> Path:
    """`content` as YAML without anchors (each batch spelled out, as a person would write it)."""
    path.write_text(yaml.dump(content, sort_keys=False, Dumper=_NoAliases), encoding="utf-8")
    return path


def server_max_connections(cursor: Any) -> int:
    cursor.execute("SELECT current_setting('max_connections')::int")
    return int(cursor.fetchone()[0])


# --- timed queries ----------------------------------------------------------------------------------


@dataclass
class Timing:
    label: str
    median_ms: float
    min_ms: float
    rows: int | None = None
    plan: str = ""


def time_call(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(median ms, fastest ms, last result) of `repeat` calls after one warm call (connection, caches)."""
    result = call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples), result


def plan_of(cursor: Any, sql: str, params: Sequence[object] = ()) -> str:
    """Node types of EXPLAIN's plan, outermost first, with the index or table each scan reads."""
    cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", tuple(params))
    raw = cursor.fetchone()[0]
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    parts: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        text = node["Node Type"]
        if "Index Name" in node:
            text += f" ({node['Index Name']})"
        elif "Relation Name" in node:
            text += f" ({node['Relation Name']})"
        parts.append(text)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return " > ".join(parts)


# --- serving processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None,
             timeout: float = 5) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def exporter_argv(config_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """`batch-exporter run` of this checkout's package, and the environment it needs."""
    script = Path(sys.executable).parent / "batch-exporter"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "batch_exporter.cli"]
    pythonpath = os.pathsep.join(p for p in (str(EXPORTER_SOURCE), os.environ.get("PYTHONPATH")) if p)
    argv = command + ["--log.level", "warn", "run", "-c", str(config_path),
                      "--web.listen-address", f"127.0.0.1:{port}"]
    return argv, {"PYTHONPATH": pythonpath}


@dataclass
class System:
    """One exporter to start, and what tells that its cache is full: each of `ready_metrics` carries
    at least `batches` distinct batch labels."""

    key: str
    title: str
    argv: list[str]
    port: int
    ready_metrics: tuple[str, ...]
    batches: int
    ready_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    raw: str = ""


@dataclass
class Round:
    """One start-load-stop of one system."""

    wrk: WrkResult
    ready_seconds: float
    rss_warm_mib: float
    rss_after_mib: float
    rss_peak_mib: float
    db_connections: int


@dataclass
class Measured:
    key: str
    title: str
    rounds: list[Round] = field(default_factory=list)
    series: int | None = None
    body_bytes: int | None = None
    wire_bytes: int | None = None  # what a scrape asking for gzip receives
    gzip: bool | None = None  # whether that answer was gzip-compressed
    gzip_bytes: int | None = None  # the body gzip-compressed (level 6) here, whoever served it


def batches_in(text: str, metric: str) -> int:
    """Distinct batch label values among the samples of `metric`."""
    pattern = re.compile(rf'^{re.escape(metric)}\{{[^}}]*batch="([^"]+)"', re.M)
    return len(set(pattern.findall(text)))


def series_count(body: str) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def sources_down(text: str) -> str:
    """batch-exporter's own account of failing sources, e.g. '7 sources down (connect: 9)'; '' if none."""
    down = re.findall(r'^batch_exporter_source_up\{source="[^"]+"\} 0(?:\.0)?$', text, re.M)
    reasons: dict[str, float] = {}
    errors = r'^batch_exporter_source_errors_total\{[^}]*reason="([^"]+)"\} (\S+)$'
    for reason, count in re.findall(errors, text, re.M):
        reasons[reason] = reasons.get(reason, 0) + float(count)
    if not down:
        return ""
    detail = ", ".join(f"{reason}: {count:g}" for reason, count in sorted(reasons.items()))
    return f"{len(down)} sources down ({detail or 'no errors counted'})"


@contextmanager
def running(system: System, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start the exporter and stop it (TERM, then KILL) however the block ends."""
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(system.argv, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, **system.env}, cwd=OUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def fetch_metrics(url: str, timeout: float = 30) -> tuple[int, str]:
    """Status and text of /metrics, asked for with gzip (cheaper to move for large expositions)."""
    status, body, headers = http_get(url + "/metrics", {"Accept-Encoding": "gzip"}, timeout=timeout)
    if headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return status, body.decode("utf-8", "replace")


def wait_until_cached(system: System, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for readiness and for every batch in each ready metric; return the last body."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{system.title} exited with code {proc.returncode}")
        try:
            ready = system.ready_path is None or http_get(system.url + system.ready_path, timeout=2)[0] == 200
            if ready:
                status, last = fetch_metrics(system.url)
                if status == 200 and all(batches_in(last, metric) >= system.batches
                                         for metric in system.ready_metrics):
                    return last
        except OSError:  # not listening yet, or a slow first answer
            pass
        time.sleep(0.3 if len(last) < 1_000_000 else 1.0)  # a large body costs the server a render
    found = ", ".join(f"{metric}: {batches_in(last, metric)}" for metric in system.ready_metrics)
    down = sources_down(last)
    raise TimeoutError(f"not all {system.batches} batches served within {timeout:g}s ({found}"
                       f"{'; ' + down if down else ''})")


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def db_connections(pid: int, port: int = 5432) -> int:
    """Established TCP connections from the process to `port`, read from /proc (no extra DB session)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s, p50, p99 and error count from `wrk --latency` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rate and p50 and p99 and total):
        raise ValueError(f"cannot read wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(float(rate[1]), _ms(p50[1]), _ms(p99[1]), int(total[1]), errors, output)


def run_wrk(url: str, seconds: float, threads: int, connections: int) -> WrkResult:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s",
            "-H", "Accept-Encoding: gzip", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout)


def measure_round(system: System, result: Measured, args: argparse.Namespace,
                  log: Callable[[str], None], on_body: Callable[[str], None] | None = None) -> None:
    """Start the system, wait for a full cache, warm up, load it, read its memory, stop it.

    `args` gives warmup, duration, threads, connections and ready_timeout; `on_body` sees the first
    full exposition of the system (once per Measured)."""
    with running(system, OUT / f"{system.key}.log") as proc:
        started = time.monotonic()
        body = wait_until_cached(system, proc, args.ready_timeout)
        ready_seconds = time.monotonic() - started
        run_wrk(system.url + "/metrics", args.warmup, args.threads, args.connections)
        rss_warm, _ = memory_mib(proc.pid)
        connections = db_connections(proc.pid)
        if result.series is None:
            raw = body.encode()
            result.series = series_count(body)
            result.body_bytes = len(raw)
            result.gzip_bytes = len(gzip.compress(raw, compresslevel=6))
            _, wire, headers = http_get(system.url + "/metrics", {"Accept-Encoding": "gzip"}, timeout=30)
            result.wire_bytes = len(wire)
            result.gzip = headers.get("Content-Encoding", "").lower() == "gzip"
            if result.gzip:
                gzip.decompress(wire)  # a broken gzip body would make the throughput meaningless
            if on_body is not None:
                on_body(body)
        wrk = run_wrk(system.url + "/metrics", args.duration, args.threads, args.connections)
        rss_after, rss_peak = memory_mib(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f"exited during the load (code {proc.returncode})")
    result.rounds.append(Round(wrk, ready_seconds, rss_warm, rss_after, rss_peak, connections))
    log(f"  {system.title}: ready {ready_seconds:.1f}s, {wrk.requests_per_second:.0f} req/s, "
        f"p99 {wrk.p99_ms:.1f} ms, RSS {rss_after:.1f} MiB, {connections} DB connections")


# --- report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A system's rounds in one line: medians, except peak memory (highest) and errors (sum)."""

    title: str
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_warm_mib: float
    rss_after_mib: float
    rss_peak_mib: float
    db_connections: float

    @classmethod
    def of(cls, m: Measured) -> Summary:
        def med(value: Callable[[Round], float]) -> float:
            return statistics.median(value(r) for r in m.rounds)

        return cls(m.title, med(lambda r: r.wrk.requests_per_second), med(lambda r: r.wrk.p50_ms),
                   med(lambda r: r.wrk.p99_ms), sum(r.wrk.errors for r in m.rounds),
                   med(lambda r: r.rss_warm_mib), med(lambda r: r.rss_after_mib),
                   max(r.rss_peak_mib for r in m.rounds), med(lambda r: r.db_connections))


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")
