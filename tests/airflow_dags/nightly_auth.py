"""Nightly authorisation batch for tests/airflow_world.py: daily at 02:00 Asia/Tokyo, authorize -> settle -> report.

``settle`` fails when the harness has left a flag file for the run: ``$AIRFLOW_WORLD_FLAGS/nightly_auth/<run_id>``
or ``.../<logical date in UTC, ISO 8601>``. The file is read when the task runs, so the harness decides the
outcome of each run (and of each re-run after a clear). The DAG is parsed by Airflow 2.x and 3.x alike.
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

DAG_ID = "nightly_auth"


def _authorize() -> None:
    print("authorized")


def _settle(run_id: str, **context: Any) -> None:
    folder = Path(os.environ.get("AIRFLOW_WORLD_FLAGS", "/nonexistent")) / DAG_ID
    keys = [run_id]
    logical_date = context.get("logical_date")
    if logical_date is not None:
        keys.append(pendulum.instance(logical_date).in_timezone("UTC").isoformat())
    for key in keys:
        if (folder / key).is_file():
            raise RuntimeError(f"settle told to fail by {folder / key}")
    print("settled")


def _report() -> None:
    print("reported")


with DAG(
    dag_id=DAG_ID,
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    tags=["batch-exporter-test"],
):
    authorize = PythonOperator(task_id="authorize", python_callable=_authorize, retries=0)
    settle = PythonOperator(task_id="settle", python_callable=_settle, retries=0)
    report = PythonOperator(task_id="report", python_callable=_report, retries=0)
    authorize >> settle >> report
