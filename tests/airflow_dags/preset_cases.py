"""DAGs for tests/test_preset_airflow.py, one per case so that each has a history of its own: a nightly
authorize -> settle -> report chain at 02:00 Asia/Tokyo, and one task every 15 minutes.

``settle`` fails when the harness has left a flag file for the run:
``$AIRFLOW_WORLD_FLAGS/<dag_id>/<run_id>`` (see tests/airflow_world.py's set_outcome). Parsed by Airflow 2.x
and 3.x alike.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum  # type: ignore[import-not-found]

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator  # type: ignore[import-not-found]
    from airflow.sdk import DAG  # type: ignore[import-not-found]
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[import-not-found]
    from airflow.operators.python import PythonOperator  # type: ignore[import-not-found]

NIGHTLY_CASES = ("pa_cleared_twice", "pa_queued", "pa_partial", "pa_old_cleared", "pa_shifted_tries")
EVERY_15_CASES = ("pa_every_15",)


def _settle(run_id: str, dag: Any, **_: Any) -> None:
    flag = Path(os.environ.get("AIRFLOW_WORLD_FLAGS", "/nonexistent")) / dag.dag_id / run_id
    if flag.is_file():
        raise RuntimeError(f"settle told to fail by {flag}")
    print("settled")


def _ok(run_id: str, dag: Any, task: Any, **_: Any) -> None:
    """Succeeds unless a flag names this task: ``$AIRFLOW_WORLD_FLAGS/<dag_id>/<run_id>.<task_id>``."""
    flag = Path(os.environ.get("AIRFLOW_WORLD_FLAGS", "/nonexistent")) / dag.dag_id / f"{run_id}.{task.task_id}"
    if flag.is_file():
        raise RuntimeError(f"{task.task_id} told to fail by {flag}")
    print("done")


for dag_id in NIGHTLY_CASES:
    with DAG(dag_id=dag_id, schedule="0 2 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
             catchup=False, tags=["batch-exporter-test"]) as nightly:
        authorize = PythonOperator(task_id="authorize", python_callable=_ok, retries=0)
        settle = PythonOperator(task_id="settle", python_callable=_settle, retries=0)
        report = PythonOperator(task_id="report", python_callable=_ok, retries=0)
        authorize >> settle >> report
    globals()[dag_id] = nightly

for dag_id in EVERY_15_CASES:
    with DAG(dag_id=dag_id, schedule="*/15 * * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             catchup=False, tags=["batch-exporter-test"]) as every_15:
        PythonOperator(task_id="tick", python_callable=_ok, retries=0)
    globals()[dag_id] = every_15
