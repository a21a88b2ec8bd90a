"""Per-batch values that come from the configuration and the clock: schedule, thresholds, and what the
business calendar decided."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ..business_calendar import BusinessCalendar, CalendarSchedule
from ..config import BatchConfig, CalendarConfig
from ..finish_by import FinishBy
from ..runsummary import Expected
from ..schedule import CronSchedule
from ..snapshot import SampleBuilder, Snapshot
from .runs import status_code_label


class BatchInfo:
    """What a batch's configuration says and the clock tells: thresholds, the cron schedule (kept to the
    business days of its calendar, if it names one), its finish deadline. No name of its own: the jobs of
    a fleet with the same settings share one (and the work of its schedule)."""

    def __init__(self, config: BatchConfig, calendars: Mapping[str, CalendarConfig] | None = None, *,
                 subject: str = "this batch") -> None:
        self._config = config
        self._schedule: CronSchedule | CalendarSchedule | None = None
        self._finish_by: FinishBy | None = None
        schedule = config.schedule
        if schedule is not None and schedule.cron is not None:
            self._tz = ZoneInfo(schedule.timezone)
            self._schedule = CronSchedule.parse(schedule.cron, schedule.timezone)
            if schedule.calendar is not None:
                rules = (calendars or {}).get(schedule.calendar)
                if rules is None:
                    raise ValueError(f"{subject}: schedule.calendar {schedule.calendar!r} is not among the "
                                     f"calendars given ({', '.join(sorted(calendars or {})) or 'none'})")
                self._schedule = CalendarSchedule(self._schedule, BusinessCalendar(rules),
                                                  schedule.days or "every-business-day")
            if schedule.finish_by is not None:
                self._finish_by = FinishBy.parse(schedule.finish_by)

    def expected(self, now: datetime) -> Expected | None:
        """The latest expected start at `now` and the schedule's grace, as add_samples exports them; None
        without a cron schedule or before its first start. For the runs source (summarize): which run is
        this start's and which is a re-run of an earlier one."""
        if self._schedule is None or self._config.schedule is None:
            return None
        previous, _ = self._schedule.fires_around(now)
        if previous is None:
            return None
        before = self._schedule.previous_fire(previous - timedelta(microseconds=1))
        return Expected(previous, timedelta(seconds=self._config.schedule.grace), before)

    def add_samples(self, out: SampleBuilder, batch: str, watching_since: float, now: datetime) -> None:
        """The series of `batch`, watched since `watching_since`, at `now`; never touches a database."""
        out.add("batch_run_idempotent", 1 if self._config.idempotent else 0, batch=batch)
        if self._config.max_duration is not None:
            out.add("batch_run_max_duration_seconds", self._config.max_duration, batch=batch)
        if self._config.runs is not None:
            out.add("batch_run_lookback_seconds", self._config.runs.lookback, batch=batch)
        if self._config.schedule is not None:
            # with a schedule query, the expected starts come from the scheduler (sources.schedule_table)
            out.add("batch_schedule_grace_seconds", self._config.schedule.grace, batch=batch)
            out.add("batch_schedule_watched_since_timestamp_seconds", watching_since, batch=batch)
        if self._schedule is not None:
            previous, following = self._schedule.fires_around(now)
            if previous is not None:
                out.add("batch_schedule_last_expected_timestamp_seconds", previous.timestamp(), batch=batch)
                if self._finish_by is not None:
                    # a start a spring-forward jump moved keeps its usual time (FinishBy.deadline)
                    deadline = self._finish_by.deadline(previous, self._tz, self._schedule.wall_time(previous))
                    out.add("batch_schedule_finish_deadline_timestamp_seconds", deadline.timestamp(), batch=batch)
            if following is not None:
                out.add("batch_schedule_next_expected_timestamp_seconds", following.timestamp(), batch=batch)
            if isinstance(self._schedule, CalendarSchedule):
                skip = self._schedule.last_skipped(now)
                if skip is not None:
                    out.add("batch_schedule_last_skipped_timestamp_seconds", skip.fire.timestamp(), batch=batch,
                            date=skip.day.isoformat(), reason=skip.reason, holiday=status_code_label(skip.holiday))


class BatchInfoSource:
    """Exports a batch's BatchInfo: configured thresholds, the schedule's last and next expected start,
    the latest start the calendar skipped and the finish deadline of the last expected start."""

    def __init__(self, batch: str, config: BatchConfig, clock: Callable[[], float] = time.time,
                 watching_since: float | None = None,
                 calendars: Mapping[str, CalendarConfig] | None = None) -> None:
        self.name = f"config:{batch}"
        self._batch = batch
        self._clock = clock
        # when this exporter began watching the batch: a schedule's first start after it tells a new
        # batch that never ran (page) from one added after its start of the day (not yet due)
        self.watching_since = clock() if watching_since is None else watching_since
        self._info = BatchInfo(config, calendars, subject=f"batch {batch!r}")

    def poll(self) -> Snapshot:
        """Compute the schedule's fire times around now; never touches a database."""
        out = SampleBuilder()
        self._info.add_samples(out, self._batch, self.watching_since, datetime.fromtimestamp(self._clock(), tz=UTC))
        return out.build(self.name)
