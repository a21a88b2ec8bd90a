#!/usr/bin/env python3
"""HTTP server under attack: a valid scrape's first login during a wrong-password flood and during a
flood of slow TLS handshakes (issue 11, item 5).

The exporter's web server runs in its own process with TLS and bcrypt basic auth (cost 10, the
`htpasswd -B` default). Each valid scrape logs in as a user not seen before, so bcrypt runs every time
(a first login after a start). Three phases, one run:

1. baseline: valid scrapes with nothing else going on;
2. password flood: 200 threads from 127.0.0.2 sending wrong passwords as fast as they are answered,
   while valid scrapes come from 127.0.0.1 (another client, as Prometheus is in production);
3. slow TLS: 2,000 connections that send the start of a ClientHello and stall, reopened when cut.

Printed: status and latency of each valid scrape, the ratio of the median to the baseline's, the
server's threads and RSS; the target is every valid scrape answered 200 within 10 s (Prometheus'
default scrape timeout). Nothing is asserted.
Usage: .venv/bin/python bench/web_attack_bench.py [--quick] [--exporter FOLDER-OF-AN-OLDER-COPY]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for the throwaway TLS material maker
from tls_material import make_material  # noqa: E402

PASSWORD = "bench password"
USERS = 40
SCRAPE_TIMEOUT = 10.0
_SERVER = """
import sys, gzip, time
sys.path.insert(0, {exporter!r})
from pathlib import Path
from batch_exporter.web import MetricsServer, Page
from batch_exporter.webconfig import load_web_config
payload = b"up 1\\n" * 1000
class Endpoints:
    def metrics_payload(self): return payload, gzip.compress(payload)
    def is_ready(self): return True
    def status_page(self): return Page(b"<!DOCTYPE html>", gzip.compress(b"<!DOCTYPE html>"))
    def status_json(self): return Page(b"{{}}", gzip.compress(b"{{}}"))
server = MetricsServer("127.0.0.1:0", Endpoints(), load_web_config(Path({web!r})))
server.start()
print(server.port, flush=True)
sys.stdin.read()
"""


@contextmanager
def exporter_web(folder: Path, exporter: Path) -> Iterator[tuple[int, int, ssl.SSLContext]]:
    material = make_material(folder / "tls")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    web = folder / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {material.server_cert}\n  key_file: {material.server_key}\n"
                   "basic_auth_users:\n" + "".join(f"  user{i}: '{hashed}'\n" for i in range(USERS)))
    code = _SERVER.format(exporter=str(exporter), web=str(web))
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, process.pid, ssl.create_default_context(cafile=str(material.ca_cert))
    finally:
        process.kill()
        process.wait()


def scrape(port: int, tls: ssl.SSLContext, user: str, password: str, source: str = "127.0.0.1") -> int:
    conn = http.client.HTTPSConnection("localhost", port, timeout=SCRAPE_TIMEOUT, context=tls,
                                       source_address=(source, 0))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Scrapes:
    """Valid first logins, one user each, timed."""

    def __init__(self, port: int, tls: ssl.SSLContext) -> None:
        self.port, self.tls, self.next_user = port, tls, 0

    def run(self, count: int, pause: float) -> list[tuple[str, float]]:
        results = []
        for _ in range(count):
            user = f"user{self.next_user % USERS}"
            self.next_user += 1
            started = time.perf_counter()
            try:
                outcome = str(scrape(self.port, self.tls, user, PASSWORD))
            except OSError as exc:
                outcome = type(exc).__name__
            results.append((outcome, time.perf_counter() - started))
            time.sleep(pause)
        return results


def process_stats(pid: int) -> tuple[int, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


@contextmanager
def background(workers: int, work: Callable[[threading.Event], None]) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=work, args=(stop,), daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(SCRAPE_TIMEOUT + 5)


def password_flood(port: int, tls: ssl.SSLContext, counts: dict[str, int]) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                outcome = str(scrape(port, tls, "user0", "wrong", source="127.0.0.2"))
            except OSError as exc:
                outcome = type(exc).__name__
            counts[outcome] = counts.get(outcome, 0) + 1
    return work


def slow_tls(port: int, connections: int) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            held = [sock for sock in held if _still_open(sock)]
            while len(held) < connections and not stop.is_set():
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(b"\x16\x03\x01\x02\x00")  # a ClientHello header, and nothing more
                    sock.setblocking(False)
                    held.append(sock)
                except OSError:
                    break
            stop.wait(0.5)
        for sock in held:
            sock.close()
    return work


def _still_open(sock: socket.socket) -> bool:
    with suppress(BlockingIOError):
        try:
            return sock.recv(1) != b""
        except OSError:
            return False
    return True


def report(name: str, results: list[tuple[str, float]], baseline: float, stats: tuple[int, float]) -> None:
    median = statistics.median(seconds for _, seconds in results)
    worst = max(seconds for _, seconds in results)
    ok = all(outcome == "200" and seconds < SCRAPE_TIMEOUT for outcome, seconds in results)
    outcomes = ",".join(outcome for outcome, _ in results)
    print(f"| {name} | {outcomes} | {median * 1000:.0f} | {worst * 1000:.0f} | {median / baseline:.1f}x | "
          f"{stats[0]} | {stats[1]:.0f} | {'PASS' if ok else 'FAIL'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer scrapes and a shorter warm-up")
    parser.add_argument("--exporter", type=Path, default=ROOT / "exporter",
                        help="folder holding the batch_exporter package to attack (e.g. an older copy)")
    args = parser.parse_args()
    samples, warmup = (3, 1.0) if args.quick else (8, 3.0)
    with tempfile.TemporaryDirectory(prefix="web-attack-bench-") as folder, \
            exporter_web(Path(folder), args.exporter) as server:
        port, pid, tls = server
        scrapes = Scrapes(port, tls)
        print("| phase | valid scrape statuses | median ms | worst ms | median vs baseline | server threads | "
              "RSS MiB | all 200 within 10 s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        results = scrapes.run(samples, 0.2)
        baseline = statistics.median(seconds for _, seconds in results)
        report("baseline", results, baseline, process_stats(pid))

        counts: dict[str, int] = {}
        with background(200, password_flood(port, tls, counts)):
            time.sleep(warmup)
            results = scrapes.run(samples, 0.5)
            stats = process_stats(pid)
        report("200 wrong-password clients", results, baseline, stats)
        print(f"(flood answers: {dict(sorted(counts.items()))})")

        with background(4, slow_tls(port, 500)):
            time.sleep(warmup)
            results = scrapes.run(samples, 0.5)
            stats = process_stats(pid)
        report("2,000 slow TLS handshakes", results, baseline, stats)


if __name__ == "__main__":
    main()
