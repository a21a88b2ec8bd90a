"""A copy of SQL Server Agent's tables in msdb, on the PostgreSQL test server, for the sqlserver-agent preset.

No SQL Server runs here. `agent_msdb()` creates a fresh database with a schema `dbo` holding sysjobs,
sysjobhistory, sysjobactivity, syssessions and sysjobschedules with the column names and types Microsoft
documents for them (types mapped: uniqueidentifier -> uuid, sysname -> varchar(128), tinyint -> smallint,
nvarchar(n) -> varchar(n), varbinary(n) -> bytea, datetime -> timestamp(3)), and a function
`dbo.agent_datetime(int, int)` that reads a date YYYYMMDD and a time HHMMSS as msdb's does: a naive local
timestamp, NULL for a NULL argument, an error for a date or time that does not exist (as msdb's CONVERT
fails on 0). The documentation gives names and types only: NOT NULL and defaults here are for convenience.

The Agent keeps local wall times of the SQL Server machine: the helpers take naive local datetimes and
encode them as the Agent does (`agent_date`, `agent_time`, `agent_duration`).
"""
from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db_servers import admin_connection, odbc_connection_string

DDL = """
CREATE SCHEMA dbo;
CREATE TABLE dbo.sysjobs (
    job_id uuid NOT NULL PRIMARY KEY,
    originating_server_id integer NOT NULL DEFAULT 0,
    name varchar(128) NOT NULL UNIQUE,
    enabled smallint NOT NULL,
    description varchar(512) NULL,
    start_step_id integer NOT NULL DEFAULT 1,
    category_id integer NOT NULL DEFAULT 0,
    owner_sid bytea NULL,
    notify_level_eventlog integer NOT NULL DEFAULT 2,
    notify_level_email integer NOT NULL DEFAULT 0,
    notify_level_netsend integer NOT NULL DEFAULT 0,
    notify_level_page integer NOT NULL DEFAULT 0,
    notify_email_operator_id integer NOT NULL DEFAULT 0,
    notify_netsend_operator_id integer NOT NULL DEFAULT 0,
    notify_page_operator_id integer NOT NULL DEFAULT 0,
    delete_level integer NOT NULL DEFAULT 0,
    date_created timestamp(3) NULL,
    date_modified timestamp(3) NULL,
    version_number integer NOT NULL DEFAULT 1
);
CREATE TABLE dbo.sysjobhistory (
    instance_id integer NOT NULL PRIMARY KEY,
    job_id uuid NOT NULL,
    step_id integer NOT NULL,
    step_name varchar(128) NOT NULL,
    sql_message_id integer NOT NULL DEFAULT 0,
    sql_severity integer NOT NULL DEFAULT 0,
    message varchar(4000) NULL,
    run_status integer NOT NULL,
    run_date integer NOT NULL,
    run_time integer NOT NULL,
    run_duration integer NOT NULL,
    operator_id_emailed integer NOT NULL DEFAULT 0,
    operator_id_netsent integer NOT NULL DEFAULT 0,
    operator_id_paged integer NOT NULL DEFAULT 0,
    retries_attempted integer NOT NULL DEFAULT 0,
    server varchar(128) NOT NULL DEFAULT 'SQLPROD01'
);
CREATE TABLE dbo.syssessions (
    session_id integer NOT NULL PRIMARY KEY,
    agent_start_date timestamp(3) NOT NULL
);
CREATE TABLE dbo.sysjobactivity (
    session_id integer NOT NULL,
    job_id uuid NOT NULL,
    run_requested_date timestamp(3) NULL,
    run_requested_source varchar(128) NULL,
    queued_date timestamp(3) NULL,
    start_execution_date timestamp(3) NULL,
    last_executed_step_id integer NULL,
    last_executed_step_date timestamp(3) NULL,
    stop_execution_date timestamp(3) NULL,
    job_history_id integer NULL,
    next_scheduled_run_date timestamp(3) NULL,
    PRIMARY KEY (session_id, job_id)
);
CREATE TABLE dbo.sysjobschedules (
    schedule_id integer NOT NULL,
    job_id uuid NOT NULL,
    next_run_date integer NOT NULL,
    next_run_time integer NOT NULL
);
CREATE FUNCTION dbo.agent_datetime(date integer, "time" integer) RETURNS timestamp
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT make_timestamp($1 / 10000, $1 / 100 % 100, $1 % 100,
                                $2 / 10000, $2 / 100 % 100, ($2 % 100)::double precision) $$;
"""

JOB_OUTCOME_STEP = 0  # sysjobhistory's step_id of a job's own outcome row, "(Job outcome)"
SOURCE_SCHEDULER, SOURCE_USER = "1", "4"  # sysjobactivity.run_requested_source


def agent_date(moment: datetime) -> int:
    """A local date as the Agent keeps it: YYYYMMDD."""
    return moment.year * 10000 + moment.month * 100 + moment.day


def agent_time(moment: datetime) -> int:
    """A local time of day as the Agent keeps it: HHMMSS."""
    return moment.hour * 10000 + moment.minute * 100 + moment.second


def agent_duration(seconds: int) -> int:
    """An elapsed time as sysjobhistory.run_duration keeps it: HHMMSS, the hours free to pass 99."""
    hours, rest = divmod(seconds, 3600)
    return hours * 10000 + (rest // 60) * 100 + rest % 60


@dataclass
class AgentMsdb:
    """The copy's database: the ODBC string to read it with, and a writable connection to fill it."""

    odbc: str
    connection: Any
    _history_ids: int = 0

    def execute(self, sql: str, *params: object) -> None:
        self.connection.cursor().execute(sql, *params)

    def add_job(self, name: str, *, enabled: bool = True) -> uuid.UUID:
        job_id = uuid.uuid5(uuid.NAMESPACE_OID, name)  # the same id for the same name in every run
        self.execute("INSERT INTO dbo.sysjobs (job_id, name, enabled, date_created, date_modified) "
                     "VALUES (?, ?, ?, ?, ?)", str(job_id), name, 1 if enabled else 0,
                     datetime(2026, 1, 5, 9, 0), datetime(2026, 1, 5, 9, 0))
        return job_id

    def add_session(self, session_id: int, agent_start: datetime) -> None:
        self.execute("INSERT INTO dbo.syssessions VALUES (?, ?)", session_id, agent_start)

    def add_history(self, job_id: uuid.UUID, start: datetime, run_status: int, run_duration: int, *,
                    step_id: int = JOB_OUTCOME_STEP, step_name: str = "(Job outcome)") -> int:
        """One row as the Agent writes it when a step, or the job (step 0), ends, `run_duration` encoded
        HHMMSS (see agent_duration); returns its instance_id."""
        self._history_ids += 1
        self.execute("INSERT INTO dbo.sysjobhistory (instance_id, job_id, step_id, step_name, message, "
                     "run_status, run_date, run_time, run_duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     self._history_ids, str(job_id), step_id, step_name, f"The job ended with status {run_status}.",
                     run_status, agent_date(start), agent_time(start), run_duration)
        return self._history_ids

    def add_activity(self, session_id: int, job_id: uuid.UUID, *, requested: datetime | None,
                     queued: datetime | None = None, started: datetime | None = None,
                     stopped: datetime | None = None, history_id: int | None = None) -> None:
        source = SOURCE_SCHEDULER if requested is not None else None
        self.execute("INSERT INTO dbo.sysjobactivity (session_id, job_id, run_requested_date, "
                     "run_requested_source, queued_date, start_execution_date, stop_execution_date, "
                     "job_history_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     session_id, str(job_id), requested, source, queued, started, stopped, history_id)

    def add_schedule(self, schedule_id: int, job_id: uuid.UUID, next_run: datetime | None) -> None:
        """A job's schedule; `next_run` None is the Agent's 0 / 0 for a next run not computed yet."""
        date, time = (agent_date(next_run), agent_time(next_run)) if next_run is not None else (0, 0)
        self.execute("INSERT INTO dbo.sysjobschedules VALUES (?, ?, ?, ?)", schedule_id, str(job_id), date, time)


def _on_database(connection_string: str, database: str) -> str:
    replaced, count = re.subn(r"(?i)(?<![A-Za-z_])DATABASE=[^;]*", f"DATABASE={database}", connection_string)
    return replaced if count else f"{connection_string.rstrip(';')};DATABASE={database};"


@contextmanager
def agent_msdb() -> Iterator[AgentMsdb]:
    """A fresh database holding the copy, dropped afterwards (with any connection still open to it)."""
    name = f"bx_msdb_{uuid.uuid4().hex[:12]}"
    admin = admin_connection("postgresql")
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        try:
            odbc = _on_database(odbc_connection_string("postgresql"), name)
            writer = importlib.import_module("pyodbc").connect(odbc, autocommit=True, timeout=5)
            try:
                writer.cursor().execute(DDL)
                yield AgentMsdb(odbc, writer)
            finally:
                writer.close()
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()
