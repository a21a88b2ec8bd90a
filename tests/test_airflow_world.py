"""The Airflow harness (tests/airflow_world.py) builds what it says: real Airflow 3.x and 2.x metadata
databases whose dag_run rows, made by Airflow's own scheduler and CLI, are those each scenario describes."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from airflow_world import (
    ANCHOR,
    CLEARED_ONLY_FAILED_DATE,
    CLEARED_QUEUED_DATE,
    CLEARED_TWICE_DATE,
    EVERY_15,
    NEWER_DATE,
    NIGHTLY,
    OLDER_DATE,
    AirflowEnv,
    Scenario,
    build_all,
    pg_timestamp,
    provision_or_skip,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module", params=["3", "2"], ids=["airflow3", "airflow2"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[AirflowEnv, dict[str, Scenario]]]:
    env = provision_or_skip(request.param)
    try:
        yield env, build_all(env)
    finally:
        env.close()


def _when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def _runs(env: AirflowEnv, dag_id: str) -> dict[str, dict[str, str | None]]:
    key = "logical_date" if env.major >= 3 else "execution_date"
    rows = env.psql_rows(f"""SELECT run_id, {key} AS logical_date, state, start_date, end_date, queued_at,
                                    clear_number, run_type
                               FROM dag_run WHERE dag_id = '{dag_id}'""")
    return {row["run_id"] or "": row for row in rows}


def test_every_run_is_as_its_scenario_says(world: tuple[AirflowEnv, dict[str, Scenario]]) -> None:
    env, scenarios = world
    expected = [run for scenario in scenarios.values() for run in scenario.runs]
    assert len(expected) == 17
    rows = {**_runs(env, NIGHTLY), **_runs(env, EVERY_15)}
    assert sorted(rows) == sorted(run.run_id for run in expected)
    for run in expected:
        row = rows[run.run_id]
        assert (row["state"], row["clear_number"], row["run_type"]) == (run.state, str(run.clear_number), "manual")
        if run.logical_date is not None:
            assert row["logical_date"] == pg_timestamp(run.logical_date)
        assert row["queued_at"] is not None
        if run.state == "queued":
            assert (row["start_date"], row["end_date"]) == (None, None)
        else:
            assert _when(row["queued_at"]) <= _when(row["start_date"]) <= _when(row["end_date"])


def test_cleared_twice_keeps_one_row_and_archives_the_earlier_tries(
        world: tuple[AirflowEnv, dict[str, Scenario]]) -> None:
    env, scenarios = world
    [run] = scenarios["cleared twice"].runs
    assert run.logical_date == CLEARED_TWICE_DATE
    assert [r for r in _runs(env, NIGHTLY).values() if r["logical_date"] == pg_timestamp(CLEARED_TWICE_DATE)] == [
        _runs(env, NIGHTLY)[run.run_id]]
    history = env.psql_rows(f"""SELECT task_id, try_number, state FROM task_instance_history
                                 WHERE dag_id = '{NIGHTLY}' AND run_id = '{run.run_id}'""")
    tries = {(h["task_id"], h["try_number"]): h["state"] for h in history}
    # both failed attempts: authorize succeeded and settle failed, once per attempt
    assert tries[("authorize", "1")] == tries[("authorize", "2")] == "success"
    assert tries[("settle", "1")] == tries[("settle", "2")] == "failed"
    now = {t["task_id"]: (t["state"], t["try_number"]) for t in env.psql_rows(
        f"SELECT task_id, state, try_number FROM task_instance WHERE run_id = '{run.run_id}'")}
    assert now == {"authorize": ("success", "3"), "settle": ("success", "3"), "report": ("success", "1")}


def test_cleared_runs_wait_queued_without_a_start(world: tuple[AirflowEnv, dict[str, Scenario]]) -> None:
    env, scenarios = world
    runs = _runs(env, NIGHTLY)
    for date in (CLEARED_QUEUED_DATE, CLEARED_ONLY_FAILED_DATE, OLDER_DATE):
        [row] = [r for r in runs.values() if r["logical_date"] == pg_timestamp(date)]
        assert (row["state"], row["clear_number"], row["start_date"], row["end_date"]) == ("queued", "1", None, None)
    [newer] = [r for r in runs.values() if r["logical_date"] == pg_timestamp(NEWER_DATE)]
    assert (newer["state"], newer["clear_number"]) == ("success", "0")
    # --only-failed leaves the task that had succeeded alone; a plain clear resets all three
    states = {(t["run_id"], t["task_id"]): t["state"] for t in env.psql_rows(
        f"SELECT run_id, task_id, state FROM task_instance WHERE dag_id = '{NIGHTLY}'")}
    plain, only_failed = (r.run_id for r in scenarios["cleared and queued"].runs)
    assert [states[(plain, t)] for t in ("authorize", "settle", "report")] == [None, None, None]
    assert [states[(only_failed, t)] for t in ("authorize", "settle", "report")] == ["success", None, None]


def test_the_15_minute_dag_has_a_row_per_slot(world: tuple[AirflowEnv, dict[str, Scenario]]) -> None:
    env, _ = world
    slots = sorted(row["logical_date"] or "" for row in _runs(env, EVERY_15).values())
    assert slots == [pg_timestamp(ANCHOR + timedelta(minutes=15 * i)) for i in range(11)]


def test_a_manual_trigger_has_a_logical_date_only_in_2x(world: tuple[AirflowEnv, dict[str, Scenario]]) -> None:
    env, scenarios = world
    [run] = scenarios["manual trigger"].runs
    row = env.psql_rows(f"SELECT * FROM dag_run WHERE run_id = '{run.run_id}'")[0]
    if env.major >= 3:
        assert row["logical_date"] is None and row["run_after"] is not None
    else:
        assert row["execution_date"] is not None and row["external_trigger"] == "t"
