"""The exporter as a process on a constructed run history: SQLite served over HTTP, and the same
table on real PostgreSQL and MariaDB through their ODBC drivers giving the same metrics."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from exporter_process import Series, parse_exposition, run_once, running_exporter, value
from run_history import History, config_yaml, make_history, sqlite_history


def last_daily(now: datetime, hour: int, minute: int, tz: str, weekday: int | None = None) -> datetime:
    """Latest local hour:minute (on `weekday`, Monday=0, if given) at or before now; independent of the exporter."""
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    day = local_now.date()
    for _ in range(8):
        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate <= now and (weekday is None or candidate.weekday() == weekday):
            return candidate
        day -= timedelta(days=1)
    raise AssertionError("no fire time found")


def assert_history_metrics(series: Series, history: History) -> None:
    runs = {r[0]: r for r in history.runs}
    v = lambda name, **labels: value(series, name, **labels)  # noqa: E731
    # card-auth: failed night re-run, second attempt still running, rows left AUTHORIZING
    assert v("batch_run_last_start_timestamp_seconds", batch="card-auth") == runs[4][4].timestamp()
    assert v("batch_run_last_end_timestamp_seconds", batch="card-auth") == runs[3][5].timestamp()
    assert v("batch_run_last_success_timestamp_seconds", batch="card-auth") == runs[2][5].timestamp()
    assert v("batch_run_last_duration_seconds", batch="card-auth") == 1800
    assert v("batch_run_last_status", batch="card-auth", status="running") == 1
    assert v("batch_run_last_status", batch="card-auth", status="failed") == 0
    assert v("batch_run_attempts", batch="card-auth") == 2
    assert v("batch_run_running", batch="card-auth") == 1
    running_seconds = v("batch_run_running_seconds", batch="card-auth")
    assert running_seconds is not None and 1800 <= running_seconds < 1800 + 120
    assert v("batch_runs", batch="card-auth", status="success") == 2
    assert v("batch_runs", batch="card-auth", status="failed") == 1
    assert v("batch_runs", batch="card-auth", status="running") == 1
    assert v("batch_run_records", batch="card-auth", state="AUTHORIZING") == 5
    assert v("batch_run_records", batch="card-auth", state="APPROVED") == 10
    assert v("batch_run_pending_records", batch="card-auth") == 5
    assert v("batch_check_value", batch="card-auth", check="stuck_authorizing") == 5
    assert v("batch_check_ok", batch="card-auth", check="stuck_authorizing") == 0
    assert v("batch_check_ok", batch="card-auth", check="errors_known") == 1
    assert v("batch_run_idempotent", batch="card-auth") == 0
    assert v("batch_run_max_duration_seconds", batch="card-auth") == 5400
    assert v("batch_schedule_grace_seconds", batch="card-auth") == 6 * 3600
    assert v("batch_schedule_last_expected_timestamp_seconds", batch="card-auth") == \
        last_daily(history.now, 2, 0, "Asia/Tokyo").timestamp()
    # settlement: one success, one unmapped status; schedule in a DST zone
    assert v("batch_run_last_status", batch="settlement", status="success") == 1
    # an unmapped status on a run that has ended counts as failed: it pages as a failure would
    assert v("batch_runs", batch="settlement", status="unknown") == 0
    assert v("batch_runs", batch="settlement", status="failed") == 1
    assert v("batch_run_last_status_code", batch="settlement", code="OK") == 1
    assert v("batch_run_attempts", batch="settlement") == 1
    assert v("batch_run_idempotent", batch="settlement") == 1
    assert v("batch_schedule_last_expected_timestamp_seconds", batch="settlement") == \
        last_daily(history.now, 1, 30, "America/New_York").timestamp()
    nxt = v("batch_schedule_next_expected_timestamp_seconds", batch="settlement")
    assert nxt is not None and history.now.timestamp() < nxt <= history.now.timestamp() + 25 * 3600
    # report: nothing in the window, last success still found beyond it; weekly schedule: missed if Monday passed
    assert v("batch_run_last_success_timestamp_seconds", batch="report") == runs[7][5].timestamp()
    assert v("batch_run_last_start_timestamp_seconds", batch="report") is None
    assert v("batch_runs", batch="report", status="success") == 0
    assert v("batch_schedule_last_expected_timestamp_seconds", batch="report") == \
        last_daily(history.now, 6, 0, "Europe/London", weekday=0).timestamp()
    # never-run: no history, no status series (no alert storms), zero counts
    assert v("batch_run_last_status", batch="never-run", status="unknown") is None
    assert v("batch_run_attempts", batch="never-run") == 0
    assert v("batch_runs", batch="never-run", status="failed") == 0


def batch_series(series: Series) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Everything but exporter health and the clock-dependent running age."""
    return {k: v for k, v in series.items()
            if not k[0].startswith("batch_exporter_") and k[0] != "batch_run_running_seconds"
            and not k[0].startswith("batch_schedule_")}


@pytest.fixture()
def sqlite_setup(tmp_path: Path) -> tuple[Path, History]:
    history = make_history()
    db = tmp_path / "runs.db"
    sqlite_history(str(db), history)
    config = tmp_path / "config.yml"
    config.write_text(config_yaml(f"    sqlite: {db}\n"))
    return config, history


@pytest.mark.clock
def test_sqlite_history_served_over_http(sqlite_setup: tuple[Path, History], tmp_path: Path) -> None:
    config, history = sqlite_setup
    with running_exporter(config, tmp_path) as exporter:
        status, _ = exporter.get("/-/healthy")
        assert status == 200
        series = exporter.wait_for(
            lambda s: value(s, "batch_exporter_source_up", source="runs:card-auth") == 1
            and value(s, "batch_exporter_source_up", source="checks:card-auth") == 1, what="runs source up")
        exporter.wait_for(lambda _: exporter.get("/-/ready")[0] == 200, what="readiness")
        # 4 config + 4 runs + 1 checks sources, all polled and up (the exposition may trail by 250 ms)
        series = exporter.wait_for(
            lambda s: sum(1 for k, v in s.items() if k[0] == "batch_exporter_source_up" and v == 1) == 9,
            what="every source up")
        assert_history_metrics(series, history)
        assert value(series, "batch_exporter_source_up", source="config:settlement") == 1
        landing_status, landing = exporter.get("/")
        assert landing_status == 200 and 'href="metrics"' in landing


@pytest.mark.clock
def test_once_prints_the_same_as_the_server(sqlite_setup: tuple[Path, History]) -> None:
    config, history = sqlite_setup
    code, out, err = run_once(config)
    assert code == 0, err
    assert_history_metrics(parse_exposition(out), history)


def _odbc_once(kind: str, tmp_path: Path, history: History) -> Series:
    pyodbc = pytest.importorskip("pyodbc")
    from db_servers import odbc_connection_string

    conn_str = odbc_connection_string(kind)
    suffix = f"{kind}_{abs(hash(tmp_path)) % 10**8}"
    runs_table, auth_table = f"bx_run_{suffix}", f"bx_auth_{suffix}"
    conn = pyodbc.connect(conn_str, autocommit=True, timeout=5)
    try:
        from run_history import fill

        fill(conn.cursor(), kind, history, runs_table, auth_table)
        config = tmp_path / f"{kind}.yml"
        config.write_text(config_yaml(f"    odbc: \"{conn_str}\"\n    query_timeout: 5s\n", runs_table, auth_table))
        code, out, err = run_once(config)
        assert code == 0, err
        return parse_exposition(out)
    finally:
        for table in (runs_table, auth_table):
            conn.cursor().execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_real_databases_give_the_same_metrics_as_sqlite(kind: str, sqlite_setup: tuple[Path, History],
                                                        tmp_path: Path) -> None:
    config, history = sqlite_setup
    code, out, err = run_once(config)
    assert code == 0, err
    reference = parse_exposition(out)
    series = _odbc_once(kind, tmp_path, history)
    assert_history_metrics(series, history)
    assert batch_series(series) == batch_series(reference)


def test_promtool_lint_of_a_real_scrape_is_clean(sqlite_setup: tuple[Path, History], tmp_path: Path) -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian prometheus package (make test installs it)"
    config, _ = sqlite_setup
    with running_exporter(config, tmp_path) as exporter:
        exporter.wait_for(lambda s: value(s, "batch_exporter_source_up", source="checks:card-auth") is not None
                          and value(s, "batch_exporter_source_up", source="runs:card-auth") == 1, what="first polls")
        _, body = exporter.get("/metrics")
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and lint.stdout == "" and lint.stderr == "", lint.stdout + lint.stderr
