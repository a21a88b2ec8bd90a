"""`check-config --explain`: every statement the exporter sends for each batch, with its parameters, as
text a user can read, run by hand, or copy into a configuration of their own (a preset's SQL too)."""
from __future__ import annotations

from .config import BatchConfig, Config
from .run_statements import (
    build_last_success_query,
    build_sample_query,
    build_window_query,
    last_success_params,
    probe_statement,
)


def explain(config: Config, only: str | None = None) -> str:
    """The statements of every batch (or of `only`), each headed by when it is sent."""
    parts = []
    for name, batch in config.batches.items():
        if only is None or name == only:
            parts.append(_explain_batch(name, batch))
    return "\n".join(parts)


def _explain_batch(name: str, batch: BatchConfig) -> str:
    preset = f" (from preset {batch.preset.get('name')})" if batch.preset else ""
    lines = [f"# batch {name}{preset}"]

    def statement(when: str, sql: str, params: str = "") -> None:
        lines.append(f"-- {when}" + (f"; parameters: {params}" if params else ""))
        lines.append(sql.strip() + ";")
        lines.append("")

    runs = batch.runs
    if runs is not None:
        c = runs.columns
        key = ("columns.run_key (a scheduled slot)" if c.run_key else "columns.business_date" if c.key
               else "the local start date")
        lines.append(f"-- runs: key {key}, times read in {runs.timezone}, statuses {runs.status.model_dump()}")
        statement("first poll: do the mapped columns exist (zero rows)", probe_statement(runs, "*"))
        statement("until a start time is stored: how times are kept", build_sample_query(runs))
        boundary = "now - lookback" + (", twice (started, or queued and not started)" if c.queued_at else "")
        statement("every poll: the lookback window", build_window_query(runs), boundary)
        statement("once, when the window holds no success", build_last_success_query(runs),
                  ", ".join(repr(v) for v in last_success_params(runs)))
    if batch.records is not None:
        r = batch.records
        statement("every poll, per attempt of the latest key: rows by state", r.query, "the attempt's run_id")
        lines.append(f"-- pending states: {r.pending_states}; done states: "
                     f"{r.done_states if r.done_states is not None else 'every state not pending'}")
        if r.rerun_unfinished:
            lines.append(f"-- rerun-check proposes: {r.rerun_unfinished}")
        lines.append("")
    if batch.schedule is not None and batch.schedule.query is not None:
        statement("every poll: the scheduler's plan (latest planned start, next planned start, paused)",
                  batch.schedule.query)
    elif batch.schedule is not None:
        lines.append(f"-- schedule: cron {batch.schedule.cron!r} in {batch.schedule.timezone}, no statement")
        lines.append("")
    for check_name, check in batch.checks.items():
        statement(f"every poll: check {check_name}", check.query)
    return "\n".join(lines)
