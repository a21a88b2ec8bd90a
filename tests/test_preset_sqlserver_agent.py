"""The sqlserver-agent preset against a copy of msdb's Agent tables (tests/sqlserver_agent_copy.py) on the
PostgreSQL test server: the configuration loads (its statements pass the read-only check), the exporter's
own ODBC path and sources read the copy at a fixed instant, and the exposition says what the Agent did.

One batch per job, each job showing one behaviour of the Agent's tables; the times are the local wall
times of a SQL Server machine in Tokyo, all built from NOW.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch_exporter.app import open_databases
from batch_exporter.config import BatchConfig, Config, load_config, parse_config
from batch_exporter.run_statements import (
    build_last_success_query,
    build_sample_query,
    build_window_query,
    probe_statement,
)
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.runs import RunsSource
from batch_exporter.sources.schedule_table import ScheduleTableSource
from batch_exporter.sqlcheck import check_read_only
from batch_exporter.store import Store
from db_servers import requires_odbc
from sqlserver_agent_copy import AgentMsdb, agent_duration, agent_msdb

pytestmark = requires_odbc("postgresql")

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
TODAY = datetime.combine(NOW.astimezone(TOKYO).date(), time())  # local midnight, naive as the Agent keeps it
YESTERDAY, TOMORROW = TODAY - timedelta(days=1), TODAY + timedelta(days=1)
OLD_SESSION, CURRENT_SESSION = 1, 2

JOBS = {  # batch -> Agent job name
    "nightly-oauth": "Nightly O'Auth",
    "running": "Ledger close",
    "queued": "Card settlement",
    "disabled": "Archive purge",
    "overdue": "FX rates load",
    "long": "Year-end rebuild",
    "canceled": "Statement print",
    "midnight": "Midnight rollover",
}


def at(day: datetime, hours: int = 0, minutes: int = 0, seconds: int = 0) -> datetime:
    return day + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def epoch(local: datetime) -> float:
    """The instant of a local wall time of the Agent's machine."""
    return local.replace(tzinfo=TOKYO).timestamp()


def fill(msdb: AgentMsdb) -> None:
    """The Agent's history: the agent restarted 3 days ago (session 2), leaving an older session 1."""
    msdb.add_session(OLD_SESSION, TODAY - timedelta(days=10))
    msdb.add_session(CURRENT_SESSION, at(TODAY - timedelta(days=3), 8))
    jobs = {batch: msdb.add_job(name, enabled=batch != "disabled") for batch, name in JOBS.items()}

    job = jobs["nightly-oauth"]
    msdb.add_history(job, at(YESTERDAY, 1), 1, agent_duration(600))
    msdb.add_history(job, at(TODAY, 1), 0, 300, step_id=1, step_name="extract")  # a step's row: not a run
    msdb.add_history(job, at(TODAY, 1), 0, 512)
    rerun = msdb.add_history(job, at(TODAY, 2), 1, 10203)  # 1h02m03s
    msdb.add_activity(CURRENT_SESSION, job, requested=at(TODAY, 2), started=at(TODAY, 2),
                      stopped=at(TODAY, 2) + timedelta(seconds=3723), history_id=rerun)
    # the agent died while it ran: a start and no stop, forever, in a session that is over
    msdb.add_activity(OLD_SESSION, job, requested=at(TODAY - timedelta(days=4), 1),
                      started=at(TODAY - timedelta(days=4), 1))
    msdb.add_schedule(1, job, at(TOMORROW, 1))
    # a job whose name is the preset's literal with the quote left doubled: never to be read
    decoy = msdb.add_job("Nightly O''Auth")
    msdb.add_activity(CURRENT_SESSION, decoy, requested=at(TODAY, 11), started=at(TODAY, 11))

    job = jobs["running"]
    msdb.add_history(job, at(YESTERDAY, 11, 30), 1, agent_duration(1500))
    msdb.add_activity(CURRENT_SESSION, job, requested=at(TODAY, 11, 30), started=at(TODAY, 11, 30))
    msdb.add_schedule(2, job, at(TOMORROW, 11, 30))

    job = jobs["queued"]
    msdb.add_history(job, at(YESTERDAY, 11, 50), 1, agent_duration(120))
    msdb.add_activity(CURRENT_SESSION, job, requested=at(TODAY, 11, 55), queued=at(TODAY, 11, 55, 30))
    msdb.add_schedule(3, job, at(TODAY, 11, 55))

    job = jobs["disabled"]
    msdb.add_history(job, at(YESTERDAY, 3), 1, agent_duration(60))
    msdb.add_schedule(4, job, at(TOMORROW, 3))

    job = jobs["overdue"]
    msdb.add_history(job, at(YESTERDAY, 10), 1, agent_duration(30))
    msdb.add_schedule(5, job, at(TODAY, 10))  # two hours ago, and the agent has not started it
    msdb.add_schedule(6, job, at(TOMORROW, 10))
    msdb.add_schedule(7, job, None)  # next run not computed yet: 0, 0

    msdb.add_history(jobs["long"], TODAY - timedelta(days=5), 1, 1000000)  # 100 hours

    job = jobs["canceled"]
    msdb.add_history(job, at(TODAY - timedelta(days=25), 9), 1, agent_duration(600))  # before the lookback
    msdb.add_history(job, at(TODAY, 9), 3, agent_duration(45))

    job = jobs["midnight"]
    msdb.add_history(job, at(YESTERDAY, 23, 59, 59), 0, agent_duration(1))
    msdb.add_history(job, at(TODAY, 0, 0, 1), 1, agent_duration(5))

    # the row the agent writes for every job when its session starts, for the jobs it has not run since
    for batch in ("disabled", "overdue", "long", "canceled", "midnight"):
        msdb.add_activity(CURRENT_SESSION, jobs[batch], requested=None)


def config_text(odbc: str, jobs: dict[str, str], msdb_prefix: str = "dbo.") -> str:
    lines = ["databases:", f"  msdb: {{odbc: {json.dumps(odbc)}, query_timeout: 10s}}", "batches:"]
    for batch, name in jobs.items():
        preset = {"name": "sqlserver-agent", "job_name": name, "msdb": msdb_prefix, "timezone": "Asia/Tokyo"}
        lines += [f"  {batch}:", "    database: msdb", "    max_duration: 6h", f"    preset: {json.dumps(preset)}"]
    return "\n".join(lines) + "\n"


Exposition = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Polled:
    config_file: Path
    config: Config
    exposition: Exposition
    errors: dict[str, str]  # source -> why its poll failed


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Polled]:
    """The copy filled once; every batch's runs and schedule sources polled once at NOW through the
    exporter's ODBC path, and the exposition they make."""
    with agent_msdb() as msdb:
        fill(msdb)
        config_file = tmp_path_factory.mktemp("agent") / "exporter.yml"
        config_file.write_text(config_text(msdb.odbc, JOBS))
        config = load_config(config_file)
        databases = open_databases(config)
        try:
            sources: list[RunsSource | ScheduleTableSource] = []
            for name, batch in config.batches.items():
                assert batch.schedule is not None
                db = databases["msdb"]
                sources.append(RunsSource(name, batch, db, clock=NOW.timestamp, locate=config.locate))
                sources.append(ScheduleTableSource(name, batch.schedule, db, clock=NOW.timestamp))
            store = Store([source.name for source in sources])
            errors = {}
            for source in sources:
                try:
                    store.record_success(source.poll(), NOW.timestamp(), 0.0)
                except SourceError as exc:  # the source is down, as in the exporter; the others go on
                    store.record_failure(source.name, exc.reason, 0.0)
                    errors[source.name] = str(exc)
            text = store.payload()[0].decode()
        finally:
            for db in databases.values():
                db.close()
    exposition: Exposition = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposition[(sample.name, frozenset(sample.labels.items()))] = sample.value
    yield Polled(config_file, config, exposition, errors)


def value(polled: Polled, name: str, batch: str, **labels: str) -> float | None:
    return polled.exposition.get((name, frozenset({"batch": batch, **labels}.items())))


def last_status(polled: Polled, batch: str) -> list[str]:
    """The statuses batch_run_last_status marks 1 (exactly one when the batch has a latest run)."""
    return [status for status in ("success", "failed", "running", "queued", "unknown")
            if value(polled, "batch_run_last_status", batch, status=status) == 1]


def runs_by_status(polled: Polled, batch: str) -> dict[str, float | None]:
    return {status: value(polled, "batch_runs", batch, status=status)
            for status in ("success", "failed", "running", "queued")}


# ------------------------------------------------------------------------------------------- the runs


def test_a_failed_run_and_its_rerun_the_same_local_day_are_two_attempts_ending_in_success(polled: Polled) -> None:
    b = "nightly-oauth"
    assert value(polled, "batch_run_attempts", b) == 2
    assert last_status(polled, b) == ["success"]
    assert value(polled, "batch_run_last_status_code", b, code="1") == 1
    assert value(polled, "batch_run_business_date_info", b, business_date="2026-11-28") == 1
    # the step's own row (step_id 1) is no run: yesterday's success, today's failure and re-run
    assert runs_by_status(polled, b) == {"success": 2, "failed": 1, "running": 0, "queued": 0}


def test_run_duration_hhmmss_gives_the_end(polled: Polled) -> None:
    b = "nightly-oauth"
    start = epoch(at(TODAY, 2))
    assert value(polled, "batch_run_last_start_timestamp_seconds", b) == start
    assert value(polled, "batch_run_last_end_timestamp_seconds", b) == start + 3723  # 10203: 1h02m03s
    assert value(polled, "batch_run_last_duration_seconds", b) == 3723
    assert value(polled, "batch_run_last_success_timestamp_seconds", b) == start + 3723


def test_an_activity_row_left_by_an_older_agent_session_is_ignored(polled: Polled) -> None:
    b = "nightly-oauth"
    assert value(polled, "batch_run_running", b) == 0
    assert value(polled, "batch_run_running_seconds", b) == 0
    assert value(polled, "batch_run_presumed_dead", b) == 0


def test_a_job_in_progress_in_the_current_session_is_running(polled: Polled) -> None:
    b = "running"
    assert value(polled, "batch_run_running", b) == 1
    assert value(polled, "batch_run_running_seconds", b) == 1800
    assert last_status(polled, b) == ["running"]
    assert value(polled, "batch_run_last_status_code", b, code="4") == 1
    assert value(polled, "batch_run_last_start_timestamp_seconds", b) == epoch(at(TODAY, 11, 30))
    assert value(polled, "batch_run_last_success_timestamp_seconds", b) == epoch(at(YESTERDAY, 11, 55))
    assert value(polled, "batch_run_attempts", b) == 1
    assert runs_by_status(polled, b) == {"success": 1, "failed": 0, "running": 1, "queued": 0}


def test_a_job_requested_and_not_started_is_queued(polled: Polled) -> None:
    b = "queued"
    assert value(polled, "batch_run_queued", b) == 1
    assert value(polled, "batch_run_running", b) == 0
    assert last_status(polled, b) == ["queued"]
    assert value(polled, "batch_run_attempts", b) == 1
    assert value(polled, "batch_run_last_start_timestamp_seconds", b) == epoch(at(YESTERDAY, 11, 50))
    assert runs_by_status(polled, b) == {"success": 1, "failed": 0, "running": 0, "queued": 1}


def test_a_run_over_99_hours_is_read_right(polled: Polled) -> None:
    b = "long"
    start = epoch(TODAY - timedelta(days=5))
    assert value(polled, "batch_run_last_duration_seconds", b) == 100 * 3600  # run_duration 1000000
    assert value(polled, "batch_run_last_end_timestamp_seconds", b) == start + 100 * 3600
    assert value(polled, "batch_run_last_success_timestamp_seconds", b) == start + 100 * 3600


def test_a_canceled_run_counts_as_failed(polled: Polled) -> None:
    b = "canceled"
    assert last_status(polled, b) == ["failed"]
    assert value(polled, "batch_run_last_status_code", b, code="3") == 1
    assert runs_by_status(polled, b) == {"success": 0, "failed": 1, "running": 0, "queued": 0}
    assert value(polled, "batch_run_last_end_timestamp_seconds", b) == epoch(at(TODAY, 9)) + 45
    # mapped, not merely an ended run with a code nobody mapped (which the exporter also counts as failed)
    runs = polled.config.batches[b].runs
    assert runs is not None and "3" in runs.status.failed


def test_the_last_success_before_the_window_is_its_start_plus_its_duration(polled: Polled) -> None:
    # 25 days ago, outside the 14-day lookback: found by the query over the whole history
    start = epoch(at(TODAY - timedelta(days=25), 9))
    assert value(polled, "batch_run_last_success_timestamp_seconds", "canceled") == start + 600


def test_runs_either_side_of_local_midnight_are_two_dates(polled: Polled) -> None:
    # 23:59:59 and 00:00:01 in Tokyo are the same UTC date: the attempts follow the Agent's time zone
    b = "midnight"
    assert value(polled, "batch_run_attempts", b) == 1
    assert last_status(polled, b) == ["success"]
    assert value(polled, "batch_run_business_date_info", b, business_date="2026-11-28") == 1
    assert value(polled, "batch_run_last_start_timestamp_seconds", b) == epoch(at(TODAY, 0, 0, 1))
    assert runs_by_status(polled, b) == {"success": 1, "failed": 1, "running": 0, "queued": 0}


# --------------------------------------------------------------------------------------- the schedule


def test_the_next_run_of_an_enabled_job_is_the_next_expected_start(polled: Polled) -> None:
    b = "nightly-oauth"
    assert value(polled, "batch_schedule_next_expected_timestamp_seconds", b) == epoch(at(TOMORROW, 1))
    assert value(polled, "batch_schedule_last_expected_timestamp_seconds", b) is None
    assert value(polled, "batch_schedule_paused", b) == 0


def test_a_disabled_job_is_paused_with_no_expected_start(polled: Polled) -> None:
    b = "disabled"
    assert value(polled, "batch_schedule_paused", b) == 1
    assert value(polled, "batch_schedule_last_expected_timestamp_seconds", b) is None
    assert value(polled, "batch_schedule_next_expected_timestamp_seconds", b) is None


def test_an_overdue_next_run_is_the_last_expected_start(polled: Polled) -> None:
    # the earliest schedule is two hours past; the one not computed yet (0, 0) is passed over
    b = "overdue"
    assert value(polled, "batch_schedule_last_expected_timestamp_seconds", b) == epoch(at(TODAY, 10))
    assert value(polled, "batch_schedule_next_expected_timestamp_seconds", b) is None
    assert value(polled, "batch_schedule_paused", b) == 0


def test_every_source_polled_without_error(polled: Polled) -> None:
    assert polled.errors == {}
    ups = {dict(labels)["source"]: v for (name, labels), v in polled.exposition.items()
           if name == "batch_exporter_source_up"}
    assert ups == {f"{kind}:{batch}": 1 for batch in JOBS for kind in ("runs", "schedule")}


# --------------------------------------------------------------------------------- what is generated


def test_check_config_explain_shows_the_t_sql(polled: Polled) -> None:
    command = Path(sys.executable).with_name("batch-exporter")
    argv = [str(command)] if command.exists() else [sys.executable, "-m", "batch_exporter.cli"]
    result = subprocess.run([*argv, "check-config", "-c", str(polled.config_file), "--explain"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# batch nightly-oauth (from preset sqlserver-agent)" in out
    assert "dbo.agent_datetime(h.run_date, h.run_time)" in out
    assert "dbo.agent_datetime(s.next_run_date, s.next_run_time)" in out
    assert "WHERE j.name = N'Nightly O''Auth'" in out


def generated_statements(batch: BatchConfig) -> list[str]:
    """Every statement the exporter sends for a batch made by the preset."""
    assert batch.runs is not None and batch.schedule is not None and batch.schedule.query is not None
    runs = batch.runs
    return [probe_statement(runs, "*"), build_sample_query(runs), build_window_query(runs),
            build_last_success_query(runs), batch.schedule.query]


@pytest.mark.parametrize("dialect", ["mssql", "postgresql", None])
def test_every_generated_statement_is_a_read_only_select(polled: Polled, dialect: str | None) -> None:
    # the configuration loaded (it checks them as PostgreSQL reads them); SQL Server's reading too
    for batch in polled.config.batches.values():
        for sql in generated_statements(batch):
            check_read_only(sql, dialect)


def test_a_sql_server_connection_loads_and_the_job_name_stays_a_literal() -> None:
    """Loading checks the statements as SQL Server reads them; a name made to break out of its quotes
    stays inside them."""
    hostile = "x'; DELETE FROM msdb.dbo.sysjobs; --"
    text = config_text("Driver={ODBC Driver 18 for SQL Server};Server=sql1;UID=watch;PWD=x",
                       {"nightly-oauth": JOBS["nightly-oauth"], "hostile": hostile}, msdb_prefix="msdb.dbo.")
    config = parse_config(text, "exporter.yml")
    runs = config.batches["hostile"].runs
    assert runs is not None and runs.query is not None
    assert "WHERE j.name = N'x''; DELETE FROM msdb.dbo.sysjobs; --' AND h.step_id = 0" in runs.query
    for batch in config.batches.values():
        for sql in generated_statements(batch):
            check_read_only(sql, "mssql")

