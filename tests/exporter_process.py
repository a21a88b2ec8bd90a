"""Run the exporter as a real process and scrape it over HTTP (test helper)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_exposition(text: str) -> Series:
    """{(sample name, sorted labels): value} for every sample in a text exposition."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


class ExporterProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str = "/metrics", timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def scrape(self) -> Series:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_exposition(body)

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition") -> Series:  # type: ignore[no-untyped-def]
        """Scrape until predicate(series) is true; fail with the process log otherwise."""
        deadline = time.monotonic() + timeout
        series: Series = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited {self.proc.returncode}:\n{self.log()}")
            try:
                series = self.scrape()
                if predicate(series):
                    return series
            except (OSError, AssertionError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last scrape had {len(series)} series\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def running_exporter(config: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
                     ready_timeout: float = 30) -> Iterator[ExporterProcess]:
    """Start `batch-exporter run` on a free port, wait until it answers, stop it afterwards."""
    port = free_port()
    log_path = tmp_path / f"exporter-{port}.log"
    args = [sys.executable, "-m", "batch_exporter.cli", "--log.level", "debug", "run", "-c", str(config),
            "--web.listen-address", f"127.0.0.1:{port}", *extra]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    exporter = ExporterProcess(proc, port, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited {proc.returncode}:\n{exporter.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"exporter did not listen:\n{exporter.log()}") from None
                time.sleep(0.1)
        yield exporter
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_once(config: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`batch-exporter once`: (exit code, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "once", "-c", str(config)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr
