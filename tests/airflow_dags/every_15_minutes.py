"""A DAG for tests/airflow_world.py that runs every 15 minutes (UTC) with one task that always succeeds."""
from __future__ import annotations

import pendulum  # type: ignore[import-not-found]

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator  # type: ignore[import-not-found]
    from airflow.sdk import DAG  # type: ignore[import-not-found]
except ImportError:  # Airflow 2
    from airflow import DAG  # type: ignore[import-not-found]
    from airflow.operators.python import PythonOperator  # type: ignore[import-not-found]


def _tick() -> None:
    print("tick")


with DAG(
    dag_id="every_15_minutes",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["batch-exporter-test"],
):
    PythonOperator(task_id="tick", python_callable=_tick, retries=0)
