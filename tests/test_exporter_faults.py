"""Faults on the running process: the exporter keeps serving and says what is wrong."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter_process import running_exporter, value
from run_history import config_yaml, make_history, sqlite_history
from tcpproxy import TcpProxy


def up(series: dict, source: str) -> float | None:  # type: ignore[type-arg]
    return value(series, "batch_exporter_source_up", source=source)


def errors(series: dict, source: str, reason: str) -> float:  # type: ignore[type-arg]
    return value(series, "batch_exporter_source_errors_total", source=source, reason=reason) or 0.0


def failures(series: dict, source: str) -> float:  # type: ignore[type-arg]
    """Failed polls of `source`, whatever the reason."""
    return sum(v for (name, labels), v in series.items()
               if name == "batch_exporter_source_errors_total" and dict(labels).get("source") == source)


def probe_through(proxy: TcpProxy, tmp_path: Path, timeout: str) -> Path:
    """A config with one `SELECT 1` check on PostgreSQL reached through `proxy`."""
    from db_servers import odbc_connection_string

    conn_str = odbc_connection_string("postgresql").replace("PORT=5432", f"PORT={proxy.port}")
    assert f"PORT={proxy.port}" in conn_str
    config = tmp_path / "pg.yml"
    config.write_text(f"""
global: {{poll_interval: 1s}}
databases:
  pg: {{odbc: "{conn_str}", query_timeout: {timeout}, connect_timeout: {timeout}}}
batches:
  probe:
    database: pg
    checks:
      one: {{query: "SELECT 1", min: 1, max: 1}}
""")
    return config


@pytest.mark.clock
def test_slow_and_failing_queries_only_take_down_their_own_source(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    sqlite_history(str(db), make_history())
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT COUNT(*) FROM (SELECT x FROM c LIMIT 100000000000)")
    config = tmp_path / "faults.yml"
    config.write_text(f"""
global: {{poll_interval: 1s}}
databases:
  main: {{sqlite: {db}, query_timeout: 1s}}
batches:
  healthy:
    database: main
    runs:
      table: batch_run
      where: "job = 'card-auth'"
      status: {{success: [OK], failed: [ABEND], running: [RUN]}}
      columns: {{business_date: biz_date, started_at: start_time, ended_at: end_time}}
      timezone: Asia/Tokyo
  slow:
    database: main
    checks:
      forever: {{query: "{slow}", max: 0}}
  broken:
    database: main
    checks:
      missing_table: {{query: "SELECT COUNT(*) FROM no_such_table", max: 0}}
      null_result: {{query: "SELECT NULL", max: 0}}
""")
    with running_exporter(config, tmp_path) as exporter:
        series = exporter.wait_for(
            lambda s: errors(s, "checks:slow", "timeout") >= 2 and errors(s, "checks:broken", "query") >= 1,
            timeout=45, what="timeout and query errors")
        assert up(series, "checks:slow") == 0
        assert up(series, "checks:broken") == 0
        assert up(series, "runs:healthy") == 1
        assert value(series, "batch_run_attempts", batch="healthy") == 2
        # a timed-out query was really stopped: polls keep completing on time, none pile up stuck
        duration = value(series, "batch_exporter_source_poll_duration_seconds", source="checks:slow")
        assert duration is not None and duration < 10
        assert errors(series, "checks:slow", "timeout") >= 2 and errors(series, "checks:slow", "stuck") == 0
        log = exporter.log()
        assert "checks:broken" in log and "missing_table" in log
        assert exporter.get("/-/healthy")[0] == 200


def test_null_check_result_is_reported_as_data_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    sqlite_history(str(db), make_history())
    config = tmp_path / "null.yml"
    config.write_text(f"""
databases:
  main: {{sqlite: {db}}}
batches:
  b:
    database: main
    checks:
      nothing: {{query: "SELECT NULL", max: 0}}
""")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "once", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "check nothing: the query returned NULL" in result.stderr
    assert 'batch_exporter_source_errors_total{reason="data",source="checks:b"} 1.0' in result.stdout


def test_database_unreachable_at_start_then_lost_and_restored(tmp_path: Path) -> None:
    pytest.importorskip("pyodbc")
    proxy = TcpProxy("127.0.0.1", 5432, enabled=False)
    try:
        config = probe_through(proxy, tmp_path, timeout="2s")
        with running_exporter(config, tmp_path) as exporter:
            series = exporter.wait_for(lambda s: errors(s, "checks:probe", "connect") >= 1, what="connect error")
            assert up(series, "checks:probe") == 0
            assert exporter.get("/-/healthy")[0] == 200
            proxy.restore()
            exporter.wait_for(lambda s: up(s, "checks:probe") == 1, timeout=60, what="recovery after start")
            proxy.cut()
            series = exporter.wait_for(lambda s: up(s, "checks:probe") == 0, timeout=30, what="loss mid-run")
            assert value(series, "batch_check_value", batch="probe", check="one") == 1  # last good value kept
            failed = failures(series, "checks:probe")
            exporter.wait_for(lambda s: failures(s, "checks:probe") > failed, what="another failed poll")
            proxy.restore()
            exporter.wait_for(lambda s: up(s, "checks:probe") == 1, timeout=60, what="recovery mid-run")
            assert "PWD" not in exporter.log()
    finally:
        proxy.close()


def test_write_statement_in_config_refused_before_serving(tmp_path: Path) -> None:
    config = tmp_path / "write.yml"
    config.write_text("""
databases:
  main: {sqlite: /tmp/nothing.db}
batches:
  b:
    database: main
    checks:
      sneaky: {query: "UPDATE auth SET state = 'APPROVED'", max: 0}
""")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "run", "-c", str(config),
                             "--web.listen-address", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{config}:8: batches.b.checks.sneaky.query: only a single read-only SELECT is allowed" in result.stderr


def test_listen_address_taken_or_malformed_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "runs.db"
    sqlite_history(str(db), make_history())
    config = tmp_path / "c.yml"
    config.write_text(config_yaml(f"    sqlite: {db}\n"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for address, expected in ((f"127.0.0.1:{port}", "Address already in use"),
                                  ("nonsense", "expected HOST:PORT, :PORT or [IPV6]:PORT")):
            result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "run", "-c", str(config),
                                     "--web.listen-address", address], capture_output=True, text=True, timeout=60)
            assert result.returncode == 1
            assert f"cannot serve on --web.listen-address {address!r}" in result.stderr and expected in result.stderr
            assert "Traceback" not in result.stderr


def test_a_silent_database_neither_blocks_scrapes_nor_shutdown(tmp_path: Path) -> None:
    pytest.importorskip("pyodbc")
    proxy = TcpProxy("127.0.0.1", 5432)
    try:
        config = probe_through(proxy, tmp_path, timeout="1s")
        with running_exporter(config, tmp_path) as exporter:
            exporter.wait_for(lambda s: up(s, "checks:probe") == 1, what="first good poll")
            proxy.freeze()  # PostgreSQL's driver blocks forever on a peer that stops answering
            # the first poll times out inside the driver; later ones fail to connect through the frozen proxy
            series = exporter.wait_for(lambda s: errors(s, "checks:probe", "timeout") >= 1
                                       and up(s, "checks:probe") == 0, timeout=60,
                                       what="a timeout against the silent database")
            assert up(series, "checks:probe") == 0
            started = time.monotonic()
            status, _ = exporter.get("/metrics", timeout=5)
            assert status == 200 and time.monotonic() - started < 5
            exporter.proc.send_signal(signal.SIGTERM)
            exporter.proc.wait(timeout=15)  # closing the stuck connection must not hang the exit
            assert exporter.proc.returncode == 0
    finally:
        proxy.close()
