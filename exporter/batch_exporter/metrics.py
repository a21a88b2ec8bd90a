"""The metric contract: every metric the exporter may expose, in one place.

Sources emit samples by name; the collector looks the name up here for its type,
help text and label names. Tests use this table to prove that rules and dashboards
only name metrics that exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["gauge", "counter", "info"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]


def _spec(name: str, kind: MetricKind, labels: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name=name, kind=kind, help=help_, labels=labels)


_B = ("batch",)

CONTRACT: tuple[MetricSpec, ...] = (
    # runs
    _spec("batch_run_last_start_timestamp_seconds", "gauge", _B,
          "Start time of the latest started run of the latest run key that has one (re-running an older "
          "business date or slot now does not move it). With a schedule, a run of a key that belongs to an "
          "earlier expected start (one with a run begun before the latest expected start less its grace) "
          "begun since then is a re-run of that start and does not count, even while its key is the latest: "
          "re-running yesterday's business date this morning leaves today's missing run missing."),
    _spec("batch_run_last_end_timestamp_seconds", "gauge", _B, "End time of the latest finished run."),
    _spec("batch_run_last_success_timestamp_seconds", "gauge", _B,
          "End time of the latest successful run; with a schedule, a success of a run key that belongs to an "
          "earlier expected start ending since the latest expected start less its grace does not count (as "
          "for batch_run_last_start_timestamp_seconds): it is not the success the latest start waits for."),
    _spec("batch_run_last_duration_seconds", "gauge", _B,
          "Duration of the latest finished run (absent when its end is before its start: a clock or time zone "
          "defect in the run table)."),
    _spec("batch_run_key_work_seconds", "gauge", _B,
          "How long the attempts of the latest run key worked in all, once its latest run has ended: the time "
          "at least one of them was running (an attempt left marked running, its process dead, counts nothing: "
          "its share is unknown), so that a re-run that only finishes what a failed attempt left is judged "
          "on the key's whole work (BatchRunSuspiciouslyFast). Absent while the latest run has not ended, and "
          "when an attempt counter (columns.attempt) says earlier attempts ran whose rows are not in view."),
    _spec("batch_run_last_status", "gauge", ("batch", "status"),
          "1 for the status of the latest run (success, failed, running, queued, unknown), 0 for the others. "
          "The latest run is the last attempt of the latest run key. A status the status map does not name is "
          "unknown while the run has no end time, failed once it has one."),
    _spec("batch_run_last_status_code", "gauge", ("batch", "code"),
          "Always 1; `code` is the latest run's status as the run table holds it ('' for NULL; card-like "
          "digit runs masked; at most 64 characters)."),
    _spec("batch_run_running", "gauge", _B,
          "Runs in progress: marked running, or with a status the status map does not name and no end time "
          "(they may be running); presumed dead ones included."),
    _spec("batch_run_running_seconds", "gauge", _B, "Age of the oldest run in progress (0 when none)."),
    _spec("batch_run_queued", "gauge", _B,
          "Runs waiting to start (a status under runs.status.queued), of any run key in the window."),
    _spec("batch_run_presumed_dead", "gauge", _B,
          "Runs still in progress longer than max_duration: their process most likely died."),
    _spec("batch_run_attempts", "gauge", _B,
          "Runs of the latest run key: its business date (columns.business_date), its scheduled slot "
          "(columns.run_key), or the local start date in runs.timezone when the table has neither; queued runs "
          "count, and a row's attempt counter (columns.attempt) counts for the runs it stands for. More than 1 "
          "means a re-run. The latest key is the greatest one in the window up to a day ahead, so that "
          "re-running an older key does not hide the current one; without any date or slot: the key of the "
          "run that started last."),
    _spec("batch_run_business_date_info", "gauge", ("batch", "business_date"),
          "Always 1; `business_date` is the latest run key, the one batch_run_attempts counts (a date "
          "YYYY-MM-DD, or a slot YYYY-MM-DDTHH:MM:SS+HH:MM in runs.key_timezone, else runs.timezone; card-like "
          "digit runs masked; at "
          "most 64 characters). The re-run alerts carry it, so that a new date's re-run is a new alert."),
    _spec("batch_run_earlier_key_attempts", "gauge", ("batch", "business_date"),
          "Runs of an earlier run key (not the latest) run again after the latest key's first run began, "
          "in the last 24 hours, 2 or more: the one re-run last (clearing one 15-minute slot while the next "
          "exists, re-running yesterday after today's run). Absent when there is none. The re-run alerts page "
          "on it like on batch_run_attempts."),
    _spec("batch_run_records", "gauge", ("batch", "state"),
          "Rows touched by the latest run, by their database state value."),
    _spec("batch_run_pending_records", "gauge", _B,
          "Rows still in a configured pending state, summed over every attempt of the latest business date. "
          "Past 20 attempts, each poll reads the latest and those read longest ago: the others count "
          "with the rows they had a few polls ago."),
    _spec("batch_run_left_pending_records", "gauge", _B,
          "Of batch_run_pending_records, the rows of attempts no longer in progress (ended, or presumed dead): "
          "left behind without being finished or rolled back."),
    _spec("batch_runs", "gauge", ("batch", "status"), "Runs in the lookback window by status."),
    _spec("batch_run_usual_duration_seconds", "gauge", ("batch", "quantile"),
          "How long a successful run usually takes: the median (quantile 0.5) and the 0.9 quantile of the "
          "successful runs in the lookback window, the latest run key's own runs left out. Exported once "
          "batch_run_usual_duration_runs reaches runs.min_history."),
    _spec("batch_run_usual_duration_runs", "gauge", _B,
          "Successful runs (start and end known, the end not before the start) that "
          "batch_run_usual_duration_seconds rests on."),
    _spec("batch_run_usual_duration_min_runs", "gauge", _B,
          "Configured runs.min_history: how many successful runs the usual duration needs."),
    _spec("batch_run_latest_log_matches", "gauge", ("batch", "log", "pattern"),
          "Lines matching the pattern that the exporter read while the latest run was in progress, from its "
          "start to one log poll after its end; read as they were written, so lines of a log read late (a "
          "restart, the exporter's first read of a file) are not counted."),
    _spec("batch_run_idempotent", "gauge", _B, "1 when the batch is configured as safe to re-run."),
    _spec("batch_run_max_duration_seconds", "gauge", _B, "Configured maximum run duration."),
    _spec("batch_run_lookback_seconds", "gauge", _B, "Configured lookback window for batch_runs."),
    # schedule
    _spec("batch_schedule_last_expected_timestamp_seconds", "gauge", _B,
          "Latest time the schedule expected a run to start (at or before now): the cron's, or, with "
          "schedule.query, the latest start the scheduler planned (an overdue planned start included). "
          "Not exported while the scheduler says the job is paused."),
    _spec("batch_schedule_next_expected_timestamp_seconds", "gauge", _B,
          "Next time the schedule expects a run to start (cron, or the scheduler's plan)."),
    _spec("batch_schedule_finish_deadline_timestamp_seconds", "gauge", _B,
          "When the latest expected run must have succeeded (schedule.finish_by after its expected start)."),
    _spec("batch_schedule_last_skipped_timestamp_seconds", "gauge", ("batch", "date", "reason", "holiday"),
          "The latest start (at or before now, in the last 32 days) the cron gave and the business calendar "
          "skipped: its local `date`, `reason` (weekend, holiday, closed: a date of the calendar's `closed` "
          "list, not-picked: a business day `days` did not pick) and `holiday` (the holiday's name, or '')."),
    _spec("batch_schedule_paused", "gauge", _B,
          "1 while the scheduler says the job is paused (schedule.query only): no start is expected."),
    _spec("batch_schedule_grace_seconds", "gauge", _B,
          "Configured delay allowed between the expected and the actual start."),
    _spec("batch_schedule_watched_since_timestamp_seconds", "gauge", _B,
          "When this exporter process began watching the batch (kept across reloads): a batch with no run "
          "in its lookback window pages once a start expected after this instant is missed."),
    # checks
    _spec("batch_check_value", "gauge", ("batch", "check"), "Result of a consistency query."),
    _spec("batch_check_ok", "gauge", ("batch", "check"), "1 when the consistency query is within its bounds."),
    # log files
    _spec("batch_log_file_size_bytes", "gauge", ("batch", "log", "path"), "Size of a log file."),
    _spec("batch_log_file_size_limit_bytes", "gauge", ("batch", "log"), "Configured size cap of the log."),
    _spec("batch_log_file_modified_timestamp_seconds", "gauge", ("batch", "log", "path"),
          "Last modification time of a log file."),
    _spec("batch_log_files", "gauge", ("batch", "log"), "Files matching the log's path or glob."),
    _spec("batch_log_file_series_dropped", "gauge", ("batch", "log"),
          "Matching files not exported per path because of the per-log series cap."),
    # log scan
    _spec("batch_log_lines_total", "counter", ("batch", "log"), "Lines read from the log."),
    _spec("batch_log_matches_total", "counter", ("batch", "log", "pattern"), "Lines matching the pattern."),
    _spec("batch_log_last_match_timestamp_seconds", "gauge", ("batch", "log", "pattern"),
          "Time the exporter last read a line matching the pattern."),
    _spec("batch_log_rotations_total", "counter", ("batch", "log"), "Rotations (file replaced) seen."),
    _spec("batch_log_truncations_total", "counter", ("batch", "log"), "Truncations (file shrunk or rewritten) seen."),
    _spec("batch_log_oversized_lines_total", "counter", ("batch", "log"),
          "Lines longer than the configured bound (counted, not buffered)."),
    _spec("batch_log_read_bytes_total", "counter", ("batch", "log"), "Bytes read from the log."),
    _spec("batch_log_unread_bytes", "gauge", ("batch", "log"), "Bytes written but not yet read (lag)."),
    # exporter health
    _spec("batch_exporter_source_up", "gauge", ("source",), "1 when the source's latest poll succeeded."),
    _spec("batch_exporter_source_last_success_timestamp_seconds", "gauge", ("source",),
          "Time of the source's latest successful poll."),
    _spec("batch_exporter_source_poll_duration_seconds", "gauge", ("source",),
          "Duration of the source's latest poll."),
    _spec("batch_exporter_source_errors_total", "counter", ("source", "reason"),
          "Failed polls by reason: `connect` (database unreachable, connection lost, session not read-only), "
          "`timeout`, `query` (the statement failed), `permission` (the login is refused or the account lacks "
          "a grant), `driver_missing`, `data` (rows the exporter cannot use), `io` (log files), `state` (the "
          "log state file), `stopped` (the exporter is stopping or reloading)."),
    _spec("batch_exporter_build_info", "gauge", ("version",), "Build information; always 1."),
    # fleets and limits
    _spec("batch_exporter_fleet_jobs", "gauge", ("fleet",),
          "Jobs of a fleet (batches discovered in a scheduler's run table) this exporter exports: those of its "
          "shard that pass the fleet's filter and have a run in the lookback window, are named under overrides, "
          "or had their last run leave the window less than a lookback ago; not those left out because another "
          "batch or fleet exports their name."),
    _spec("batch_exporter_fleet_shard", "gauge", ("fleet", "shard"),
          "Always the number of shards the fleet is split into (1 when it is not); `shard` is the one this "
          "exporter takes (0 to shards-1), from --shard or fleets.NAME.shard. BatchFleetShardsMisassigned "
          "compares the shards exported with the number there should be."),
    _spec("batch_exporter_series", "gauge", (),
          "Series of the sources in the latest exposition: those counted against batch_exporter_series_limit "
          "(the exporter's own batch_exporter_* series are neither counted nor ever left out)."),
    _spec("batch_exporter_series_limit", "gauge", (),
          "Configured cap on batch_exporter_series (global.max_series). Past it, whole sources are left out: "
          "the logs first (the largest first), then checks and log evidence, then the configuration, "
          "schedule and runs of the batches last in the configuration, a batch's three together."),
    _spec("batch_exporter_series_dropped", "gauge", ("source",),
          "Series of the source that the cap left out of the exposition: all of them, or 0 when it is kept "
          "(a source is never cut in part); its batch_exporter_source_* series stay."),
)

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in CONTRACT}


def exposed_names() -> set[str]:
    """Every series name that can appear in the exposition (counters carry their `_total`; the
    exporter never exposes `_created` series)."""
    return {spec.name for spec in CONTRACT}


def reference_markdown() -> str:
    """docs/metrics.md: the contract as a table for users (tests keep the file equal to this)."""
    lines = [
        "# Metrics",
        "",
        "Every series batch-exporter can expose. Generated from `exporter/batch_exporter/metrics.py`:",
        "`python -c 'from batch_exporter.metrics import reference_markdown as r; print(r(), end=\"\")'"
        " > docs/metrics.md`.",
        "",
        "Label `batch` is the batch's name in the configuration (never `job` or `instance`: Prometheus owns",
        "those); `log`, `check` and `pattern` are configured names; `path` is a log file's path, capped per log",
        "(`max_path_series`); `state` is the run's own database state value, capped per batch",
        "(`records.max_states`, the rest summed as `_other`); `source` is `KIND:BATCH` or `KIND:BATCH/LOG`.",
        "No log text, SQL error text or record content ever becomes a label value.",
        "",
        "| metric | type | labels | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for spec in CONTRACT:
        labels = ", ".join(f"`{label}`" for label in spec.labels)
        lines.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(lines) + "\n"
