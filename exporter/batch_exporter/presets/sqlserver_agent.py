"""SQL Server Agent's job history in msdb as a batch's run table: `sysjobhistory` (the job outcome rows,
step_id 0), `sysjobactivity` for the run in progress or requested in the agent's current session, and
`sysjobschedules` for the plan.

- The agent encodes a start as two integers, run_date YYYYMMDD and run_time HHMMSS, read with msdb's own
  `dbo.agent_datetime`; run_duration is HHMMSS too (hours may pass 99), turned into seconds by integer
  arithmetic; the end is the start plus that.
- run_status: 0 failed, 1 succeeded, 3 canceled (counted as failed: the work was not done), 4 in progress;
  2 (retry) is written on step rows, and an outcome row ending with it counts as failed. A job requested
  and not started yet is queued. The agent's current session is the latest one in sysjobactivity (as
  Microsoft's own example reads it; syssessions needs sysadmin).
- The plan: the earliest next_run_date/next_run_time of the job's schedules, overdue when past (the
  agent refreshes it about every 20 minutes, and not at all while it is down); no earlier planned start is
  known, so a start the agent skipped while running is not seen.
- The agent keeps no business date: attempts are counted by the local start date in the server's time
  zone (the `timezone` parameter), which suits a job run once a day; `key: start` makes each start a key
  of its own for a job run several times a day (a re-run is then a run like any other). No records query
  is generated (the agent cannot know your rows).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .common import Generated, known_keys, sql_text, text_param

_JOB_NAME = re.compile(r"[^\x00-\x1f]{1,128}")  # sysname: up to 128 characters
_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,127}\.){1,2}")
_PARAMETERS = {
    "job_name": "the Agent job's name (sysjobs.name)",
    "timezone": "the SQL Server machine's time zone: Agent times are its local wall times (default UTC)",
    "msdb": "where the Agent tables are, as a prefix (default 'msdb.dbo.')",
    "key": "date (default: attempts are the runs of one local start date, for a job run once a day) or "
           "start (each start is a key of its own: a job run several times a day; re-runs are then not counted)",
}
STATUS = {"success": ["1"], "failed": ["0", "3"], "running": ["4"], "queued": ["queued"]}


def _seconds(hhmmss: str) -> str:
    return f"(({hhmmss} / 10000) * 3600 + (({hhmmss} / 100) % 100) * 60 + {hhmmss} % 100)"


def generate(params: Mapping[str, Any]) -> Generated:
    known_keys(params, _PARAMETERS)
    job = text_param(params, "job_name", _JOB_NAME, "an Agent job name (1 to 128 characters)")
    p = text_param(params, "msdb", _PREFIX, "a prefix such as 'msdb.dbo.'", default="msdb.dbo.")
    timezone = params.get("timezone", "UTC")
    key = params.get("key", "date")
    if key not in ("date", "start"):
        raise ValueError(f"key: expected date or start, got {key!r}")
    name = "N" + sql_text(job)
    runs_query = f"""SELECT CONCAT('history ', CAST(h.instance_id AS VARCHAR(20))) AS run_id,
       CAST(h.run_status AS VARCHAR(10)) AS status,
       {p}agent_datetime(h.run_date, h.run_time) AS started_at,
       {_seconds('h.run_duration')} AS duration,
       NULL AS queued_at
  FROM {p}sysjobhistory h
  JOIN {p}sysjobs j ON j.job_id = h.job_id
 WHERE j.name = {name} AND h.step_id = 0
UNION ALL
SELECT CONCAT('session ', CAST(a.session_id AS VARCHAR(20))) AS run_id,
       CASE WHEN a.start_execution_date IS NULL THEN 'queued' ELSE '4' END AS status,
       a.start_execution_date AS started_at,
       NULL AS duration,
       COALESCE(a.queued_date, a.run_requested_date) AS queued_at
  FROM {p}sysjobactivity a
  JOIN {p}sysjobs j ON j.job_id = a.job_id
 WHERE j.name = {name}
   AND a.session_id = (SELECT MAX(a2.session_id) FROM {p}sysjobactivity a2)
   AND a.run_requested_date IS NOT NULL
   AND a.stop_execution_date IS NULL"""
    return {
        "runs": {
            "query": runs_query,
            "columns": {"run_id": "run_id", "status": "status", "started_at": "started_at",
                        "duration": "duration", "queued_at": "queued_at",
                        **({"run_key": "started_at"} if key == "start" else {})},
            "status": {kind: list(codes) for kind, codes in STATUS.items()},
            "timezone": timezone,
        },
        "schedule": {
            "query": f"""SELECT NULL,
       (SELECT MIN(CASE WHEN s.next_run_date > 0 THEN {p}agent_datetime(s.next_run_date, s.next_run_time) END)
          FROM {p}sysjobschedules s
         WHERE s.job_id = j.job_id AND s.next_run_date > 0),
       CASE WHEN j.enabled = 0 THEN 1 ELSE 0 END
  FROM {p}sysjobs j
 WHERE j.name = {name}""",
            "timezone": timezone,
        },
    }
