"""The container image: `batch-exporter healthcheck` (what the Containerfile's HEALTHCHECK runs) on its own,
then the image itself, built with podman and run by scripts/container-smoke.sh (marked `container`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from batch_exporter.healthcheck import Target, find_target, flag_value, health_url, is_serving_exporter, run
from exporter_process import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "container-smoke.sh"
EXPORTER = ["/usr/bin/python3", "/usr/local/bin/batch-exporter"]


def fake_proc(root: Path, processes: dict[int, list[str]]) -> Path:
    root.mkdir(exist_ok=True)
    for pid, argv in processes.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (root / "self").mkdir()  # /proc holds more than process folders
    return root


def test_flag_value_takes_both_spellings_and_the_last_one() -> None:
    assert flag_value(["run", "--web.listen-address=:9187"], "--web.listen-address") == ":9187"
    assert flag_value(["run", "--web.listen-address", "[::1]:80"], "--web.listen-address") == "[::1]:80"
    argv = ["demo", "--web.listen-address=:1", "--web.listen-address=:2"]
    assert flag_value(argv, "--web.listen-address") == ":2"
    assert flag_value(["run", "--web.listen-address"], "--web.listen-address") is None


def test_only_a_serving_exporter_counts() -> None:
    assert is_serving_exporter([*EXPORTER, "run", "--config.file=/c.yml"])
    assert is_serving_exporter([*EXPORTER, "--log.level=debug", "demo"])
    assert not is_serving_exporter([*EXPORTER, "healthcheck"])
    assert not is_serving_exporter(["/bin/sh", "-c", "run"])


def test_the_target_is_the_lowest_serving_process_not_this_one(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {
        1: [*EXPORTER, "demo", "--web.listen-address=:9187", "--web.config.file=web.yml"],
        7: [*EXPORTER, "run", "--web.listen-address=:1"],
        40: [*EXPORTER, "healthcheck"],
    })
    target = find_target(proc, own_pid=40)
    assert target.listen == ":9187"
    assert target.web_config is not None and target.web_config.name == "web.yml"
    assert find_target(fake_proc(tmp_path / "other", {1: ["/sbin/init"]}), own_pid=2) == Target()


def test_health_url_asks_loopback_for_a_wildcard_address() -> None:
    assert health_url(":10117", tls=False) == "http://127.0.0.1:10117/-/healthy"
    assert health_url("0.0.0.0:9187", tls=True) == "https://127.0.0.1:9187/-/healthy"
    assert health_url("[::]:9187", tls=False) == "http://[::1]:9187/-/healthy"
    assert health_url("10.1.2.3:80", tls=False) == "http://10.1.2.3:80/-/healthy"


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def listening() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_follows_the_serving_listen_address(tmp_path: Path, listening: int) -> None:
    """The old HEALTHCHECK asked :10117 whatever the exporter listened on: a healthy exporter started with
    another --web.listen-address was reported unhealthy."""
    proc = fake_proc(tmp_path, {1: [*EXPORTER, "run", f"--web.listen-address=127.0.0.1:{listening}"]})
    assert run(None, proc=proc, own_pid=99) == 0
    nothing = free_port()
    assert run(f"127.0.0.1:{nothing}", proc=proc, own_pid=99) == 1, "an explicit address wins"
    no_exporter = fake_proc(tmp_path / "other", {1: ["/sbin/init"]})
    assert run(f"127.0.0.1:{listening}", proc=no_exporter, own_pid=99) == 0


@pytest.mark.slow
@pytest.mark.container
@pytest.mark.timeout(900)
def test_container_image_builds_serves_and_is_healthy() -> None:
    """scripts/container-smoke.sh: build the image with podman, run its demo on two listen addresses
    published on loopback, scrape /metrics, run the HEALTHCHECK, list the ODBC drivers."""
    if os.geteuid() != 0:
        pytest.skip("the container test runs podman as root")
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    assert not missing, f"scripts/install-system-deps.sh installs {missing}"
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("OK")
