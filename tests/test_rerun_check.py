"""`rerun-check`: one process per verdict on a constructed run table, the demo's crashed nights, a real
PostgreSQL, and masked card numbers in log lines; unit tests where the logic is dense."""
from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time as clock
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from batch_exporter.config import LogConfig, parse_config
from batch_exporter.database import Database, QueryError
from batch_exporter.practice.demo import create_demo, demo_config_text
from batch_exporter.practice.demo_sim import AuthRun, DemoWriter, open_writer_connection, play
from batch_exporter.rerun import (
    Attempt,
    BoundedDatabase,
    Evidence,
    LogLimits,
    gather,
    judge,
    leading_timestamp,
    read_tail,
    scan_log,
    select_attempts,
    window_start,
)
from batch_exporter.runsummary import RunRow
from batch_exporter.sources.checks import ChecksSource, check_value
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.run_table import window_param
from batch_exporter.sources.runs import RunsSource
from batch_exporter.tailing.paths import expand
from db_servers import odbc_connection_string, requires_odbc, scratch_table

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime.now(UTC).replace(microsecond=0)
PANS = {  # issuer test numbers, written the ways logs write them
    "4111111111111111": "4111111111111111",
    "5555555555554444": "5555 5555 5555 4444",
    "378282246310005": "3782-822463-10005",
}


# --- a constructed run table ---------------------------------------------------------------------


@dataclass
class Scenario:
    """Runs (id, business date, status, start, end) and records (run id, state, count) of `card-auth`."""

    runs: list[tuple[int, str, str, datetime, datetime | None]]
    records: list[tuple[int, str, int]] = field(default_factory=list)
    idempotent: bool = False
    with_records: bool = True
    checks: str = ""
    logs: str = ""


def local(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(TOKYO).strftime("%Y-%m-%d %H:%M:%S")


def biz(days_back: int) -> str:
    return (NOW.astimezone(TOKYO).date() - timedelta(days=days_back)).isoformat()


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def write_sqlite(path: Path, s: Scenario) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE batch_run (run_id INTEGER PRIMARY KEY, job TEXT, biz_date TEXT, status TEXT, "
                 "start_time TEXT, end_time TEXT)")
    conn.execute("CREATE TABLE auth_request (req_id INTEGER PRIMARY KEY, run_id INTEGER, state TEXT)")
    for run_id, day, status, start, end in s.runs:
        conn.execute("INSERT INTO batch_run VALUES (?, 'card-auth', ?, ?, ?, ?)",
                     (run_id, day, status, local(start), local(end)))
    for run_id, state, count in s.records:
        conn.executemany("INSERT INTO auth_request (run_id, state) VALUES (?, ?)", [(run_id, state)] * count)
    conn.commit()
    conn.close()


def config_text(database: str, s: Scenario, runs_table: str = "batch_run",
                auth_table: str = "auth_request") -> str:
    records = f"""
    records:
      query: "SELECT state, COUNT(*) FROM {auth_table} WHERE run_id = ? GROUP BY state"
      pending_states: [AUTHORIZING, RECEIVED]""" if s.with_records else ""
    return f"""databases:
  payments:
{database}
batches:
  card-auth:
    database: payments
    runs:
      table: {runs_table}
      where: "job = 'card-auth'"
      columns: {{run_id: run_id, business_date: biz_date, status: status, started_at: start_time,
                ended_at: end_time}}
      status: {{success: [OK], failed: [NG, ABEND], running: [RUN]}}
      lookback: 14d
      timezone: Asia/Tokyo{records}
    idempotent: {str(s.idempotent).lower()}{s.checks}{s.logs}
  logs-only:
    logs:
      app: {{path: '/nonexistent/*.log', patterns: {{error: ERROR}}}}
"""


def sqlite_setup(tmp_path: Path, s: Scenario) -> Path:
    write_sqlite(tmp_path / "runs.db", s)
    config = tmp_path / "config.yml"
    config.write_text(config_text(f"    sqlite: '{tmp_path / 'runs.db'}'", s), encoding="utf-8")
    return config


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.stdout)
        return loaded

    def rules(self, result: str) -> list[str]:
        return [r["rule"] for r in self.report["rules"] if r["result"] == result]


def rerun_check(config: Path, batch: str = "card-auth", *extra: str, encoding: str = "utf-8") -> Outcome:
    """The command as a process: `python -m batch_exporter.rerun`, its output in `encoding`."""
    argv = [sys.executable, "-m", "batch_exporter.rerun", batch, "-c", str(config), *extra]
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    done = subprocess.run(argv, capture_output=True, timeout=60, env=env)
    return Outcome(done.returncode, done.stdout.decode(encoding), done.stderr.decode(encoding))


def both(config: Path, *extra: str) -> tuple[Outcome, Outcome]:
    """(human, --json) runs; both must agree on the exit code."""
    human = rerun_check(config, "card-auth", *extra)
    machine = rerun_check(config, "card-auth", "--json", *extra)
    assert human.code == machine.code == machine.report["exit_code"], (human, machine)
    assert "Traceback" not in human.stderr + machine.stderr
    return human, machine


def first_and_last(human: Outcome) -> tuple[str, str]:
    lines = human.stdout.strip().splitlines()
    return lines[0], lines[-1]


# --- one process per verdict ---------------------------------------------------------------------

STUCK_CHECK = """
    checks:
      stuck: {query: "SELECT COUNT(*) FROM auth_request WHERE state = 'AUTHORIZING'", max: 0}"""


def test_safe_idempotent_even_with_leftovers(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(1), "ABEND", ago(hours=3), ago(hours=2))],
                 records=[(1, "AUTHORIZING", 3), (1, "APPROVED", 5)], idempotent=True, checks=STUCK_CHECK)
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 0 and machine.report["verdict"] == "safe"
    first, last = first_and_last(human)
    assert first.startswith("SAFE") and last.startswith("SAFE") and "card-auth" in first
    # the leftovers are shown as warnings, not hidden
    assert set(machine.rules("warning")) == {"no_pending_rows", "checks_pass"}
    assert "3 rows in pending states" in human.stdout and "not blocking" in human.stdout
    assert machine.report["attempts"][0]["records"] == {"AUTHORIZING": 3, "APPROVED": 5}


@pytest.mark.clock
def test_safe_after_clean_failure_of_non_idempotent_batch(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(2), "OK", ago(days=1, hours=3), ago(days=1, hours=2)),
                       (2, biz(1), "NG", ago(hours=3), ago(hours=2, minutes=50))],
                 records=[(1, "APPROVED", 10)], checks=STUCK_CHECK)
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 0, human.stdout
    report = machine.report
    assert report["business_date"] == biz(1) and report["latest_run_id"] == "2"
    assert [(a["run_id"], a["status"], a["status_code"]) for a in report["attempts"]] == \
        [("2", "failed", "NG")]
    assert report["attempts"][0]["duration_seconds"] == 600 and report["attempts"][0]["records"] == {}
    assert set(machine.rules("ok")) >= {"run_found", "nothing_running", "not_succeeded", "no_pending_rows",
                                       "no_data_changed", "checks_pass"}
    assert not machine.rules("unsafe") and not machine.rules("unknown")


@pytest.mark.clock
def test_unsafe_pending_rows_and_changed_data_after_a_crash(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(1), "ABEND", ago(hours=3), ago(hours=2))],
                 records=[(1, "AUTHORIZING", 4), (1, "RECEIVED", 2), (1, "APPROVED", 7)], checks=STUCK_CHECK)
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 1
    assert set(machine.rules("unsafe")) == {"no_pending_rows", "no_data_changed", "checks_pass"}
    first, last = first_and_last(human)
    assert first.startswith("UNSAFE") and last.startswith("UNSAFE")
    assert "run 1 left 6 rows in pending states (AUTHORIZING 4, RECEIVED 2)" in human.stdout
    assert "7 rows reached APPROVED 7" in human.stdout
    assert "check stuck = 4, outside max 0" in human.stdout
    # the full state breakdown of the latest attempt
    assert re.search(r"AUTHORIZING\s+4\s+pending", human.stdout)
    assert re.search(r"APPROVED\s+7\n", human.stdout)


def test_unsafe_when_an_earlier_attempt_changed_data(tmp_path: Path) -> None:
    # attempt 1 approved half the file before failing; attempt 2 failed before writing anything
    s = Scenario(runs=[(1, biz(1), "NG", ago(hours=5), ago(hours=4)),
                       (2, biz(1), "NG", ago(hours=2), ago(hours=1))],
                 records=[(1, "APPROVED", 20), (1, "ERROR", 20)])
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 1
    assert machine.rules("unsafe") == ["no_data_changed"]
    assert "run 1 (failed) changed data: 40 rows reached APPROVED 20, ERROR 20" in human.stdout
    assert [a["run_id"] for a in machine.report["attempts"]] == ["1", "2"]


@pytest.mark.clock
def test_unsafe_while_a_run_is_in_progress_even_if_idempotent(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(1), "NG", ago(hours=3), ago(hours=2)),
                       (2, biz(1), "RUN", ago(minutes=30), None)], idempotent=True)
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 1
    assert machine.rules("unsafe") == ["nothing_running"]
    assert "run 2 (business date " in human.stdout and "is still running" in human.stdout
    started = re.search(r"started \S+ \S+, (\d+)m(\d+s)? ago", human.stdout)
    # NOW was taken when this module was imported; the command reads the real clock
    late = int((datetime.now(UTC) - NOW).total_seconds() // 60)
    assert started is not None and 30 <= int(started.group(1)) <= 31 + late
    # a run of another business date counts too
    other = tmp_path / "other"
    other.mkdir()
    human, machine = both(sqlite_setup(other, Scenario(
        runs=[(1, biz(2), "RUN", ago(hours=30), None), (2, biz(1), "NG", ago(hours=3), ago(hours=2))])))
    assert human.code == 1 and machine.report["business_date"] == biz(1)
    assert [a["run_id"] for a in machine.report["other_running"]] == ["1"]
    assert "nothing_running" in machine.rules("unsafe")


@pytest.mark.clock
def test_unsafe_when_the_date_already_succeeded(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(1), "OK", ago(hours=3), ago(hours=2))], records=[(1, "APPROVED", 3)])
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 1 and machine.rules("unsafe") == ["not_succeeded"]


def test_unknown_when_the_sqlite_file_is_missing(tmp_path: Path) -> None:
    s = Scenario(runs=[])
    config = tmp_path / "config.yml"
    config.write_text(config_text(f"    sqlite: '{tmp_path / 'gone.db'}'", s), encoding="utf-8")
    human, machine = both(config)
    assert human.code == 2 and machine.report["verdict"] == "unknown"
    first, last = first_and_last(human)
    assert first.startswith("UNKNOWN") and last.startswith("UNKNOWN")
    reason = machine.report["reasons"][0]
    assert "database 'payments'" in reason and "gone.db" in reason and "unable to open" in reason
    assert reason in human.stdout
    assert not (tmp_path / "gone.db").exists()  # read-only: never created


@requires_odbc("postgresql")
def test_unknown_when_the_odbc_server_refuses(tmp_path: Path) -> None:
    s = Scenario(runs=[], checks=STUCK_CHECK)
    odbc = "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=1;DATABASE=test;UID=monitor;PWD=s3cret-pw;"
    config = tmp_path / "config.yml"
    config.write_text(config_text(f"    odbc: '{odbc}'\n    connect_timeout: 2s", s), encoding="utf-8")
    started = clock.monotonic()
    human, machine = both(config)
    assert clock.monotonic() - started < 30  # a generous bound on two processes: refused means quick
    assert human.code == 2
    reason = machine.report["reasons"][0]
    assert "database 'payments' (ODBC) cannot be reached" in reason and "refused" in reason.lower()
    assert machine.report["checks"][0]["error"].startswith("not tried")
    assert "s3cret-pw" not in human.stdout + human.stderr + machine.stdout


def test_unknown_when_no_run_exists_for_the_date(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(2), "OK", ago(days=1, hours=3), ago(days=1, hours=2)),
                       (2, biz(1), "NG", ago(hours=3), ago(hours=2))])
    config = sqlite_setup(tmp_path, s)
    human, machine = both(config, "--business-date", "2020-01-01")
    assert human.code == 2 and machine.rules("unknown") == ["run_found"]
    assert f"recent dates (attempts): {biz(1)} (1), {biz(2)} (1)" in machine.report["reasons"][0]
    # a date written without dashes is the same date
    compact = biz(2).replace("-", "")
    assert rerun_check(config, "card-auth", "--business-date", compact).code == 1  # it succeeded already


def test_unknown_without_evidence_the_verdict_needs(tmp_path: Path) -> None:
    # not idempotent and no records query: whether the failed attempt changed data cannot be seen
    s = Scenario(runs=[(1, biz(1), "NG", ago(hours=3), ago(hours=2))], with_records=False)
    config = sqlite_setup(tmp_path, s)
    human, machine = both(config)
    assert human.code == 2 and machine.rules("unknown") == ["no_pending_rows"]
    # no runs section at all
    outcome = rerun_check(config, "logs-only")
    assert outcome.code == 2 and "has no 'runs' section" in outcome.stdout
    # an unknown batch or a broken config: 2 as well, said on stderr
    outcome = rerun_check(config, "nope")
    assert outcome.code == 2 and "no batch named 'nope'" in outcome.stderr and "card-auth" in outcome.stderr
    (tmp_path / "bad.yml").write_text("batches: [", encoding="utf-8")
    outcome = rerun_check(tmp_path / "bad.yml", "card-auth", "--json")
    assert outcome.code == 2 and outcome.report["verdict"] == "unknown"
    assert "configuration error" in outcome.stderr


def test_unmapped_status_may_be_running(tmp_path: Path) -> None:
    s = Scenario(runs=[(1, biz(1), "WAIT", ago(hours=1), None)], idempotent=True)
    human, machine = both(sqlite_setup(tmp_path, s))
    assert human.code == 2 and machine.rules("unknown") == ["nothing_running"]
    assert "status code 'WAIT'" in human.stdout


# --- logs: masked, bounded, only since the attempt started ------------------------------------------


def test_log_lines_shown_with_card_numbers_masked(tmp_path: Path) -> None:
    start = ago(hours=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    stamp = local(start + timedelta(minutes=5))
    old_stamp = local(start - timedelta(days=3))
    lines = [f"{old_stamp} ERROR [main] last week's failure, not this attempt's",
             f"{stamp} INFO  [main] start",
             *(f"{stamp} ERROR [auth-2] declined card={shown} reason=limit" for shown in PANS.values()),
             f"{stamp} ERROR [auth-2] card in full width ４１１１１１１１１１１１１１１１",
             f"{stamp} ERROR [auth-2] hidden by NULs {chr(0).join('4111111111111111')}",
             "java.lang.IllegalStateException: pan 4111111111111111 rejected",
             f"{stamp} ERROR [main] {'x' * 500}"]
    (logs / "app-today.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (logs / "app-old.log").write_text(f"{old_stamp} ERROR old file 4111111111111111\n", encoding="utf-8")
    old_time = (start - timedelta(days=2)).timestamp()
    os.utime(logs / "app-old.log", (old_time, old_time))
    sdk = logs / "sdk.log"
    sdk.write_bytes((f"{stamp} [ERROR] 通信エラー カード番号 4111111111111111\r\n" * 3).encode("cp932"))
    s = Scenario(runs=[(1, biz(1), "NG", start, ago(minutes=10))], records=[(1, "ERROR", 3)], logs=f"""
    logs:
      app:
        path: '{logs}/app-*.log'
        patterns: {{error: '^\\S+ \\S+ ERROR ', exception: 'Exception'}}
      sdk: {{path: '{sdk}', encoding: cp932, patterns: {{error: '\\[ERROR\\]'}}}}""")
    config = sqlite_setup(tmp_path, s)
    human, machine = both(config)
    for outcome in (human, machine):
        text = outcome.stdout + outcome.stderr
        squeezed = re.sub(r"[\s\-]", "", text)
        for pan in PANS:
            assert pan[:-4] not in squeezed, f"card number {pan} leaked"
        assert "４１１１１１１１" not in text and "\x00" not in text
    assert "card=************1111" in human.stdout
    assert "card=**** **** **** 4444" in human.stdout and "card=****-******-*0005" in human.stdout
    assert "通信エラー カード番号 ************1111" in human.stdout  # cp932 decoded, CRLF gone
    ascii_console = rerun_check(config, "card-auth", encoding="ascii")
    assert ascii_console.code == 1 and "??? ****" in ascii_console.stdout and not ascii_console.stderr
    app = machine.report["logs"][0]
    assert app["matching_lines"] == 7 and app["by_pattern"] == {"error": 6, "exception": 1}
    assert app["old_lines"] == 1 and app["older_files"] == 1  # last week's line, and the old file
    assert [f["path"] for f in app["files"]] == [str(logs / "app-today.log")]
    assert all(line["file"] == "app-today.log" for line in app["lines"])
    assert len(app["lines"][-1]["text"]) <= 200 and app["lines"][-1]["text"].endswith("…")
    assert machine.report["logs"][1]["matching_lines"] == 3
    # at most N lines per log, with the count of the rest
    capped = rerun_check(config, "card-auth", "--json", "--log-lines", "2").report["logs"][0]
    assert len(capped["lines"]) == 2 and capped["lines_not_shown"] == 5
    assert capped["lines"][-1]["text"].startswith(f"{stamp} ERROR [main] xxx")


def test_only_the_tail_of_a_big_log_is_read(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    stamp = local(ago(minutes=30))
    body = "".join(f"{stamp} ERROR line {i:05d}: card 4111111111111111\n" for i in range(2000))
    log.write_text(body, encoding="utf-8")
    s = Scenario(runs=[(1, biz(1), "NG", ago(hours=1), ago(minutes=10))], records=[],
                 logs=f"\n    logs:\n      app: {{path: '{log}', patterns: {{error: ERROR}}}}")
    config = sqlite_setup(tmp_path, s)
    human = rerun_check(config, "card-auth", "--log-read-limit", "4KiB")
    assert "big.log: only its last 0.0 MiB of 0.1 MiB were read" in human.stdout
    report = rerun_check(config, "card-auth", "--json", "--log-read-limit", "4KiB").report["logs"][0]
    assert report["files"][0]["truncated"] is True and report["files"][0]["read_bytes"] == 4096
    line_bytes = len(body) // 2000
    assert report["matching_lines"] == 4096 // line_bytes  # whole lines only: the cut first one is dropped
    assert report["lines"][-1]["text"] == f"{stamp} ERROR line 01999: card ************1111"
    assert "4111111111111111" not in json.dumps(report)


def test_log_files_are_the_ones_the_exporter_follows(tmp_path: Path) -> None:
    folder = tmp_path / "logs[old]"  # brackets in a directory name are literal, as for the exporter
    folder.mkdir()
    for name in ("app-1.log", ".app-2.log", "app-3.txt"):
        (folder / name).write_text(f"{local(ago(minutes=5))} ERROR x\n", encoding="utf-8")
    log = LogConfig(path=f"{folder}/*app-*.log", patterns={"error": "ERROR"})
    found = scan_log("app", log, ago(hours=1).timestamp(), LogLimits())
    assert not found.problems and found.matching_lines == 2
    assert sorted(f.path for f in found.files) == expand(log.path) == \
        [str(folder / ".app-2.log"), str(folder / "app-1.log")]


def test_read_tail_keeps_utf16_aligned(tmp_path: Path) -> None:
    path = tmp_path / "wide.log"
    text = "".join(f"行 {i} ERROR\r\n" for i in range(100))
    path.write_bytes(text.encode("utf-16"))  # with a byte order mark
    lines, read, truncated = read_tail(path, "utf-16", 301)
    assert truncated and read % 2 == 0 and read <= 301
    assert lines[-1] == "行 99 ERROR" and all(re.fullmatch(r"行 \d+ ERROR", line) for line in lines)
    whole, _, cut = read_tail(path, "utf-16", 1 << 20)
    assert not cut and whole[0] == "行 0 ERROR" and len(whole) == 100


def test_leading_timestamps() -> None:
    expected = datetime(2026, 11, 27, 2, 0, 13, tzinfo=UTC).timestamp()
    assert leading_timestamp("2026-11-27 02:00:13.123 ERROR x") == expected
    assert leading_timestamp("[2026/11/27T02:00:13] x") is not None
    assert leading_timestamp("\tat jp.example.Foo(Foo.java:1)") is None
    assert leading_timestamp("2026-13-45 99:00:00 impossible") is None


# --- the demo ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    paths = create_demo(folder, now=NOW)
    paths.config.write_text(demo_config_text(folder), encoding="utf-8")
    return paths.config


def demo_rows(config: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{config.parent / 'payments.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_demo_crashed_night_is_unsafe_to_rerun(demo_config: Path) -> None:
    crashed = demo_rows(demo_config, "SELECT exec_id, biz_date FROM job_execution "
                                     "WHERE job_name = 'card-authorization' AND exec_status = 'A'")
    assert len(crashed) == 1
    exec_id, day = crashed[0]
    outcome = rerun_check(demo_config, "card-authorization", "--json", "--business-date", day)
    assert outcome.code == 1
    report = outcome.report
    attempts = [(a["status"], a["status_code"]) for a in report["attempts"]]
    assert attempts == [("failed", "A"), ("success", "C")]  # the abend, and the re-run that followed it
    assert report["attempts"][0]["run_id"] == str(exec_id) and report["attempts"][0]["pending_records"] > 0
    unsafe = [r["message"] for r in report["rules"] if r["result"] == "unsafe"]
    assert any(m.startswith(f"run {exec_id} left ") and "AUTHORIZING" in m for m in unsafe)
    assert any("already succeeded" in m for m in unsafe)
    assert any(m.startswith("check stuck_authorizing = ") for m in unsafe)
    assert any(m.startswith("check double_authorized = ") for m in unsafe)  # what the blind re-run did


def test_demo_healthy_idempotent_neighbour_is_safe(demo_config: Path) -> None:
    outcome = rerun_check(demo_config, "settlement-report")
    assert outcome.code == 0 and outcome.stdout.startswith("SAFE to re-run: settlement-report")


def test_demo_fresh_crash_tonight(tmp_path: Path) -> None:
    paths = create_demo(tmp_path, now=NOW)
    paths.config.write_text(demo_config_text(tmp_path), encoding="utf-8")
    ((latest,),) = demo_rows(paths.config, "SELECT MAX(biz_date) FROM job_execution")
    tonight = date.fromisoformat(latest) + timedelta(days=1)
    # the batch abends 20 minutes into tonight's run, the way the incident began
    crash = AuthRun(tonight, 1, clock.time() - 1800, 1800, "A", random.Random(1), fail_step=3)
    conn = open_writer_connection(paths.database)
    try:
        play(DemoWriter(paths, conn), crash.steps())
    finally:
        conn.close()
    human, machine = (rerun_check(paths.config, "card-authorization"),
                      rerun_check(paths.config, "card-authorization", "--json"))
    assert human.code == machine.code == 1
    report = machine.report
    assert report["business_date"] == tonight.isoformat() and len(report["attempts"]) == 1
    assert report["attempts"][0]["status_code"] == "A" and report["attempts"][0]["pending_records"] > 0
    assert {"no_pending_rows", "no_data_changed"} <= set(machine.rules("unsafe"))
    app = next(log for log in report["logs"] if log["name"] == "app")
    assert app["files"] and all(Path(f["path"]).stat().st_mtime >= clock.time() - 3600 for f in app["files"])
    assert "Rows of the latest attempt, run" in human.stdout and "AUTHORIZING" in human.stdout


# --- real PostgreSQL -----------------------------------------------------------------------------

PG_RUNS = ("run_id INTEGER PRIMARY KEY, job VARCHAR(40), biz_date DATE, status VARCHAR(10), "
           "start_time TIMESTAMP NULL, end_time TIMESTAMP NULL")


@requires_odbc("postgresql")
def test_postgresql_run_table(tmp_path: Path) -> None:
    def naive(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(TOKYO).replace(tzinfo=None)

    runs = [(1, "card-auth", date.fromisoformat(biz(1)), "ABEND", naive(ago(hours=3)), naive(ago(hours=2))),
            (9, "card-auth", date.fromisoformat(biz(30)), "OK", naive(ago(days=30)), naive(ago(days=29)))]
    with scratch_table("postgresql", PG_RUNS, runs) as runs_table, \
            scratch_table("postgresql", "req_id INTEGER, run_id INTEGER, state VARCHAR(20)",
                          [(i, 1, "AUTHORIZING" if i < 3 else "APPROVED") for i in range(10)]) as auth_table:
        s = Scenario(runs=[], checks=STUCK_CHECK.replace("auth_request", auth_table))
        config = tmp_path / "config.yml"
        config.write_text(config_text(f"    odbc: '{odbc_connection_string('postgresql')}'", s, runs_table,
                                      auth_table), encoding="utf-8")
        human, machine = both(config)
        assert human.code == 1, human.stdout
        report = machine.report
        assert report["business_date"] == biz(1) and [a["run_id"] for a in report["attempts"]] == ["1"]
        assert report["attempts"][0]["records"] == {"AUTHORIZING": 3, "APPROVED": 7}
        assert report["attempts"][0]["duration_seconds"] == 3600
        assert report["checks"][0]["value"] == 3 and report["checks"][0]["ok"] is False
        assert set(machine.rules("unsafe")) == {"no_pending_rows", "no_data_changed", "checks_pass"}
        # an old date is reached beyond the lookback window
        outcome = rerun_check(config, "card-auth", "--json", "--business-date", biz(30))
        assert outcome.code == 1 and [a["run_id"] for a in outcome.report["attempts"]] == ["9"]


# --- pure logic ----------------------------------------------------------------------------------


def attempt(run_id: str, status: str, day: str | None, start: datetime | None, **records: int) -> Attempt:
    end = None if status == "running" or start is None else start + timedelta(hours=1)
    row = RunRow(run_id, day, status, start, end)
    return Attempt(row=row, raw_status=status[:1].upper(), key=int(run_id),
                   records={k: float(v) for k, v in records.items()} if records else None)


def evidence(attempts: Sequence[Attempt], **kw: Any) -> Evidence:
    base: dict[str, Any] = {"batch": "b", "now": NOW, "timezone": "Asia/Tokyo", "idempotent": False,
                            "requested_date": None, "business_date": "2026-11-26", "attempts": list(attempts),
                            "pending_states": ["AUTHORIZING"]}
    return Evidence(**{**base, **kw})


def test_unsafe_outweighs_missing_evidence() -> None:
    running = attempt("2", "running", "2026-11-26", ago(minutes=5))
    broken = Attempt(row=attempt("1", "failed", "2026-11-26", ago(hours=2)).row, raw_status="E", key=1,
                     records_error="database 'x' did not answer in time")
    j = judge(evidence([broken, running]))
    assert j.verdict == "unsafe" and j.exit_code == 1
    assert [r.rule for r in j.rules if r.result == "unknown"] == ["no_pending_rows"]
    j = judge(evidence([broken]))
    assert j.verdict == "unknown" and j.exit_code == 2


def test_pending_rows_of_any_attempt_count() -> None:
    first = attempt("1", "failed", "2026-11-26", ago(hours=3), AUTHORIZING=2)
    clean = replace_records(attempt("2", "failed", "2026-11-26", ago(hours=1)), {})
    j = judge(evidence([first, clean]))
    assert j.verdict == "unsafe" and j.reasons == ["run 1 left 2 rows in pending states (AUTHORIZING 2): it "
                                                   "stopped without rolling back"]
    assert judge(evidence([replace_records(first, {}), clean])).verdict == "safe"


def replace_records(a: Attempt, records: dict[str, float]) -> Attempt:
    return Attempt(row=a.row, raw_status=a.raw_status, key=a.key, records=records)


def test_attempts_are_selected_by_business_date() -> None:
    rows = [attempt("1", "success", "2026-11-25", ago(days=1)), attempt("3", "failed", None, ago(hours=2)),
            attempt("2", "failed", "2026-11-26", ago(hours=5))]
    tz = TOKYO
    today = ago(hours=2).astimezone(tz).date().isoformat()  # no business date: the local start date
    # the latest business date is the greatest one the table holds; a run without one does not decide it
    chosen, attempts, recent = select_attempts(rows, None, tz, NOW)
    assert chosen == "2026-11-26" and [a.run_id for a in attempts] == ["2"]
    chosen, attempts, _ = select_attempts(rows, today, tz, NOW)
    assert chosen == today and [a.run_id for a in attempts] == ["3"]
    assert recent[0] == (today, 1) and dict(recent)["2026-11-25"] == 1


def test_window_reaches_back_for_an_old_date() -> None:
    assert window_start(NOW, 86400, TOKYO, None) == NOW - timedelta(days=1)
    start = window_start(NOW, 86400, TOKYO, "2020-01-10")
    assert start == datetime(2020, 1, 9, tzinfo=TOKYO)
    assert window_start(NOW, 86400, TOKYO, "not-a-date") == NOW - timedelta(days=1)


class _DriverDatabase(Database):
    """Answers the way ODBC drivers do: native dates and datetimes, Decimal counts, blank-padded CHAR
    codes, bytes; records every parameter it is given."""

    name = "payments"

    def __init__(self, runs: list[tuple[object, ...]], records: list[tuple[object, ...]],
                 check: list[tuple[object, ...]]) -> None:
        latest_start = max(run[3] for run in runs)
        self.answers = {"1 = 0": [], "MAX(": [(latest_start,)], "batch_run": runs, "GROUP BY": records,
                        "COUNT(*)": check}
        self.params: list[Sequence[object]] = []
        self.windows: list[Sequence[object]] = []  # the parameters of each window query

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        self.params.append(params)
        if ">= ?" in sql:
            self.windows.append(params)
        return next(rows for key, rows in self.answers.items() if key in sql)

    def close(self) -> None:
        pass


@pytest.mark.clock
def test_the_exporter_and_rerun_check_read_the_same_rows_alike() -> None:
    start = ago(hours=3).astimezone(TOKYO).replace(tzinfo=None)
    runs = [(7, date(2026, 11, 26), "NG  ", start, start + timedelta(minutes=30)),
            (8, datetime(2026, 11, 26, 0, 0), b"RUN", start + timedelta(hours=1), None)]
    records = [("AUTHORIZING ", Decimal(2)), (None, None), ("AUTHORIZING", 1.0), ("APPROVED", 5)]
    config = parse_config(config_text("    odbc: 'Driver={PostgreSQL Unicode};Server=db.invalid'",
                                      Scenario(runs=[], checks=STUCK_CHECK)), "c.yml")
    batch = config.batches["card-auth"]
    db = _DriverDatabase(runs, records, check=[(None,)])

    ev = gather(config, "card-auth", now=NOW, open_db=lambda name, cfg: db)
    snapshot = RunsSource("card-auth", batch, db, clock=NOW.timestamp).poll()
    assert len(db.windows) == 2 and db.windows[0] == db.windows[1] != ()  # after the same sample, the same boundary
    labels = [dict(s.labels) for s in snapshot.samples]
    samples = {(s.name, label.get("state", label.get("status"))): s.value
               for s, label in zip(snapshot.samples, labels, strict=True)}

    assert ev.business_date == "2026-11-26" and [a.run_id for a in ev.attempts] == ["7", "8"]
    assert ev.latest is not None and ev.latest.row.status == "running" and ev.latest.raw_status == "RUN"
    assert samples[("batch_run_last_status", "running")] == 1 and samples[("batch_run_attempts", None)] == 2
    assert ev.latest.records == {"AUTHORIZING": 3, "": 0, "APPROVED": 5}
    assert {state: samples[("batch_run_records", state)] for state in ev.latest.records} == ev.latest.records

    with pytest.raises(SourceError) as caught:
        ChecksSource("card-auth", batch.checks, db).poll()
    assert caught.value.reason == "data" and str(caught.value) == f"check stuck: {ev.checks[0].error}"
    assert ev.checks[0].error is not None and ev.checks[0].error.startswith("the query returned NULL")


def test_shared_helpers_raise_value_errors_the_callers_word() -> None:
    with pytest.raises(ValueError, match="no row"):
        check_value([])
    with pytest.raises(ValueError, match="got a value of type bytes"):
        check_value([(b"1",)])
    assert check_value([(Decimal("2.5"), "ignored")]) == 2.5
    moment = datetime(2026, 11, 26, 17, 0, 5, tzinfo=UTC)
    assert window_param(moment, TOKYO, text=True) == "2026-11-27 02:00:05"
    assert window_param(moment, TOKYO, text=False) == datetime(2026, 11, 27, 2, 0, 5)


class _SilentDatabase(Database):
    """Stands for a server that accepted the connection and never answers."""

    name = "silent"

    def __init__(self) -> None:
        self.release = threading.Event()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        self.release.wait(30)
        return []

    def close(self) -> None:
        pass


def test_a_silent_database_cannot_hang_the_command() -> None:
    silent = _SilentDatabase()
    bounded = BoundedDatabase(silent, connect_timeout=0.1, query_timeout=0.1, margin=0.1)
    try:
        with pytest.raises(QueryError) as first:
            bounded.query("SELECT 1")
        assert first.value.reason == "timeout" and "no answer within 0.3s" in str(first.value)
        with pytest.raises(QueryError, match="no answer"):  # abandoned: later calls do not queue behind it
            bounded.query("SELECT 1")
    finally:
        silent.release.set()


# --- the columns the run table really returns (issue 9 item 2) -----------------------------------


def runs_query_setup(tmp_path: Path, runs: Sequence[tuple[int, str | None, str, datetime, datetime | None]],
                     query: str, columns: str = "") -> Path:
    """A SQLite `job_runs` table (run_id, job, business_date, status, started_at, ended_at) read through
    runs.query, the columns mapped only as `columns` says (by default not at all)."""
    conn = sqlite3.connect(tmp_path / "runs.db")
    conn.execute("CREATE TABLE job_runs (run_id INTEGER PRIMARY KEY, job TEXT, business_date TEXT, status TEXT, "
                 "started_at TEXT, ended_at TEXT)")
    conn.executemany("INSERT INTO job_runs VALUES (?, 'card-auth', ?, ?, ?, ?)",
                     [(run_id, day, status, local(start), local(end)) for run_id, day, status, start, end in runs])
    conn.commit()
    conn.close()
    config = tmp_path / "config.yml"
    config.write_text(f"""databases:
  payments:
    sqlite: '{tmp_path / 'runs.db'}'
batches:
  card-auth:
    database: payments
    runs:
      query: "{query}"{columns}
      status: {{success: [OK], failed: [NG, ABEND], running: [RUN]}}
      timezone: Asia/Tokyo
""", encoding="utf-8")
    return config


def around_midnight(day: str) -> tuple[datetime, datetime]:
    """23:30 on `day` and 00:20 the next calendar day, Tokyo time."""
    d = date.fromisoformat(day)
    late = datetime(d.year, d.month, d.day, 23, 30, tzinfo=TOKYO)
    return late, late + timedelta(minutes=50)


@pytest.mark.clock
def test_an_unmapped_business_date_column_of_the_runs_query_is_used(tmp_path: Path) -> None:
    day = biz(2)  # its next calendar day's 00:20 is over a day ago at any hour
    failed, rerun = around_midnight(day)
    config = runs_query_setup(
        tmp_path, [(1, day, "NG", failed, failed + timedelta(minutes=20)),
                   (2, day, "NG", rerun, rerun + timedelta(minutes=10))],
        "SELECT run_id, business_date, status, started_at, ended_at FROM job_runs WHERE job = 'card-auth'")
    human, machine = both(config)
    report = machine.report
    assert report["business_date"] == day and [a["run_id"] for a in report["attempts"]] == ["1", "2"]
    assert [a["business_date"] for a in report["attempts"]] == [day, day]
    assert report["business_date_note"] is None and report["run_table_error"] is None
    assert f"Attempts for business date {day} " in human.stdout and "no business date column" not in human.stdout


@pytest.mark.clock
def test_a_run_table_without_a_business_date_says_so(tmp_path: Path) -> None:
    failed, rerun = around_midnight(biz(2))
    config = runs_query_setup(
        tmp_path, [(1, None, "NG", failed, failed + timedelta(minutes=20)),
                   (2, None, "NG", rerun, rerun + timedelta(minutes=10))],
        "SELECT run_id, status, started_at, ended_at FROM job_runs WHERE job = 'card-auth'")
    human, machine = both(config)
    report = machine.report
    # counted by the local start date: the re-run after midnight is on a date of its own
    assert report["business_date"] == biz(1) and [a["run_id"] for a in report["attempts"]] == ["2"]
    note = report["business_date_note"]
    assert note is not None and note.startswith("the runs query has no business date column")
    assert "runs.timezone (Asia/Tokyo)" in note and f"note: {note}" in human.stdout


def test_a_mapped_column_the_run_table_lacks_is_named(tmp_path: Path) -> None:
    config = runs_query_setup(
        tmp_path, [(1, "2026-11-26", "NG", ago(hours=3), ago(hours=2))],
        "SELECT run_id, business_date, status, started_at, ended_at FROM job_runs",
        columns="\n      columns: {status: state, ended_at: finished_at}")
    human, machine = both(config)
    assert human.code == 2 and machine.rules("unknown") == ["run_table"]
    error = machine.report["run_table_error"]
    assert error == ("batches.card-auth.runs.columns: the runs query returns no column for columns.status "
                     "('state'), columns.ended_at ('finished_at')")
    assert error in human.stdout


# --- a run in progress, a run presumed dead, one spelling of dates (issue 9 item 8) ---------------


def reports(ev: Evidence) -> tuple[str, str]:
    """(the text report, the --json report) of gathered evidence."""
    from batch_exporter.rerun import render_text, to_json

    j = judge(ev)
    return render_text(ev, j), json.dumps(to_json(ev, j), ensure_ascii=False)


def test_pending_rows_of_a_run_in_progress_are_not_left_behind() -> None:
    clean = replace_records(attempt("1", "failed", "2026-11-26", ago(hours=2)), {})
    running = attempt("2", "running", "2026-11-26", ago(minutes=30), AUTHORIZING=3)
    for limit in ({}, {"max_duration": 7200.0}):  # without a max_duration, or within it
        ev = evidence([clean, running], **limit)
        j = judge(ev)
        assert j.verdict == "unsafe" and [r.rule for r in j.rules if r.result == "unsafe"] == ["nothing_running"]
        assert [r.result for r in j.rules if r.rule == "no_pending_rows"] == ["info"]
        for text in reports(ev):
            assert "without rolling back" not in text and not re.search(r"run 2 left \d+ rows", text), text
            assert "presumed dead" not in text
            assert "run 2 is still running: its 3 rows in pending states (AUTHORIZING 3) are in progress, " \
                   "not left behind" in text
        human, _ = reports(ev)
        assert "the run is still in progress: its rows in pending states are in progress" in human


def test_a_run_presumed_dead_left_its_rows_behind() -> None:
    clean = replace_records(attempt("1", "failed", "2026-11-26", ago(hours=7)), {})
    dead = attempt("2", "running", "2026-11-26", ago(hours=5), AUTHORIZING=3)
    ev = evidence([clean, dead], max_duration=7200.0)
    j = judge(ev)
    assert j.verdict == "unsafe"
    assert {r.rule for r in j.rules if r.result == "unsafe"} == {"nothing_running", "no_pending_rows"}
    human, machine = reports(ev)
    for text in (human, machine):
        assert "is still running" not in text and "in progress, not left behind" not in text
        assert "run 2 (business date 2026-11-26) is presumed dead: marked running for 5h, longer than " \
               "max_duration 2h: its process most likely died" in text
        assert "run 2 is presumed dead (marked running for 5h, longer than max_duration 2h: its process most " \
               "likely died): its 3 rows in pending states (AUTHORIZING 3) were left behind" in text
    assert re.search(r"\n  2 +running \(R\), presumed dead ", human)
    assert [a["presumed_dead"] for a in json.loads(machine)["attempts"]] == [False, True]
    # within max_duration, or without one, the same run is in progress
    for alive in (evidence([clean, dead], max_duration=6 * 3600.0), evidence([clean, dead])):
        assert "presumed dead" not in reports(alive)[0]


@pytest.mark.clock
@pytest.mark.parametrize("column_type", ["TEXT", "DATE"])
def test_business_dates_are_shown_in_one_spelling(tmp_path: Path, column_type: str) -> None:
    # '20261202' stays text in a TEXT column; a DATE column (numeric affinity in SQLite) keeps 20261202
    compact = {days: biz(days).replace("-", "") for days in (1, 2)}
    runs = [(1, compact[2], "RUN", ago(hours=30), None),  # presumed dead, another business date
            (2, compact[1], "NG", ago(hours=3), ago(hours=2)),
            (3, compact[1], "RUN", ago(minutes=20), None)]
    conn = sqlite3.connect(tmp_path / "runs.db")
    conn.execute(f"CREATE TABLE batch_run (run_id INTEGER PRIMARY KEY, job TEXT, biz_date {column_type}, "
                 "status TEXT, start_time TEXT, end_time TEXT)")
    conn.executemany("INSERT INTO batch_run VALUES (?, 'card-auth', ?, ?, ?, ?)",
                     [(run_id, day, status, local(start), local(end)) for run_id, day, status, start, end in runs])
    conn.execute("CREATE TABLE auth_request (req_id INTEGER PRIMARY KEY, run_id INTEGER, state TEXT)")
    conn.executemany("INSERT INTO auth_request (run_id, state) VALUES (?, ?)",
                     [(2, "AUTHORIZING")] * 2 + [(3, "AUTHORIZING")])
    stored = conn.execute("SELECT typeof(biz_date) FROM batch_run").fetchall()
    conn.commit()
    conn.close()
    assert stored == [("text" if column_type == "TEXT" else "integer",)] * 3
    config = tmp_path / "config.yml"
    text = config_text(f"    sqlite: '{tmp_path / 'runs.db'}'", Scenario(runs=[]))
    config.write_text(text.replace("    idempotent:", "    max_duration: 2h\n    idempotent:"), encoding="utf-8")
    human, machine = both(config, "--business-date", compact[1])
    for outcome in (human, machine):
        assert not re.search(r"(?<!\d)\d{8}(?!\d)", outcome.stdout), outcome.stdout
    report = machine.report
    assert report["business_date"] == biz(1)
    assert [(a["run_id"], a["business_date"]) for a in report["attempts"]] == [("2", biz(1)), ("3", biz(1))]
    assert [(a["run_id"], a["business_date"], a["presumed_dead"]) for a in report["other_running"]] == \
        [("1", biz(2), True)]
    assert f"run 1 (business date {biz(2)}) is presumed dead" in human.stdout
    assert f"run 3 (business date {biz(1)}) is still running" in human.stdout
    assert "run 2 left 2 rows in pending states (AUTHORIZING 2): it stopped without rolling back" in human.stdout
    assert "run 3 is still running: its 1 row in pending states (AUTHORIZING 1) are in progress" in human.stdout
