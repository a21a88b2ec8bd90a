"""Apache Airflow's metadata database (PostgreSQL or MySQL) as a batch's run table: `dag_run`, with the
earlier attempts of a cleared run from `task_instance_history`, the plan from `dag`, and the task
instances as records.

- Run key, spelled in the DAG's time zone and kept whole (a DAG that runs every 15 minutes has a key
  per slot): in 3.x the logical date, or `run_after` for a manual run without one; in 2.x the start of
  the data interval the run processes (a scheduled run's execution_date; a manual run's interval is the
  one Airflow inferred for it, so it is an attempt of the slot whose data it re-processes).
- Attempts: `airflow tasks clear` re-runs a key on the same row and counts it in `clear_number` (one row
  per logical date); the attempt is `clear_number + 1`. The tries archived in task_instance_history when
  a run was cleared give the earlier attempts' times and outcome, one row per try number up to
  `clear_number`. Try numbers count per task, not per clear (a task retried within one attempt, or one
  that first ran in a later attempt, shifts them), so an earlier attempt can look longer or failed; it is
  a success only when every task of the run succeeded in that try, never on a part of them.
- Queued: a cleared or triggered run waits with no start; it is windowed on `queued_at`.
- Schedule: the latest scheduled run's `run_after` (2.x: `data_interval_end`) and `dag.next_dagrun_create_after`
  (overdue when past), and `dag.is_paused`.
- Records: task instances by state; only `success` is work done, and `tasks clear --only-failed` re-runs
  only the rest.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .common import Generated, known_keys, sql_text, text_param

# Airflow's own rule for DAG ids (KEY_REGEX): no quoting problem can arise
_DAG_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PARAMETERS = {
    "dag_id": "the DAG's id",
    "version": "2 or 3, Airflow's major version (default 3)",
    "timezone": "the DAG's time zone, that of its start_date (default UTC)",
    "schema": "the schema holding Airflow's tables, when not the connection's default",
}
PENDING_TASK_STATES = ["", "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "deferred",
                       "restarting"]


def generate(params: Mapping[str, Any]) -> Generated:
    known_keys(params, _PARAMETERS)
    dag_id = text_param(params, "dag_id", _DAG_ID, "an Airflow DAG id (letters, digits, '_', '.', '-')")
    version = params.get("version", 3)
    if version not in (2, 3):
        raise ValueError(f"version: expected 2 or 3, got {version!r}")
    schema = params.get("schema")
    prefix = text_param(params, "schema", _SCHEMA, "a schema name") + "." if schema is not None else ""
    timezone = params.get("timezone", "UTC")
    dag = sql_text(dag_id)
    # 2.x keys a scheduled run by the start of its data interval, and a manual run's execution_date is the
    # moment it was triggered: keyed by that, it would be a later key and hide the next scheduled run for a
    # day. Its data interval is the one it re-processes. 3.x's manual runs carry their trigger time as
    # their data interval, and the default timetable keys scheduled runs by when they are due: the logical
    # date (or run_after) is the key there.
    key = ("COALESCE(dr.logical_date, dr.run_after)" if version == 3
           else "COALESCE(dr.data_interval_start, dr.execution_date)")
    planned = "run_after" if version == 3 else "data_interval_end"
    runs_query = f"""SELECT dr.run_id AS run_id, {key} AS run_key, dr.state AS status,
       dr.start_date AS started_at, dr.end_date AS ended_at, dr.clear_number + 1 AS attempt,
       dr.queued_at AS queued_at
  FROM {prefix}dag_run dr
 WHERE dr.dag_id = {dag}
UNION ALL
SELECT CONCAT(dr.run_id, ' try ', h.try_number) AS run_id, {key} AS run_key,
       CASE WHEN COUNT(DISTINCT CASE WHEN h.state = 'success' THEN h.task_id END)
                 = (SELECT COUNT(*) FROM {prefix}task_instance ti
                     WHERE ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id)
            THEN 'success' ELSE 'failed' END AS status,
       MIN(h.start_date) AS started_at, MAX(h.end_date) AS ended_at, h.try_number AS attempt,
       NULL AS queued_at
  FROM {prefix}task_instance_history h
  JOIN {prefix}dag_run dr ON dr.dag_id = h.dag_id AND dr.run_id = h.run_id
 WHERE h.dag_id = {dag} AND h.try_number BETWEEN 1 AND dr.clear_number
 GROUP BY dr.dag_id, dr.run_id, {key}, h.try_number"""
    return {
        "runs": {
            "query": runs_query,
            "columns": {"run_id": "run_id", "run_key": "run_key", "status": "status", "started_at": "started_at",
                        "ended_at": "ended_at", "attempt": "attempt", "queued_at": "queued_at"},
            "status": {"success": ["success"], "failed": ["failed"], "running": ["running"],
                       "queued": ["queued"]},
            # Airflow stores UTC, and sessions read it as naive UTC; keys and reports in the DAG's zone
            "timezone": "UTC",
            "key_timezone": timezone,
        },
        "records": {
            "query": f"SELECT ti.state, COUNT(*) FROM {prefix}task_instance ti WHERE ti.dag_id = {dag} "
                     "AND ti.run_id = ? GROUP BY ti.state",
            "pending_states": list(PENDING_TASK_STATES),
            "done_states": ["success"],
            "rerun_unfinished": f"airflow tasks clear {dag_id} --only-failed --start-date {{key}} "
                                "--end-date {key} --yes",
        },
        "schedule": {
            "query": f"""SELECT (SELECT MAX(dr.{planned}) FROM {prefix}dag_run dr
                 WHERE dr.dag_id = {dag} AND dr.run_type = 'scheduled'),
       d.next_dagrun_create_after,
       CASE WHEN d.is_paused THEN 1 ELSE 0 END
  FROM {prefix}dag d
 WHERE d.dag_id = {dag}""",
            "timezone": "UTC",
        },
    }
