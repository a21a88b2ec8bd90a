"""Per-batch values that come from the configuration and the clock: schedule, thresholds."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from ..config import BatchConfig
from ..schedule import CronSchedule
from ..snapshot import SampleBuilder, Snapshot


class BatchInfoSource:
    """Exports configured thresholds and the cron schedule's last and next expected start."""

    def __init__(self, batch: str, config: BatchConfig, clock: Callable[[], float] = time.time,
                 watching_since: float | None = None) -> None:
        self.name = f"config:{batch}"
        self._batch = batch
        self._config = config
        self._clock = clock
        # when this exporter began watching the batch: a schedule's first start after it tells a new
        # batch that never ran (page) from one added after its start of the day (not yet due)
        self.watching_since = clock() if watching_since is None else watching_since
        self._schedule = (
            CronSchedule.parse(config.schedule.cron, config.schedule.timezone)
            if config.schedule is not None and config.schedule.cron is not None else None
        )

    def poll(self) -> Snapshot:
        """Compute the schedule's fire times around now; never touches a database."""
        out = SampleBuilder()
        batch = self._batch
        out.add("batch_run_idempotent", 1 if self._config.idempotent else 0, batch=batch)
        if self._config.max_duration is not None:
            out.add("batch_run_max_duration_seconds", self._config.max_duration, batch=batch)
        if self._config.runs is not None:
            out.add("batch_run_lookback_seconds", self._config.runs.lookback, batch=batch)
        if self._config.schedule is not None:
            # with a schedule query, the expected starts come from the scheduler (sources.schedule_table)
            out.add("batch_schedule_grace_seconds", self._config.schedule.grace, batch=batch)
            out.add("batch_schedule_watched_since_timestamp_seconds", self.watching_since, batch=batch)
        if self._schedule is not None:
            now = datetime.fromtimestamp(self._clock(), tz=UTC)
            previous = self._schedule.previous_fire(now)
            following = self._schedule.next_fire(now)
            if previous is not None:
                out.add("batch_schedule_last_expected_timestamp_seconds", previous.timestamp(), batch=batch)
            if following is not None:
                out.add("batch_schedule_next_expected_timestamp_seconds", following.timestamp(), batch=batch)
        return out.build(self.name)
