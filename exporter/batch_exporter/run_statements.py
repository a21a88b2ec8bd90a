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


def build_window_query(runs: RunsConfig, columns: RunColumns | None = None) -> str:
    """SELECT of the five mapped columns for runs started since a `?` boundary; `columns` as resolved
    against the source (see run_columns), by default as configured."""
    c = columns or runs.columns
    business_date = c.business_date or "NULL"
    selected = f"{c.run_id}, {business_date}, {c.status}, {c.started_at}, {c.ended_at}"
    source, where = runs_from(runs)
    return f"SELECT {selected} FROM {source} WHERE {c.started_at} >= ?{where}"


def build_last_success_query(runs: RunsConfig) -> str:
    """End of the latest successful run, for when the window holds none."""
    c = runs.columns
    marks = ", ".join("?" for _ in runs.status.success)
    source, where = runs_from(runs)
    return f"SELECT MAX({c.ended_at}) FROM {source} WHERE {c.status} IN ({marks}){where}"


def build_sample_query(runs: RunsConfig) -> str:
    """The latest stored start time: how the table keeps its timestamps (a datetime, text or a number), or
    NULL when no run has one yet. MAX, unlike LIMIT or TOP, is written the same on every database."""
    c = runs.columns
    source, where = runs_from(runs)
    return f"SELECT MAX({c.started_at}) FROM {source} WHERE {c.started_at} IS NOT NULL{where}"
