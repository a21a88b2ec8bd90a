"""The embedded demo: its database and logs, the simulator, and the shipped demo.yml against both."""
from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.triggers.cron import CronTrigger

from batch_exporter.app import Exporter
from batch_exporter.config import load_config
from batch_exporter.practice import demo as demo_module
from batch_exporter.practice.demo import CONFIG_INTERVAL_SECONDS, NotADemoError, create_demo, prepare_demo
from batch_exporter.practice.demo_sim import (
    AUTH_SHARE,
    SETTLEMENT_AT,
    SETTLEMENT_SHARE,
    TOKYO,
    DemoPaths,
    DemoSimulator,
)
from batch_exporter.units import parse_duration, parse_size

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # 21:00 in Tokyo: last night's runs are over
SHIPPED = Path(__file__).resolve().parents[1] / "exporter" / "batch_exporter" / "practice" / "demo_data" / "demo.yml"
TEST_BINS = {"411111", "555555", "353011", "378282"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return create_demo(tmp_path_factory.mktemp("demo"), now=NOW)


@pytest.fixture(scope="module")
def config(demo: DemoPaths) -> dict[str, Any]:
    text = SHIPPED.read_text(encoding="utf-8").replace("${DEMO_DIR}", str(demo.folder))
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def read_only(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)


def rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    conn = read_only(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def auth_runs(db: Path) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT exec_id, biz_date, exec_status, start_ts, end_ts FROM job_execution"
                    " WHERE job_name = 'card-authorization' ORDER BY exec_id")


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=TOKYO)


# --- the database ------------------------------------------------------------------------------------


def test_schema_speaks_its_own_language(demo: DemoPaths) -> None:
    def columns(table: str) -> list[str]:
        return [r[1] for r in rows(demo.database, f"PRAGMA table_info({table})")]

    assert columns("job_execution") == [
        "exec_id", "job_name", "biz_date", "exec_status", "start_ts", "end_ts", "exit_code", "host_name"]
    assert columns("auth_request") == [
        "request_id", "exec_id", "merchant_ref", "card_token", "masked_pan", "amount_yen", "auth_state",
        "auth_code", "updated_ts"]
    assert columns("settlement") == [
        "biz_date", "exec_id", "approved_count", "approved_amount_yen", "settled_ts"]
    assert rows(demo.database, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("sql", [
    "SELECT exec_id, exec_status FROM job_execution WHERE job_name = 'card-authorization'"
    " ORDER BY start_ts DESC LIMIT 1",
    # the shape of the exporter's lookback read of a `table` + `where` run source
    "SELECT exec_id, biz_date, exec_status, start_ts, end_ts FROM job_execution"
    " WHERE start_ts >= '2026-11-13 21:00:00' AND (job_name = 'card-authorization')",
])
def test_run_queries_use_the_job_start_index(demo: DemoPaths, sql: str) -> None:
    plan = " | ".join(r[-1] for r in rows(demo.database, f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_job_execution_job_start" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_thirty_nights_at_two_in_the_morning_tokyo_time(demo: DemoPaths) -> None:
    runs = auth_runs(demo.database)
    first_attempts: dict[str, tuple[Any, ...]] = {}
    for run in runs:
        first_attempts.setdefault(run[1], run)
    assert len(first_attempts) == 30
    assert max(first_attempts) == "2026-11-26"  # the 02:00 run of 27 Nov processed the 26th
    for biz_date, (_, _, status, start, end) in first_attempts.items():
        started = local(start)
        assert started.date() - timedelta(days=1) == datetime.fromisoformat(biz_date).date()
        assert (started.hour, started.minute) == (2, 0)
        if status == "C":
            assert timedelta(minutes=40) <= local(end) - started <= timedelta(minutes=70)
    assert {r[2] for r in runs} == {"C", "E", "A"}  # nothing left running
    settlements = rows(demo.database, "SELECT exec_status, COUNT(*) FROM job_execution"
                                      " WHERE job_name = 'settlement-report' GROUP BY exec_status")
    assert settlements == [("C", 30)]


def test_one_failed_night_and_one_crash_each_re_run_once(demo: DemoPaths) -> None:
    by_date: dict[str, list[str]] = {}
    for _, biz_date, status, _, _ in auth_runs(demo.database):
        by_date.setdefault(biz_date, []).append(status)
    re_runs = {d: s for d, s in by_date.items() if len(s) > 1}
    assert sorted(re_runs.values()) == [["A", "C"], ["E", "C"]]
    assert all(s == ["C"] for d, s in by_date.items() if d not in re_runs)


def states_of(db: Path, status: str) -> Counter[str]:
    found = rows(db, "SELECT a.auth_state, COUNT(*) FROM auth_request a JOIN job_execution j"
                     " ON j.exec_id = a.exec_id WHERE j.exec_status = ? GROUP BY a.auth_state", (status,))
    return Counter(dict(found))


def test_the_crash_left_rows_authorizing_and_the_failure_left_none(demo: DemoPaths) -> None:
    crashed = states_of(demo.database, "A")
    assert crashed["AUTHORIZING"] > 0 and crashed["RECEIVED"] > 0 and crashed["APPROVED"] > 0
    failed = states_of(demo.database, "E")
    assert failed["ERROR"] > 0 and failed["AUTHORIZING"] == failed["RECEIVED"] == 0
    completed = states_of(demo.database, "C")
    assert set(completed) == {"APPROVED", "DECLINED"}


def test_the_re_runs_authorized_payments_twice(demo: DemoPaths) -> None:
    twice = rows(demo.database,
                 "SELECT DISTINCT j.biz_date FROM auth_request a JOIN job_execution j"
                 " ON j.exec_id = a.exec_id WHERE a.auth_state = 'APPROVED' AND a.merchant_ref IN"
                 " (SELECT merchant_ref FROM auth_request WHERE auth_state = 'APPROVED'"
                 " GROUP BY merchant_ref HAVING COUNT(*) > 1)")
    re_run_dates = rows(demo.database,
                        "SELECT biz_date FROM job_execution WHERE job_name = 'card-authorization'"
                        " GROUP BY biz_date HAVING COUNT(*) > 1")
    assert sorted(twice) == sorted(re_run_dates)


def test_no_card_number_is_stored_or_logged(demo: DemoPaths) -> None:
    pans = [r[0] for r in rows(demo.database, "SELECT DISTINCT masked_pan FROM auth_request")]
    assert pans and all(re.fullmatch(r"\d{6}\*{5,6}\d{4}", p) and p[:6] in TEST_BINS for p in pans)
    conn = read_only(demo.database)
    dump = "\n".join(conn.iterdump())
    conn.close()
    logs = [p.read_bytes().decode("cp932" if p == demo.sdk_log else "utf-8")
            for p in demo.logs.rglob("*.log")]
    for text in [dump, *logs]:
        assert not re.search(r"\b\d{13,19}\b", text)  # a bare number as long as a card number


def snapshot(folder: Path) -> tuple[str, dict[str, bytes]]:
    conn = read_only(folder / "payments.db")
    dump = "\n".join(conn.iterdump())
    conn.close()
    logs = sorted((folder / "logs").rglob("*.log"))
    return dump, {str(p.relative_to(folder)): p.read_bytes() for p in logs}


def test_the_same_now_and_seed_give_the_same_demo(tmp_path: Path) -> None:
    first = snapshot(create_demo(tmp_path / "a", now=NOW).folder)
    assert snapshot(create_demo(tmp_path / "b", now=NOW).folder) == first
    assert snapshot(create_demo(tmp_path / "c", now=NOW, seed=8).folder) != first


def test_create_demo_wants_an_aware_now_and_never_overwrites(demo: DemoPaths, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        create_demo(tmp_path, now=datetime(2026, 11, 27, 12, 0))
    with pytest.raises(FileExistsError, match="payments.db"):
        create_demo(demo.folder, now=NOW)


# --- the logs ----------------------------------------------------------------------------------------


def test_app_logs_one_per_day_level_anchored(demo: DemoPaths, config: dict[str, Any]) -> None:
    patterns = config["batches"]["card-authorization"]["logs"]["app"]["patterns"]
    error, exception = re.compile(patterns["error"]), re.compile(patterns["exception"])
    files = sorted(demo.logs.glob("auth-batch-*.log"))
    assert [f.name for f in files][-1] == "auth-batch-20261127.log" and len(files) == 30
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    assert all(f.stat().st_size < 8 * 1024 for f in files)
    errors = [line for line in lines if error.search(line)]
    assert errors and all(" ERROR [" in line for line in errors)
    quoting = [line for line in lines if "ERROR" in line and not error.search(line)]
    assert quoting and all(re.match(r"\S+ \S+ INFO ", line) for line in quoting)
    heads = [line for line in lines if exception.search(line)]
    assert heads == ["java.net.SocketTimeoutException: Read timed out"]


def test_sdk_log_is_cp932_crlf_and_two_thirds_of_its_limit(demo: DemoPaths, config: dict[str, Any]) -> None:
    sdk = config["batches"]["card-authorization"]["logs"]["sdk"]
    data = demo.sdk_log.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode(sdk["encoding"])
    assert "オーソリ" in text and text.count("\r\n") == text.count("\n")
    limit = parse_size(sdk["size_limit"])
    assert 0.55 * limit < len(data) < 0.8 * limit
    lines = text.splitlines()
    assert len([line for line in lines if re.search(sdk["patterns"]["error"], line)]) == 2  # timeout, crash
    assert len([line for line in lines if re.search(sdk["patterns"]["timeout"], line)]) == 1


def test_settlement_log_is_quiet(demo: DemoPaths, config: dict[str, Any]) -> None:
    pattern = re.compile(config["batches"]["settlement-report"]["logs"]["report"]["patterns"]["error"])
    lines = demo.settlement_log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 90 and not any(pattern.search(line) for line in lines)


# --- demo.yml against the database -------------------------------------------------------------------


def test_shipped_config_is_valid_for_the_exporter(demo: DemoPaths) -> None:
    loaded = load_config(SHIPPED, env={"DEMO_DIR": str(demo.folder)})
    assert loaded.databases["payments"].sqlite == str(demo.database)
    assert set(loaded.batches) == {"card-authorization", "settlement-report"}


@pytest.mark.parametrize("batch", ["card-authorization", "settlement-report"])
def test_run_mapping_reads_every_run_of_the_batch(demo: DemoPaths, config: dict[str, Any],
                                                  batch: str) -> None:
    runs = config["batches"][batch]["runs"]
    columns = ", ".join(runs["columns"][key] for key in ("run_id", "business_date", "status", "started_at",
                                                         "ended_at"))
    found = rows(demo.database, f"SELECT {columns} FROM {runs['table']} WHERE {runs['where']}")
    job_rows = rows(demo.database, "SELECT COUNT(*) FROM job_execution WHERE job_name = ?", (batch,))
    assert len(found) == job_rows[0][0] > 0
    mapped = {str(code) for codes in runs["status"].values() for code in codes}
    assert {r[2] for r in found} <= mapped


def test_records_query_counts_the_crashed_runs_rows(demo: DemoPaths, config: dict[str, Any]) -> None:
    records = config["batches"]["card-authorization"]["records"]
    (crashed,) = rows(demo.database, "SELECT exec_id FROM job_execution WHERE exec_status = 'A'")
    counts = dict(rows(demo.database, records["query"], crashed))
    pending = sum(counts.get(state, 0) for state in records["pending_states"])
    assert pending == counts["AUTHORIZING"] + counts["RECEIVED"] > 0


def test_checks_show_the_incident_and_a_healthy_neighbour(demo: DemoPaths, config: dict[str, Any]) -> None:
    values = {}
    for batch in config["batches"].values():
        for name, check in batch["checks"].items():
            (row,) = rows(demo.database, check["query"])
            assert len(row) == 1 and isinstance(row[0], int), name
            low, high = check.get("min", float("-inf")), check.get("max", float("inf"))
            values[name] = (row[0], low <= row[0] <= high)
    crashed = states_of(demo.database, "A")["AUTHORIZING"]
    assert values["stuck_authorizing"] == (crashed, False)
    assert values["double_authorized"][0] > 0 and values["double_authorized"][1] is False
    assert values["settlement_mismatch"] == (0, True)
    assert values["latest_settled_yen"][1] is True


def test_demo_schedules_match_the_simulated_nights(config: dict[str, Any]) -> None:
    """Nights start on multiples of the interval; the settlement at two thirds of the night."""
    auth, settle = config["batches"]["card-authorization"], config["batches"]["settlement-report"]
    start = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    for batch, offset in ((auth, 0.0), (settle, SETTLEMENT_AT * CONFIG_INTERVAL_SECONDS)):
        trigger = CronTrigger.from_crontab(batch["schedule"]["cron"], timezone=batch["schedule"]["timezone"])
        fire = trigger.get_next_fire_time(None, start)
        for _ in range(25):
            assert fire is not None and (fire.timestamp() - offset) % CONFIG_INTERVAL_SECONDS == 0
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    assert AUTH_SHARE[1] * CONFIG_INTERVAL_SECONDS < parse_duration(auth["max_duration"])
    assert AUTH_SHARE[1] < SETTLEMENT_AT
    assert SETTLEMENT_SHARE[1] * CONFIG_INTERVAL_SECONDS < parse_duration(settle["max_duration"])


# --- the simulator -----------------------------------------------------------------------------------


@pytest.fixture()
def fresh(tmp_path: Path) -> DemoPaths:
    return create_demo(tmp_path / "demo", now=NOW)


T0 = NOW.timestamp()  # a multiple of 180 s: a night boundary


def latest_auth(db: Path) -> tuple[Any, ...]:
    return auth_runs(db)[-1]


def run_states(db: Path, exec_id: int) -> dict[str, int]:
    return dict(rows(db, "SELECT auth_state, COUNT(*) FROM auth_request WHERE exec_id = ?"
                         " GROUP BY auth_state", (exec_id,)))


def test_a_simulated_night_runs_authorizes_and_settles(fresh: DemoPaths) -> None:
    sim = DemoSimulator(fresh, 180, seed=1, failure_rate=0.0)
    app_log = fresh.app_log(datetime.fromtimestamp(T0, TOKYO).date())
    sdk_before = fresh.sdk_log.stat().st_size
    try:
        assert sim.tick(T0) > T0
        exec_id, biz_date, status, start, end = latest_auth(fresh.database)
        assert (biz_date, status, start, end) == ("2026-11-27", "R", "2026-11-27 21:00:00", None)
        assert run_states(fresh.database, exec_id).keys() == {"RECEIVED"}
        sim.tick(T0 + 0.5 * AUTH_SHARE[0] * 180)  # after the first chunk is sent, before the end
        assert "AUTHORIZING" in run_states(fresh.database, exec_id)
        sim.tick(T0 + 179)
        assert latest_auth(fresh.database)[2] == "C"
        settled = rows(fresh.database, "SELECT s.approved_count, j.exec_status FROM settlement s"
                                       " JOIN job_execution j ON j.exec_id = s.exec_id WHERE s.biz_date = ?",
                       (biz_date,))
        approved = rows(fresh.database, "SELECT COUNT(*) FROM auth_request WHERE exec_id = ?"
                                        " AND auth_state = 'APPROVED'", (exec_id,))
        assert settled == [(approved[0][0], "C")]
        sim.tick(T0 + 180)
        assert latest_auth(fresh.database)[1:3] == ("2026-11-28", "R")
    finally:
        sim.stop()
    text = app_log.read_text(encoding="utf-8")
    assert f"card-authorization end exec_id={exec_id} status=C" in text
    assert fresh.sdk_log.stat().st_size > sdk_before


def play_nights(sim: DemoSimulator, nights: int, start: float = T0) -> None:
    for n in range(nights):
        for fraction in (0.0, 0.2, 0.4, 0.6, 0.7, 0.9):
            sim.tick(start + (n + fraction) * 180)


def test_failed_nights_are_re_run_once(fresh: DemoPaths) -> None:
    sim = DemoSimulator(fresh, 180, seed=3, failure_rate=1.0)
    try:
        play_nights(sim, 8)
    finally:
        sim.stop()
    simulated = [r for r in auth_runs(fresh.database) if r[1] >= "2026-11-27"]
    assert [r[1] for r in simulated] == ["2026-11-27", "2026-11-27", "2026-11-28", "2026-11-28",
                                         "2026-11-29", "2026-11-29", "2026-11-30", "2026-11-30"]
    assert {r[2] for r in simulated} == {"E", "A"}
    crashed = rows(fresh.database, "SELECT COUNT(*) FROM auth_request a JOIN job_execution j"
                                   " ON j.exec_id = a.exec_id WHERE j.exec_status = 'A' AND j.biz_date >= ?"
                                   " AND a.auth_state = 'AUTHORIZING'", ("2026-11-27",))
    assert crashed[0][0] > 0


def test_a_run_left_running_by_a_killed_demo_is_marked_abended(fresh: DemoPaths) -> None:
    first = DemoSimulator(fresh, 180, seed=1, failure_rate=0.0)
    first.tick(T0)
    first.stop()
    exec_id, biz_date, status, _, _ = latest_auth(fresh.database)
    assert status == "R"
    second = DemoSimulator(fresh, 180, seed=1, failure_rate=0.0)
    try:
        second.tick(T0 + 400)
    finally:
        second.stop()
    runs = auth_runs(fresh.database)
    assert [r[2] for r in runs if r[0] == exec_id] == ["A"]
    assert runs[-1][1:3] == (biz_date, "R")  # the crashed date is re-run, on a night boundary's schedule


def test_the_sdk_log_goes_silent_at_its_cap(fresh: DemoPaths) -> None:
    cap = fresh.sdk_log.stat().st_size + 3000
    app_log = fresh.app_log(datetime.fromtimestamp(T0, TOKYO).date())
    sim = DemoSimulator(fresh, 180, seed=1, failure_rate=0.0, sdk_cap=cap)
    try:
        play_nights(sim, 6)
        at_cap, app_size = fresh.sdk_log.stat().st_size, app_log.stat().st_size
        play_nights(sim, 2, start=T0 + 6 * 180)
    finally:
        sim.stop()
    assert cap - 300 < at_cap <= cap
    assert fresh.sdk_log.stat().st_size == at_cap
    assert app_log.stat().st_size > app_size


def test_simulator_thread_moves_the_numbers_while_read_only_readers_poll(tmp_path: Path) -> None:
    config_path, sim = prepare_demo(tmp_path / "demo", interval=0.2)
    paths = DemoPaths(tmp_path / "demo")
    loaded = load_config(config_path)
    queries = [c.query for b in loaded.batches.values() for c in b.checks.values()]
    queries.append("SELECT exec_id, exec_status FROM job_execution WHERE job_name = 'card-authorization'"
                   " ORDER BY start_ts DESC LIMIT 1")
    before = len(auth_runs(paths.database))
    logs_before = sum(p.stat().st_size for p in paths.logs.glob("auth-batch-*.log"))
    problems: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        conn = read_only(paths.database, timeout=0)  # readers must never wait on the writer
        try:
            while not stop.is_set():
                for sql in queries:
                    conn.execute(sql).fetchall()
                reads += 1
        except sqlite3.Error as exc:
            problems.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    assert not sim.started
    sim.start()
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len([r for r in auth_runs(paths.database)[before:] if r[2] != "R"]) < 5:
            assert time.monotonic() < deadline, "the simulator finished fewer than 5 runs in 30 s"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sim.stop()
    assert problems == [] and reads > 0
    assert sum(p.stat().st_size for p in paths.logs.glob("auth-batch-*.log")) > logs_before


def test_prepare_demo_writes_a_loadable_config_and_starts_afresh(tmp_path: Path) -> None:
    folder = tmp_path / "a $HOME 'quoted' #folder"
    config_path, sim = prepare_demo(folder, now=NOW)
    assert config_path.parent == folder and not sim.started
    loaded = load_config(config_path, env={})
    assert loaded.databases["payments"].sqlite == str(folder.resolve() / "payments.db")
    sdk = loaded.batches["card-authorization"].logs["sdk"]
    assert sdk.path == str(folder.resolve() / "logs" / "sdk" / "auth-sdk.log")
    fresh = snapshot(folder)
    (folder / "state").mkdir()
    (folder / "notes.txt").write_text("mine")
    sim.tick(T0)
    sim.stop()
    assert snapshot(folder) != fresh
    prepare_demo(folder, now=NOW)
    assert snapshot(folder) == fresh
    assert not (folder / "state").exists() and (folder / "notes.txt").read_text() == "mine"


# --- starting afresh in a folder: only ever the demo's own files -------------------------------------


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def unchanged(folder: Path, before: dict[str, str]) -> bool:
    """Every file that was there still is, with the same bytes (a reader of a WAL database may add its
    -wal and -shm files)."""
    after = digests(folder)
    return {name: after.get(name) for name in before} == before


def other_database(folder: Path) -> Path:
    """A folder holding someone's own payments.db (with its WAL files), state/ and logs/."""
    folder.mkdir()
    database = folder / "payments.db"
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript("CREATE TABLE ledger (entry_id INTEGER PRIMARY KEY, amount_yen INTEGER);"
                       "INSERT INTO ledger (amount_yen) VALUES (1200), (-300);")
    (folder / "state").mkdir()
    (folder / "state" / "positions.json").write_text("{}")
    (folder / "logs").mkdir()
    (folder / "logs" / "settlement-report.log").write_text("theirs\n")
    conn.close()
    return database


def test_prepare_demo_refuses_a_folder_whose_database_is_not_the_demos(tmp_path: Path) -> None:
    folder = tmp_path / "payments"
    other_database(folder)
    before = digests(folder)

    with pytest.raises(NotADemoError) as refused:
        prepare_demo(folder, now=NOW)

    assert str(folder) in str(refused.value)
    assert "not the demo's database" in str(refused.value) and "ledger" in str(refused.value)
    assert unchanged(folder, before)


def test_prepare_demo_refuses_the_demos_file_names_without_its_database(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "demo.yml").write_text("mine: true\n")

    with pytest.raises(NotADemoError, match=r"demo\.yml but no demo database"):
        prepare_demo(folder, now=NOW)

    assert (folder / "demo.yml").read_text() == "mine: true\n"
    assert sorted(p.name for p in folder.iterdir()) == ["demo.yml"]


def test_prepare_demo_deletes_the_exporters_state_for_its_logs_and_keeps_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    config_path, _ = prepare_demo(folder, now=NOW)
    exporter = Exporter(load_config(config_path))
    try:
        exporter.poller.poll_all_once()  # saves the read positions of the demo's logs under state/
    finally:
        exporter.stop()
    positions = sorted(p.name for p in (folder / "state").iterdir())
    # the three logs' read positions, and the log evidence of each batch once a poll has counted some
    assert 3 <= len(positions) <= 5 and sum(name.startswith("logscan-") for name in positions) == 3, positions
    (folder / "state" / "mine.json").write_text("{}")
    (folder / "logs" / "notes.log").write_text("mine\n")

    prepare_demo(folder, now=NOW)

    assert sorted(p.name for p in (folder / "state").iterdir()) == ["mine.json"]
    assert (folder / "logs" / "notes.log").read_text() == "mine\n"


def test_an_interrupted_creation_leaves_an_empty_database_that_the_next_start_replaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "demo"

    def interrupted(writer: object, steps: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the history is written

    monkeypatch.setattr(demo_module, "play", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_demo(folder, now=NOW)
    assert rows(folder / "payments.db", "SELECT name FROM sqlite_master") == []  # no half-made schema
    monkeypatch.undo()

    prepare_demo(folder, now=NOW)

    assert len(auth_runs(folder / "payments.db")) == 32


def test_demo_command_refuses_a_folder_whose_database_is_not_the_demos(tmp_path: Path) -> None:
    folder = tmp_path / "payments"
    other_database(folder)
    before = digests(folder)

    done = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "demo", "--dir", str(folder),
                           "--web.listen-address", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy(), check=False)

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"demo: {folder} holds payments.db, which is not the demo's database")
    assert "Traceback" not in done.stderr
    assert unchanged(folder, before)


def _sample(snapshot: Any, name: str) -> float | None:
    return next((s.value for s in snapshot.samples if s.name == name), None)


@pytest.mark.parametrize("into_night", [5, 59, 110, 125, 175])
def test_a_fresh_demo_opens_without_a_missed_run(tmp_path: Path, into_night: int) -> None:
    """The history keeps production times; the compressed schedules expect a run every 3 minutes. From
    whatever second of a night the demo starts, no scheduled batch looks missed to BatchRunMissed's
    test: now past the expected start plus grace, and the latest start before it minus grace."""
    from batch_exporter.database import open_database
    from batch_exporter.sources.batchinfo import BatchInfoSource
    from batch_exporter.sources.runs import RunsSource

    start = T0 + into_night
    paths = create_demo(tmp_path / "demo", now=datetime.fromtimestamp(start, UTC))
    text = SHIPPED.read_text(encoding="utf-8").replace("${DEMO_DIR}", str(paths.folder))
    (tmp_path / "demo.yml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "demo.yml")
    sim = DemoSimulator(paths, CONFIG_INTERVAL_SECONDS, seed=5, failure_rate=0.0)
    try:
        for at in range(int(start), int(start) + 2 * int(CONFIG_INTERVAL_SECONDS), 5):
            sim.tick(at)
            for name, batch in config.batches.items():
                if batch.schedule is None or batch.runs is None:
                    continue
                db = open_database(name, sqlite=str(paths.database))
                runs = RunsSource(name, batch, db, text_timestamps=True, clock=lambda at=at: float(at)).poll()
                info = BatchInfoSource(name, batch, clock=lambda at=at: float(at)).poll()
                expected = _sample(info, "batch_schedule_last_expected_timestamp_seconds")
                grace = _sample(info, "batch_schedule_grace_seconds")
                last_start = _sample(runs, "batch_run_last_start_timestamp_seconds")
                assert expected is not None and grace is not None and last_start is not None
                missed = at > expected + grace and last_start < expected - grace
                assert not missed, f"{name} looks missed {at - start:.0f}s after the demo started"
    finally:
        sim.stop()
