"""The statements the run table (or the user's runs query) is read with, built from its configuration.

Config validation checks exactly these texts (sqlcheck, before anything is sent) and sources.run_table
sends them; neither writes SQL of its own for the run table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import RunColumns, RunsConfig


def runs_from(runs: RunsConfig) -> tuple[str, str]:
    """(FROM part, extra AND condition) of the run table or the user's query."""
    if runs.query is not None:
        # on lines of their own: a trailing `-- comment` in the user's query must not swallow ours
        return f"(\n{runs.query.strip().rstrip(';')}\n) runs_q", ""
    return str(runs.table), f" AND ({runs.where})" if runs.where else ""


def probe_statement(runs: RunsConfig, columns: str) -> str:
    """A zero-row SELECT of `columns` (SQL text) from the run table or query: does the source return them?"""
    source, where = runs_from(runs)
    return f"SELECT {columns} FROM {source} WHERE 1 = 0{where}"


WINDOW_FIELDS = ("run_id", "key", "status", "started_at", "ended_at", "attempt", "queued_at", "duration")
"""The columns of the window query's rows, in order; NULL for a field that is not mapped. A fleet's rows
carry one more after them: the job (see job_column)."""


def job_column(columns: RunColumns) -> str | None:
    """The column or expression naming a row's job in a fleet's runs (FleetRunColumns.job); None for a
    batch, whose rows are all its own."""
    job = getattr(columns, "job", None)
    return job if isinstance(job, str) else None


def build_window_query(runs: RunsConfig, columns: RunColumns | None = None) -> str:
    """SELECT of the mapped fields (WINDOW_FIELDS) for runs started since a `?` boundary, and, when
    columns.queued_at is mapped, runs not started yet and queued since a second `?`; `columns` as resolved
    against the source (see run_columns), by default as configured. A fleet's rows end with the job, and
    come ordered by it (a reader can finish one job's rows before the next job's arrive): the fields keep
    their places, so that one reader serves batches and fleets."""
    c = columns or runs.columns
    fields = {"run_id": c.run_id, "key": c.key, "status": c.status, "started_at": c.started_at,
              "ended_at": None if c.duration is not None else c.ended_at, "attempt": c.attempt,
              "queued_at": c.queued_at, "duration": c.duration}
    selected = [fields[name] or "NULL" for name in WINDOW_FIELDS]
    job = job_column(c)
    if job is not None:
        selected.append(job)
    source, where = runs_from(runs)
    window = f"{c.started_at} >= ?"
    if c.queued_at is not None:
        window = f"({window} OR ({c.started_at} IS NULL AND {c.queued_at} >= ?))"
    # by the job's place in the select list: a job expression that is a constant sorts too
    order = f" ORDER BY {len(selected)}" if job is not None else ""
    return f"SELECT {', '.join(selected)} FROM {source} WHERE {window}{where}{order}"


def window_params(runs: RunsConfig, boundary: object) -> tuple[object, ...]:
    """The window query's parameters: the boundary, once per `?`."""
    return (boundary, boundary) if runs.columns.queued_at is not None else (boundary,)


def build_last_success_query(runs: RunsConfig) -> str:
    """End of the latest successful run, for when the window holds none: one row, (end, NULL); or, for a
    table that keeps a duration instead of an end, (start, duration) of the latest successful start."""
    c = runs.columns
    marks = ", ".join("?" for _ in runs.status.success)
    source, where = runs_from(runs)
    if c.duration is None:
        return f"SELECT MAX({c.ended_at}), NULL FROM {source} WHERE {c.status} IN ({marks}){where}"
    latest = f"SELECT MAX({c.started_at}) FROM {source} WHERE {c.status} IN ({marks}){where}"
    return (f"SELECT {c.started_at}, {c.duration} FROM {source} WHERE {c.status} IN ({marks}){where} "
            f"AND {c.started_at} = ({latest})")


def last_success_params(runs: RunsConfig) -> tuple[object, ...]:
    success = tuple(runs.status.success)
    return success * 2 if runs.columns.duration is not None else success


def build_fleet_last_success_query(runs: RunsConfig) -> str:
    """build_last_success_query for every job of a fleet at once: rows (job, end, NULL), one per job with
    a success; or, for a table that keeps a duration instead of an end, (job, start, duration) of each
    job's latest successful start (two rows for a job whose latest start is shared: the caller takes the
    later end). Parameters: last_success_params."""
    c = runs.columns
    job = job_column(c)
    if job is None:
        raise ValueError("the fleet's last success is grouped by columns.job, which these columns lack")
    marks = ", ".join("?" for _ in runs.status.success)
    source, where = runs_from(runs)
    successes = f"FROM {source} WHERE {c.status} IN ({marks}){where}"
    if c.duration is None:
        return f"SELECT {job}, MAX({c.ended_at}), NULL {successes} GROUP BY {job}"
    # a derived table each, so that the column expressions are written once and joined by alias
    return (f"SELECT s.job_name, s.started, s.duration FROM (SELECT {job} AS job_name, {c.started_at} AS started, "
            f"{c.duration} AS duration {successes}) s JOIN (SELECT {job} AS job_name, MAX({c.started_at}) AS latest "
            f"{successes} GROUP BY {job}) m ON s.job_name = m.job_name AND s.started = m.latest")


def build_sample_query(runs: RunsConfig) -> str:
    """The latest stored start time (and queue time, when mapped): how the table keeps its timestamps (a
    datetime, text or a number), or NULL when no run has one yet. MAX, unlike LIMIT or TOP, is written the
    same on every database."""
    c = runs.columns
    source, where = runs_from(runs)
    if c.queued_at is None:
        return f"SELECT MAX({c.started_at}) FROM {source} WHERE {c.started_at} IS NOT NULL{where}"
    return (f"SELECT MAX({c.started_at}), MAX({c.queued_at}) FROM {source} "
            f"WHERE ({c.started_at} IS NOT NULL OR {c.queued_at} IS NOT NULL){where}")
