"""The airflow preset against real Airflow 3.x and 2.x metadata databases on PostgreSQL, whose history is made
by Airflow's own scheduler and CLI (tests/airflow_world.py): the exporter and rerun-check run as processes.

Each case is read twice: through the preset, and through the mapping a user would write by hand on
dag_run without it (run_id, the logical date as business date, state, start_date, end_date). The hand
mapping shows four of the five ways the run model lied on a real scheduler's history (issue 13); the
fifth, "latest" meaning the latest start, was a fault of the core itself, fixed for every mapping: its
test here shows the preset's answer, and tests/test_run_keys.py the core's.

The cases share one database per Airflow version, built once; the last but one test re-runs pa_partial,
so the tests after it read the database again rather than the first exposition. Logical dates are fixed
in November 2026 and Airflow's own times come from the clock: the module needs a clock after them.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_world import (
    AirflowEnv,
    Quiet,
    Scenario,
    ScenarioGen,
    WaitFor,
    pg_timestamp,
    provision_or_skip,
)
from exporter_process import Series, parse_exposition, run_once, value

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

VENV_BIN = Path(sys.executable).parent
TOKYO = ZoneInfo("Asia/Tokyo")
DAY0 = datetime(2026, 11, 20, 17, tzinfo=UTC)  # 02:00 on the 21st in Tokyo: the nightly DAGs' slot


def nightly(day: int) -> datetime:
    return DAY0 + timedelta(days=day)


def tokyo_key(moment: datetime) -> str:
    return moment.astimezone(TOKYO).isoformat(timespec="seconds")


# --- the cases: histories made by Airflow itself ---------------------------------------------------------

def cleared_twice(env: AirflowEnv) -> ScenarioGen:
    """pa_cleared_twice: fails, is cleared and fails again, is cleared and succeeds: one row, clear_number 2."""
    run_id, _ = env.trigger("pa_cleared_twice", nightly(0), fail=True)
    yield WaitFor("pa_cleared_twice", (run_id,))
    env.clear("pa_cleared_twice", nightly(0))
    yield WaitFor("pa_cleared_twice", (run_id,))
    env.set_outcome("pa_cleared_twice", run_id, fail=False)
    env.clear("pa_cleared_twice", nightly(0))
    yield WaitFor("pa_cleared_twice", (run_id,))
    return Scenario("cleared twice", "pa_cleared_twice")


def every_15_minutes(env: AirflowEnv) -> ScenarioGen:
    """pa_every_15: eight 15-minute slots of one day, all successful."""
    made = [env.trigger("pa_every_15", DAY0 + timedelta(minutes=15 * i))[0] for i in range(8)]
    yield WaitFor("pa_every_15", tuple(made))
    return Scenario("15 minutes", "pa_every_15")


def partial_failure(env: AirflowEnv) -> ScenarioGen:
    """pa_partial: authorize succeeds, settle fails, report never runs; left failed."""
    run_id, _ = env.trigger("pa_partial", nightly(0), fail=True)
    yield WaitFor("pa_partial", (run_id,))
    return Scenario("partial", "pa_partial")


def old_date_cleared(env: AirflowEnv) -> ScenarioGen:
    """pa_old_cleared: two dates succeed, then the older one is cleared and left queued."""
    older, _ = env.trigger("pa_old_cleared", nightly(0))
    newer, _ = env.trigger("pa_old_cleared", nightly(1))
    yield WaitFor("pa_old_cleared", (older, newer))
    yield Quiet()
    env.clear("pa_old_cleared", nightly(0))
    return Scenario("old date cleared", "pa_old_cleared")


def shifted_tries(env: AirflowEnv) -> ScenarioGen:
    """pa_shifted_tries: attempt 1 fails in its first task (the others never run), attempt 2 fails in its
    last; cleared again and left queued. Try numbers count per task: history's try 1 mixes both attempts,
    and its try 2 holds only the first task's success."""
    dag = "pa_shifted_tries"
    run_id = f"manual__{nightly(0).isoformat()}"
    env.set_outcome(dag, f"{run_id}.authorize", fail=True)
    env.trigger(dag, nightly(0))
    yield WaitFor(dag, (run_id,))
    env.set_outcome(dag, f"{run_id}.authorize", fail=False)
    env.set_outcome(dag, f"{run_id}.report", fail=True)
    env.clear(dag, nightly(0))
    yield WaitFor(dag, (run_id,))
    yield Quiet()
    env.clear(dag, nightly(0))
    return Scenario("shifted tries", dag)


def cleared_and_queued(env: AirflowEnv) -> ScenarioGen:
    """pa_queued: a run fails and is cleared with no scheduler running: it waits, queued, clear_number 1."""
    run_id, _ = env.trigger("pa_queued", nightly(0), fail=True)
    yield WaitFor("pa_queued", (run_id,))
    yield Quiet()
    env.clear("pa_queued", nightly(0))
    return Scenario("cleared and queued", "pa_queued")


@dataclass
class World:
    env: AirflowEnv
    config: Path
    exposition: Series


def config_text(env: AirflowEnv) -> str:
    odbc = (f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT=5432;DATABASE={env.database};"
            "UID=postgres;PWD=;")
    key = "logical_date" if env.major >= 3 else "execution_date"
    batches = []
    for name, dag_id in (("twice", "pa_cleared_twice"), ("every15", "pa_every_15"), ("partial", "pa_partial"),
                         ("old", "pa_old_cleared"), ("queued", "pa_queued"), ("shifted", "pa_shifted_tries")):
        batches.append(f"""  {name}:
    database: airflow
    preset: {{name: airflow, dag_id: {dag_id}, version: {env.major}, timezone: Asia/Tokyo}}
    max_duration: 2h
  {name}_by_hand:
    database: airflow
    runs:
      table: dag_run
      where: "dag_id = '{dag_id}'"
      columns: {{run_id: run_id, business_date: {key}, status: state, started_at: start_date, ended_at: end_date}}
      status: {{success: [success], failed: [failed], running: [running]}}
    records:
      query: "SELECT state, COUNT(*) FROM task_instance WHERE dag_id = '{dag_id}' AND run_id = ? GROUP BY state"
      pending_states: [running, queued, scheduled, up_for_retry]
""")
    return f"databases:\n  airflow:\n    odbc: \"{odbc}\"\nbatches:\n" + "".join(batches)


def exporter(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(VENV_BIN / "batch-exporter"), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def scrape(config: Path) -> Series:
    code, out, err = run_once(config)
    assert code == 0, err
    return parse_exposition(out)


def rerun_check(config: Path, batch: str, *extra: str) -> dict[str, Any]:
    done = exporter("rerun-check", "-c", str(config), batch, "--json", *extra)
    assert done.returncode in (0, 1, 2), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture(scope="module", params=["3", "2"], ids=["airflow3", "airflow2"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if datetime.now(UTC) < DAY0 + timedelta(days=2):
        pytest.skip("the cases' logical dates must lie in the past: Airflow runs no future date")
    env = provision_or_skip(request.param)
    try:
        env.play(cleared_twice(env), every_15_minutes(env), partial_failure(env), old_date_cleared(env),
                 shifted_tries(env), cleared_and_queued(env))
        config = tmp_path_factory.mktemp("preset") / "airflow.yml"
        config.write_text(config_text(env), encoding="utf-8")
        yield World(env, config, scrape(config))
    finally:
        env.close()


def attempts(series: Series, batch: str) -> float | None:
    return value(series, "batch_run_attempts", batch=batch)


def key_of(series: Series, batch: str) -> list[str]:
    return [dict(labels)["business_date"] for (name, labels), _ in series.items()
            if name == "batch_run_business_date_info" and dict(labels)["batch"] == batch]


def expected_key(env: AirflowEnv, moment: datetime, dag_interval: timedelta) -> str:
    """The preset's key for a run triggered for logical date `moment`: 3.x keys by the logical date, 2.x by
    the start of the data interval Airflow inferred for a manual run (the one ending at that date)."""
    return tokyo_key(moment if env.major >= 3 else moment - dag_interval)


# --- the five findings -------------------------------------------------------------------------------------

def test_a_key_cleared_twice_counts_three_attempts_and_keeps_its_failures(world: World) -> None:
    s = world.exposition
    # by hand: Airflow re-runs a key on the same row, so two clears look like one attempt, and the two
    # failures are gone from batch_runs
    assert attempts(s, "twice_by_hand") == 1
    assert value(s, "batch_runs", batch="twice_by_hand", status="failed") == 0
    # the preset: clear_number + 1, and the earlier attempts from task_instance_history
    assert attempts(s, "twice") == 3
    assert key_of(s, "twice") == [expected_key(world.env, nightly(0), timedelta(days=1))]
    assert value(s, "batch_runs", batch="twice", status="failed") == 2
    assert value(s, "batch_runs", batch="twice", status="success") == 1
    assert value(s, "batch_run_last_status", batch="twice", status="success") == 1
    assert value(s, "batch_run_running", batch="twice") == 0
    assert value(s, "batch_run_queued", batch="twice") == 0


def test_a_15_minute_dag_has_one_attempt_per_slot(world: World) -> None:
    s = world.exposition
    # by hand: the logical date cut to a calendar date makes every run of the day a re-run
    assert attempts(s, "every15_by_hand") == 8
    assert attempts(s, "every15") == 1
    last_slot = DAY0 + timedelta(minutes=15 * 7)
    assert key_of(s, "every15") == [expected_key(world.env, last_slot, timedelta(minutes=15))]
    assert value(s, "batch_runs", batch="every15", status="success") == 8
    assert not [labels for (name, labels) in s if name == "batch_run_earlier_key_attempts"
                and dict(labels)["batch"] == "every15"]


def test_a_cleared_run_waiting_in_the_queue_is_seen_and_blocks_a_rerun(world: World) -> None:
    s = world.exposition
    # by hand: the queued run has no start, so the window drops it: no run at all
    assert attempts(s, "queued_by_hand") == 0
    by_hand = rerun_check(world.config, "queued_by_hand")
    assert by_hand["verdict"] == "unknown"  # "no run found": nothing says a re-run is waiting
    assert attempts(s, "queued") == 2
    assert value(s, "batch_run_queued", batch="queued") == 1
    assert value(s, "batch_run_last_status", batch="queued", status="queued") == 1
    assert value(s, "batch_runs", batch="queued", status="failed") == 1
    report = rerun_check(world.config, "queued")
    assert report["verdict"] == "unsafe"
    rules = report["rules"]
    assert isinstance(rules, list)
    assert any(r["rule"] == "nothing_running" and r["result"] == "unsafe" and "waiting to start" in r["message"]
               for r in rules), rules


def test_clearing_an_old_date_does_not_make_it_the_latest_run(world: World) -> None:
    s = world.exposition
    env = world.env
    rows = {r["key"]: r for r in env.psql_rows(
        "SELECT {key} AS key, state, start_date FROM dag_run WHERE dag_id = 'pa_old_cleared'".format(
            key="logical_date" if env.major >= 3 else "execution_date"))}
    older = rows[pg_timestamp(nightly(0))]
    newer = rows[pg_timestamp(nightly(1))]
    assert (older["state"], older["start_date"]) == ("queued", None)  # cleared: it waits for the scheduler
    newer_start = datetime.fromisoformat(newer["start_date"] or "")
    # the latest key stays the newer date, with its status and its start, not the old slot waiting in the
    # queue (nor its start once it runs: tests/test_run_keys.py), so a missed later slot is not hidden
    assert key_of(s, "old") == [expected_key(env, nightly(1), timedelta(days=1))]
    assert attempts(s, "old") == 1
    assert value(s, "batch_run_last_status", batch="old", status="success") == 1
    assert value(s, "batch_run_last_start_timestamp_seconds", batch="old") == newer_start.timestamp()
    assert value(s, "batch_run_queued", batch="old") == 1
    # the old key's re-run (queued: attempt 2) pages on its own
    assert value(s, "batch_run_earlier_key_attempts", batch="old",
                 business_date=expected_key(env, nightly(0), timedelta(days=1))) == 2
    report = rerun_check(world.config, "old")
    assert report["business_date"] == expected_key(env, nightly(1), timedelta(days=1))
    assert report["verdict"] == "unsafe"  # the newer date succeeded, and the old one waits in the queue
    # by hand: the queued run has no start, so nothing shows the old date's re-run
    assert key_of(s, "old_by_hand") == [nightly(1).date().isoformat()]
    assert value(s, "batch_run_queued", batch="old_by_hand") == 0
    assert not [labels for (name, labels) in s if name == "batch_run_earlier_key_attempts"
                and dict(labels)["batch"] == "old_by_hand"]


def test_an_earlier_attempt_is_never_a_success_on_a_part_of_its_tasks(world: World) -> None:
    env = world.env
    history = {(r["task_id"], r["try_number"], r["state"]) for r in env.psql_rows(
        "SELECT task_id, try_number, state FROM task_instance_history WHERE dag_id = 'pa_shifted_tries'")}
    # history's try 2 holds the first task alone, and it succeeded (in attempt 2, which failed)
    assert {(task, state) for task, number, state in history if number == "2"} == {("authorize", "success")}
    s = world.exposition
    assert attempts(s, "shifted") == 3
    assert value(s, "batch_run_queued", batch="shifted") == 1
    assert value(s, "batch_runs", batch="shifted", status="success") == 0
    assert value(s, "batch_runs", batch="shifted", status="failed") == 2
    assert value(s, "batch_run_last_success_timestamp_seconds", batch="shifted") is None


def test_task_states_are_not_data_rows_and_only_the_failed_tasks_are_rerun(world: World) -> None:
    env = world.env
    # by hand: the task that succeeded reads as data a failed run changed: UNSAFE
    by_hand = rerun_check(world.config, "partial_by_hand")
    assert by_hand["verdict"] == "unsafe"
    assert any(r["rule"] == "no_data_changed" and r["result"] == "unsafe" for r in by_hand["rules"])
    # the preset: only successful task instances are work done, and re-running only the failed ones
    # leaves them alone
    report = rerun_check(world.config, "partial")
    assert report["verdict"] == "safe", report["rules"]
    command = report["rerun_only_with"]
    assert isinstance(command, str) and "--only-failed" in command
    words = shlex.split(command)
    assert words[:3] == ["airflow", "tasks", "clear"] and words[3] == "pa_partial"
    key = expected_key(env, nightly(0), timedelta(days=1))
    assert words[words.index("--start-date") + 1] == words[words.index("--end-date") + 1] == key
    if env.major < 3:
        # 2.x keys a run by its data interval, and `tasks clear` selects by execution_date: the command
        # clears the scheduled run of the key, and the harness's runs are manual ones (docs/presets/airflow.md)
        return
    # run the command it proposes, through Airflow's own CLI, and let the scheduler run what it cleared
    env.cli(*words[1:])
    run_id = f"manual__{nightly(0).isoformat()}"
    env.set_outcome("pa_partial", run_id, fail=False)
    env.start_scheduler([("pa_partial", run_id)])
    try:
        env.wait_for_runs([("pa_partial", run_id)])
    finally:
        env.stop_scheduler()
    tries = {r["task_id"]: (r["state"], r["try_number"]) for r in env.psql_rows(
        "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = 'pa_partial'")}
    assert tries == {"authorize": ("success", "1"), "settle": ("success", "2"), "report": ("success", "1")}
    s = scrape(world.config)
    assert attempts(s, "partial") == 2
    assert value(s, "batch_run_last_status", batch="partial", status="success") == 1
    after = rerun_check(world.config, "partial")
    assert after["verdict"] == "unsafe"  # it succeeded: a re-run now repeats it all
    assert after["rerun_only_with"] is None


def test_the_plan_and_the_pause_come_from_the_dag_table(world: World) -> None:
    env = world.env
    s = world.exposition
    assert value(s, "batch_schedule_paused", batch="twice") == 0
    # next_dagrun_create_after, set by Airflow from the real clock: the next planned start, or one overdue
    # (no scheduler creates runs here), which is then the last expected start
    planned = [value(s, f"batch_schedule_{which}_expected_timestamp_seconds", batch="twice")
               for which in ("last", "next")]
    [row] = env.psql_rows("SELECT next_dagrun_create_after FROM dag WHERE dag_id = 'pa_cleared_twice'")
    create_after = datetime.fromisoformat(row["next_dagrun_create_after"] or "").timestamp()
    assert create_after in planned and planned.count(None) == 1
    env.cli("dags", "pause", "pa_cleared_twice")
    try:
        paused = scrape(world.config)
    finally:
        env.cli("dags", "unpause", "pa_cleared_twice")
    assert value(paused, "batch_schedule_paused", batch="twice") == 1
    assert value(paused, "batch_schedule_next_expected_timestamp_seconds", batch="twice") is None
    assert value(paused, "batch_schedule_last_expected_timestamp_seconds", batch="twice") is None


def test_check_config_explains_the_preset_and_finds_every_column(world: World) -> None:
    done = exporter("check-config", "-c", str(world.config))
    assert done.returncode == 0, done.stderr
    assert "twice: " not in done.stdout  # no note: the preset maps a run key
    explained = exporter("check-config", "-c", str(world.config), "--explain", "twice")
    assert explained.returncode == 0, explained.stderr
    assert "(from preset airflow)" in explained.stdout and "task_instance_history" in explained.stdout


def test_the_documented_postgresql_grants_are_enough(world: World, tmp_path: Path) -> None:
    """docs/presets/airflow.md's PostgreSQL account, created on this Airflow database, reads every source
    of every preset batch: nothing more than those grants is needed."""
    env = world.env
    page = (Path(__file__).resolve().parents[1] / "docs" / "presets" / "airflow.md").read_text(encoding="utf-8")
    start = page.index("```sql\nCREATE ROLE")
    block = page[start + len("```sql\n"):page.index("```", start + 1)]
    role = f"bx_monitor_{env.database[-12:]}"
    sql = block.replace("batch_monitor", role).replace("DATABASE airflow", f'DATABASE "{env.database}"')
    sql = sql.replace("'a long random password'", "'monitor-test'")
    env.psql(sql)
    try:
        text = config_text(env).replace("UID=postgres;PWD=;", f"UID={role};PWD=monitor-test;")
        config = tmp_path / "monitor.yml"
        config.write_text(text, encoding="utf-8")
        s = scrape(config)
        for batch in ("twice", "every15", "partial", "old", "queued", "shifted"):
            for source in ("runs", "schedule"):
                assert value(s, "batch_exporter_source_up", source=f"{source}:{batch}") == 1, (batch, source)
        assert attempts(s, "twice") == 3
    finally:
        env.psql(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; REVOKE ALL ON SCHEMA public FROM {role}; '
                 f'REVOKE ALL ON DATABASE "{env.database}" FROM {role}; DROP ROLE {role}')
