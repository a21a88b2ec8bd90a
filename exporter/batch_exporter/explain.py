"""`check-config --explain`: every statement the exporter sends for each batch, with its parameters, as
text a user can read, run by hand, or copy into a configuration of their own (a preset's SQL too); and for
a cron kept to a business calendar or given a finish_by, its next expected starts, their deadlines and
the days the calendar skips between them."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .business_calendar import LOOKAHEAD_DAYS, BusinessCalendar, CalendarSchedule, Skip
from .config import BatchConfig, CalendarConfig, Config, ScheduleConfig
from .finish_by import FinishBy
from .run_statements import (
    build_last_success_query,
    build_sample_query,
    build_window_query,
    last_success_params,
    probe_statement,
)
from .schedule import CronSchedule

PLANNED_STARTS = 10


def explain(config: Config, only: str | None = None, clock: Callable[[], float] = time.time) -> str:
    """The statements of every batch (or of `only`), each headed by when it is sent; `clock` is when the
    listed expected starts begin."""
    now = datetime.fromtimestamp(clock(), tz=UTC)
    parts = []
    for name, batch in config.batches.items():
        if only is None or name == only:
            parts.append(_explain_batch(name, batch, config.calendars, now))
    return "\n".join(parts)


def _explain_batch(name: str, batch: BatchConfig, calendars: Mapping[str, CalendarConfig], now: datetime) -> str:
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
        if batch.schedule.finish_by is not None:
            lines += [f"-- finish_by {batch.schedule.finish_by!r} after each start the scheduler planned", ""]
    elif batch.schedule is not None:
        lines.append(f"-- schedule: cron {batch.schedule.cron!r} in {batch.schedule.timezone}, no statement")
        lines += _planned_starts(batch.schedule, calendars, now)
        lines.append("")
    for check_name, check in batch.checks.items():
        statement(f"every poll: check {check_name}", check.query)
    return "\n".join(lines)


def _planned_starts(schedule: ScheduleConfig, calendars: Mapping[str, CalendarConfig], now: datetime) -> list[str]:
    """The next expected starts of a cron with a calendar or a finish_by, with their deadlines and the days
    skipped between them."""
    if schedule.cron is None or (schedule.calendar is None and schedule.finish_by is None):
        return []
    tz = ZoneInfo(schedule.timezone)
    cron = CronSchedule.parse(schedule.cron, schedule.timezone)
    finish = FinishBy.parse(schedule.finish_by) if schedule.finish_by is not None else None
    head = []
    if schedule.calendar is not None:
        head.append(f"calendar {schedule.calendar}, days {schedule.days or 'every-business-day'}")
    if finish is not None:
        head.append(f"finish_by {schedule.finish_by!r}")
    lines = [f"-- {'; '.join(head)}; the next {PLANNED_STARTS} expected starts after {_local(now, tz)}:"]
    plan: list[datetime | Skip] = []
    if schedule.calendar is not None:
        calendar = BusinessCalendar(calendars[schedule.calendar])
        plan = CalendarSchedule(cron, calendar, schedule.days or "every-business-day").plan(now, PLANNED_STARTS)
    else:
        cursor: datetime | None = now
        while cursor is not None and len(plan) < PLANNED_STARTS:
            cursor = cron.next_fire(cursor)
            if cursor is not None:
                plan.append(cursor)
    routine: list[Skip] = []  # weekend and not-picked days, told as one line per run of them
    for entry in [*plan, None]:
        if isinstance(entry, Skip) and entry.reason in ("weekend", "not-picked"):
            routine.append(entry)
            continue
        if routine:
            lines.append(_routine_skips(routine))
            routine = []
        if isinstance(entry, Skip):
            why = entry.reason + (f": {entry.holiday}" if entry.holiday else "")
            lines.append(f"--   skipped {entry.day:%Y-%m-%d %a} ({why})")
        elif entry is not None:
            due = None if finish is None else finish.deadline(entry, tz, cron.wall_time(entry))
            deadline = "" if due is None else f", finish by {_local(due, tz)}"
            lines.append(f"--   start {_local(entry, tz)}{deadline}")
    if not any(not isinstance(entry, Skip) for entry in plan):
        lines.append(f"--   none within the next {LOOKAHEAD_DAYS} days")
    return lines


def _routine_skips(skips: list[Skip]) -> str:
    if len(skips) == 1:
        return f"--   skipped {skips[0].day:%Y-%m-%d %a} ({skips[0].reason})"
    counts = Counter(skip.reason for skip in skips)
    told = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    return f"--   skipped {skips[0].day:%Y-%m-%d %a} to {skips[-1].day:%Y-%m-%d %a} ({told})"


def _local(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime("%Y-%m-%d %a %H:%M %z")
