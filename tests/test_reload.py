"""SIGHUP on the running exporter process: a valid new configuration is applied, a broken one is
refused with a located error while the previous configuration keeps serving."""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from exporter_process import ExporterProcess, Series, running_exporter, value

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX only")

BATCH = "nightly-export"


def _make_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE batch_run (run_id INTEGER PRIMARY KEY, status TEXT, "
                     "start_time TEXT, end_time TEXT)")
        now = time.time()
        rows = [(1, "OK", now - 7200, now - 6600), (2, "NG", now - 3600, now - 3000)]
        conn.executemany(
            "INSERT INTO batch_run VALUES (?, ?, datetime(?, 'unixepoch'), datetime(?, 'unixepoch'))", rows)


def _config(db: Path, checks: dict[str, str], extra: str = "") -> str:
    lines = [
        "global:",
        "  poll_interval: 1s",
        "databases:",
        "  runs:",
        f"    sqlite: '{db}'",
        "batches:",
        f"  {BATCH}:",
        "    database: runs",
        "    runs:",
        "      table: batch_run",
        "      columns: {run_id: run_id, status: status, started_at: start_time, ended_at: end_time}",
        "      status: {success: [OK], failed: [NG]}",
        "    checks:",
    ]
    for name, query in checks.items():
        lines.append(f"      {name}: {{query: \"{query}\", max: 0}}")
    return "\n".join(lines) + "\n" + extra


def _check(series: Series, name: str) -> float | None:
    return value(series, "batch_check_value", batch=BATCH, check=name)


def _hup(exporter: ExporterProcess) -> None:
    os.kill(exporter.proc.pid, signal.SIGHUP)


def _wait_for_log(exporter: ExporterProcess, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = exporter.log_path.read_text(errors="replace")
        if text in log:
            return log
        assert exporter.proc.poll() is None, f"exporter exited {exporter.proc.returncode}:\n{exporter.log()}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the exporter's log:\n{exporter.log()}")


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "runs.db"
    _make_db(db)
    config = tmp_path / "config.yml"
    config.write_text(_config(db, {"failed_runs": "SELECT COUNT(*) FROM batch_run WHERE status = 'NG'"}))
    return db, config


def test_valid_change_is_applied_on_sighup(setup: tuple[Path, Path], tmp_path: Path) -> None:
    db, config = setup
    with running_exporter(config, tmp_path) as exporter:
        exporter.wait_for(lambda s: _check(s, "failed_runs") == 1, what="the first check")
        config.write_text(_config(db, {"all_runs": "SELECT COUNT(*) FROM batch_run"}))
        _hup(exporter)
        series = exporter.wait_for(lambda s: _check(s, "all_runs") == 2, what="the check added by the reload")
        assert _check(series, "failed_runs") is None, "a check removed from the file must vanish"
        assert value(series, "batch_run_last_status", batch=BATCH, status="failed") == 1
        assert exporter.proc.poll() is None
        _wait_for_log(exporter, "configuration reloaded")


@pytest.mark.parametrize("broken, where", [
    # a meaning mistake: the error names the file, the line and the field
    ("batches:\n  nightly-export:\n    database: nowhere\n    schedule: {cron: '0 1 * * *'}\n",
     ":3: batches.nightly-export.database: unknown database 'nowhere'"),
    # a YAML syntax mistake: the error names the file and the line
    ("global:\n  poll_interval: 1s\nbatches: [unclosed\n", ":4: not valid YAML"),
])
def test_broken_change_is_refused_and_the_old_config_keeps_serving(
        setup: tuple[Path, Path], tmp_path: Path, broken: str, where: str) -> None:
    db, config = setup
    with running_exporter(config, tmp_path) as exporter:
        before = exporter.wait_for(lambda s: _check(s, "failed_runs") == 1, what="the first check")
        config.write_text(broken)
        _hup(exporter)
        log = _wait_for_log(exporter, "reload refused")
        assert f"{config}{where}" in log, log[-2000:]

        status, body = exporter.get("/metrics")
        assert status == 200
        after = exporter.scrape()
        assert _check(after, "failed_runs") == 1
        assert value(after, "batch_exporter_source_up", source=f"checks:{BATCH}") == 1
        assert {k for k in after if k[0].startswith("batch_run")} == {k for k in before if k[0].startswith("batch_run")}
        assert exporter.get("/-/healthy")[0] == 200

        # repaired: the next SIGHUP applies it
        config.write_text(_config(db, {"all_runs": "SELECT COUNT(*) FROM batch_run"}))
        _hup(exporter)
        exporter.wait_for(lambda s: _check(s, "all_runs") == 2, what="the repaired configuration")


def test_web_config_is_reloaded_on_sighup_and_a_broken_one_refused(setup: tuple[Path, Path], tmp_path: Path) -> None:
    import base64
    import urllib.error
    import urllib.request

    import bcrypt

    def status(password: str) -> int:
        request = urllib.request.Request(exporter.url + "/metrics")
        request.add_header("Authorization", "Basic " + base64.b64encode(f"prom:{password}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def users(password: str) -> str:
        return f"basic_auth_users:\n  prom: {bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"

    _, config = setup
    web = tmp_path / "web.yml"
    web.write_text(users("first"))
    with running_exporter(config, tmp_path, "--web.config.file", str(web)) as exporter:
        assert status("first") == 200 and status("second") == 401
        web.write_text(users("second"))
        _hup(exporter)
        _wait_for_log(exporter, "web configuration reloaded")
        assert status("second") == 200 and status("first") == 401
        web.write_text("basic_auth_users:\n  prom: not-a-bcrypt-hash\n")
        _hup(exporter)
        log = _wait_for_log(exporter, "web config reload refused")
        assert f"{web}:2: basic_auth_users.prom" in log
        assert status("second") == 200  # the running web config keeps serving
