"""The status page's model: per batch, what is wrong and what to do, built from the latest snapshots only.

Pure: the samples the sources last published (the same ones /metrics is rendered from), each source's
health, the batches' time zones and an injected `now` go in; a `Status` comes out, batches worst first.
No database or file is read here. Every fact is a sample of docs/metrics.md; where a fact is missing
(no run in the lookback window, a source not polled yet) the model says so rather than guess.

Conditions are those of the alert rules (alerts/batch-exporter.rules.yml) that the samples alone can
decide now, without the rules' `for` or history: each names its alert, whose runbook is linked. MODELLED
names them; NEEDS_HISTORY and NEEDS_PROMETHEUS name the per-batch alerts the page cannot decide, and why
(tests/test_status_model.py checks that every per-batch alert of the rules is in exactly one of them).
"""
from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .masking import clean_line, mask_path
from .snapshot import Snapshot

# alerts/pack.yml's runbook_base_url: every alert's runbook_url is this base followed by /<Alert>.md
RUNBOOK_BASE_URL = "https://github.com/batch-exporter/batch-exporter/blob/main/alerts/runbooks"
NEAR_LIMIT_WARNING = 0.9  # the rules' log size ratios (alerts/pack.yml)
NEAR_LIMIT_CRITICAL = 0.98
_MESSAGE_WIDTH = 300
SILENT_LOG_SECONDS = 900  # BatchLogSilentWhileRunning: 15 minutes without a write, 15 minutes into a run
STALE_SNAPSHOT_SECONDS = 900  # BatchExporterSnapshotStale
FAR_LONGER_FACTOR = 2.0  # BatchRunFarLongerThanUsual: over twice the usual 0.9 quantile
SUSPICIOUSLY_FAST_FACTOR = 0.1  # BatchRunSuspiciouslyFast: under a tenth of the usual median
# The patterns BatchLogErrors and batch:batch_run_success_contradicted count (the rules' `=~`, anchored).
ERROR_PATTERN = re.compile(r"error|fatal|exception|critical", re.IGNORECASE)

SEVERITIES = ("critical", "warning", "info")
# a batch's level: its worst condition's severity, "unknown" when nothing is known of its runs, else "ok"
LEVELS = ("critical", "warning", "unknown", "info", "ok")

# Most urgent first, within a severity: what has already done harm, then what is late, then the rest.
# A batch's place on the page is its level, then its most urgent condition, then how many it has.
URGENCY = (
    "BatchRerunOfNonIdempotentBatch",
    "BatchRunFailed",
    "BatchRunLeftPendingRecords",
    "BatchCheckFailed",
    "BatchRunTooLong",
    "BatchFinishDeadlineMissed",
    "BatchRunMissed",
    "BatchNoRecentSuccess",
    "BatchLogFileNearSizeLimit",
    "BatchSuccessContradicted",
    "BatchFinishDeadlineAtRisk",
    "BatchRunFarLongerThanUsual",
    "BatchLogSilentWhileRunning",
    "BatchRunSuspiciouslyFast",
    "BatchExporterSourceDown",
    "BatchExporterSnapshotStale",
    "BatchSchedulePaused",
    "BatchRerunDetected",
)
# The per-batch alerts of the rules that the page models: all of URGENCY.
MODELLED = frozenset(URGENCY)
# Per-batch alerts the latest samples cannot decide, and why.
NEEDS_HISTORY = {
    "BatchLogErrors": "counts new matching lines with increase() over 15 minutes, or against a value up to "
                      "a day old: the exporter keeps only the latest count",
    "BatchLogFileWillHitLimit": "compares the live file with its size a day ago (offset 1d)",
}
NEEDS_PROMETHEUS = {
    "BatchExporterGone": "about an exporter that left Prometheus's service discovery: this exporter cannot "
                         "see its own absence",
    "BatchExportedTwice": "compares the batches of every exporter of a scrape job",
    "BatchFleetShardsMisassigned": "compares the shards every exporter of a fleet takes",
}


@dataclass(frozen=True)
class SourceReport:
    """One source's health as the store keeps it (the status page's view of SourceHealth)."""

    name: str
    up: bool
    polled: bool
    last_success: float | None = None
    last_error: str | None = None
    last_error_message: str = ""
    last_failure: float | None = None


@dataclass(frozen=True)
class Moment:
    """An instant as shown: in the batch's zone, and how long before (or after) `now`."""

    epoch: float
    local: str
    ago: str

    def as_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "local": self.local, "ago": self.ago}


@dataclass(frozen=True)
class Condition:
    alert: str
    severity: str
    summary: str
    runbook_url: str

    def as_json(self) -> dict[str, Any]:
        return {"alert": self.alert, "severity": self.severity, "summary": self.summary,
                "runbook_url": self.runbook_url}


@dataclass(frozen=True)
class CheckStatus:
    check: str
    value: float | None
    ok: bool | None


@dataclass(frozen=True)
class LogFileStatus:
    path: str
    size_bytes: float | None
    ratio: float | None  # of the log's cap; None without a cap
    modified: Moment | None


@dataclass(frozen=True)
class LogStatus:
    log: str
    limit_bytes: float | None  # None: no cap configured
    files: tuple[LogFileStatus, ...]
    file_count: int | None


@dataclass(frozen=True)
class SourceStatus:
    source: str
    up: bool
    polled: bool
    reason: str | None  # why its latest poll failed (None while up)
    message: str
    last_success: Moment | None
    last_failure: Moment | None

    @property
    def state(self) -> str:
        if not self.polled:
            return "not polled yet"
        return "up" if self.up else f"down ({self.reason})"


@dataclass(frozen=True)
class RunStatus:
    known: bool  # False: no run in the lookback window (or the runs source never answered)
    status: str | None
    code: str | None
    business_date: str | None
    attempts: int | None
    earlier_key: tuple[str, int] | None  # an earlier run key re-run after the latest began, and its runs
    idempotent: bool | None  # None: not known (no config sample)
    last_start: Moment | None
    last_end: Moment | None
    last_success: Moment | None
    last_duration_seconds: float | None
    key_work_seconds: float | None  # batch_run_key_work_seconds: what BatchRunSuspiciouslyFast judges
    running: int | None
    running_seconds: float | None
    max_duration_seconds: float | None
    presumed_dead: int | None
    pending_records: float | None
    left_pending_records: float | None


@dataclass(frozen=True)
class ScheduleStatus:
    last_expected: Moment | None
    next_expected: Moment | None
    finish_deadline: Moment | None
    paused: bool


@dataclass(frozen=True)
class BatchStatus:
    batch: str
    level: str
    time_zone: str
    run: RunStatus
    schedule: ScheduleStatus | None
    checks: tuple[CheckStatus, ...]
    logs: tuple[LogStatus, ...]
    sources: tuple[SourceStatus, ...]
    conditions: tuple[Condition, ...]
    rerun_check: str | None  # the command line to run before any re-run
    rerun_check_note: str = ""  # why there is none

    @property
    def failed_checks(self) -> tuple[CheckStatus, ...]:
        return tuple(check for check in self.checks if check.ok is False)


@dataclass(frozen=True)
class Status:
    generated: Moment  # in UTC
    version: str
    config_path: str | None
    batches: tuple[BatchStatus, ...] = field(default_factory=tuple)
    # the series cap's doing: sources left out of /metrics, and the batches whose series they hold
    unexported_sources: tuple[str, ...] = ()
    unexported_batches: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"generated": self.generated.as_json(), "version": self.version, "config": self.config_path,
                "unexported": {"sources": list(self.unexported_sources), "batches": list(self.unexported_batches)},
                "batches": [_batch_json(batch) for batch in self.batches]}


# --- times ---------------------------------------------------------------------------------------


def local_time(epoch: float, zone: ZoneInfo) -> str:
    """'2026-11-27 02:00:13 JST' (the zone's abbreviation, or its UTC offset where it has none)."""
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(zone)
    name = moment.tzname() or ""
    if not name or name[0] in "+-":
        name = "UTC" + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + name


def how_long(seconds: float) -> str:
    """A duration in words a person reads at a glance: '42 s', '12 min', '3 h 05 min', '2 d 4 h'."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def ago(epoch: float, now: float) -> str:
    """'12 min ago', 'in 5 min', or 'now' within a second."""
    delta = now - epoch
    if abs(delta) < 1:
        return "now"
    return f"{how_long(delta)} ago" if delta > 0 else f"in {how_long(-delta)}"


def moment(epoch: float | None, zone: ZoneInfo, now: float) -> Moment | None:
    """None for a missing time, and for 0 (a run table's "never")."""
    if epoch is None or not math.isfinite(epoch) or epoch <= 0:
        return None
    return Moment(epoch, local_time(epoch, zone), ago(epoch, now))


# --- building --------------------------------------------------------------------------------------


def build_status(snapshots: Iterable[Snapshot], sources: Sequence[SourceReport], *, now: float,
                 zones: Mapping[str, str], fleet_zones: Mapping[str, str] | None = None,
                 config_path: str | None = None, version: str = "",
                 rerun_batches: Iterable[str] = (), runbook_base_url: str = RUNBOOK_BASE_URL,
                 unexported: Iterable[str] = ()) -> Status:
    """The page of every batch the snapshots name (and every configured batch in `zones`, with or
    without samples), worst first.

    `zones`: each configured batch's time zone; `fleet_zones`: each fleet's, for the jobs it exports;
    `rerun_batches`: the batches `rerun-check` accepts (the configured ones), given `config_path`;
    `unexported`: the sources the series cap left out of the exposition (Prometheus cannot alert on them)."""
    fleet_zones = fleet_zones or {}
    samples: dict[str, list[tuple[str, dict[str, str], float]]] = {name: [] for name in zones}
    fleet_of: dict[str, str] = {}
    for snapshot in snapshots:
        kind, _, rest = snapshot.source.partition(":")
        for sample in snapshot.samples:
            labels = dict(sample.labels)
            batch = labels.get("batch")
            if batch is None:
                continue
            samples.setdefault(batch, []).append((sample.name, labels, sample.value))
            if kind == "fleet":
                fleet_of.setdefault(batch, rest)
    by_batch: dict[str, list[SourceReport]] = {}
    for report in sources:
        kind, _, rest = report.name.partition(":")
        if kind == "fleet":
            for batch, fleet in fleet_of.items():
                if fleet == rest:
                    by_batch.setdefault(batch, []).append(report)
        else:
            by_batch.setdefault(rest.split("/", 1)[0], []).append(report)
    rerun = set(rerun_batches)
    batches = []
    for name, found in samples.items():
        zone_name = zones.get(name) or fleet_zones.get(fleet_of.get(name, ""), "UTC")
        batches.append(_batch(name, found, by_batch.get(name, []), ZoneInfo(zone_name), zone_name, now,
                              config_path if name in rerun else None, fleet_of.get(name), runbook_base_url))
    batches.sort(key=_worst_first)
    left_out = sorted(set(unexported))
    hidden: set[str] = set()
    for source in left_out:
        kind, _, rest = source.partition(":")
        if kind == "fleet":
            hidden.update(batch for batch, fleet in fleet_of.items() if fleet == rest)
        else:
            hidden.add(rest.split("/", 1)[0])
    return Status(Moment(now, local_time(now, ZoneInfo("UTC")), "now"), version, config_path, tuple(batches),
                  tuple(mask_path(source) for source in left_out), tuple(sorted(mask_path(b) for b in hidden)))


def _worst_first(batch: BatchStatus) -> tuple[int, int, int, str]:
    urgency = min((URGENCY.index(c.alert) if c.alert in URGENCY else len(URGENCY) for c in batch.conditions),
                  default=len(URGENCY))
    return LEVELS.index(batch.level), urgency, -len(batch.conditions), batch.batch


class _Facts:
    """A batch's samples, looked up by name and labels."""

    def __init__(self, found: list[tuple[str, dict[str, str], float]]) -> None:
        self._by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
        for name, labels, value in found:
            self._by_name.setdefault(name, []).append((labels, value))

    def one(self, name: str) -> float | None:
        found = self._by_name.get(name)
        return found[0][1] if found else None

    def all(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self._by_name.get(name, [])

    def label_of_one(self, name: str, label: str) -> str | None:
        """The label of the sample whose value is 1 (status) or of the only sample (info metrics)."""
        found = [labels[label] for labels, value in self.all(name) if value == 1]
        return found[0] if found else None


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _integer(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else int(value)


def _batch(name: str, found: list[tuple[str, dict[str, str], float]], reports: list[SourceReport],
           zone: ZoneInfo, zone_name: str, now: float, config_path: str | None, fleet: str | None,
           runbook_base_url: str) -> BatchStatus:
    facts = _Facts(found)

    def at(metric: str) -> Moment | None:
        return moment(facts.one(metric), zone, now)

    status = facts.label_of_one("batch_run_last_status", "status")
    idempotent = facts.one("batch_run_idempotent")
    earlier = facts.all("batch_run_earlier_key_attempts")
    run = RunStatus(
        known=status is not None,
        status=status,
        code=facts.label_of_one("batch_run_last_status_code", "code"),
        business_date=facts.label_of_one("batch_run_business_date_info", "business_date"),
        attempts=_integer(facts.one("batch_run_attempts")),
        earlier_key=(earlier[0][0]["business_date"], int(earlier[0][1])) if earlier else None,
        idempotent=None if idempotent is None else idempotent == 1,
        last_start=at("batch_run_last_start_timestamp_seconds"),
        last_end=at("batch_run_last_end_timestamp_seconds"),
        last_success=at("batch_run_last_success_timestamp_seconds"),
        last_duration_seconds=facts.one("batch_run_last_duration_seconds"),
        key_work_seconds=facts.one("batch_run_key_work_seconds"),
        running=_integer(facts.one("batch_run_running")),
        running_seconds=facts.one("batch_run_running_seconds"),
        max_duration_seconds=facts.one("batch_run_max_duration_seconds"),
        presumed_dead=_integer(facts.one("batch_run_presumed_dead")),
        pending_records=_finite(facts.one("batch_run_pending_records")),
        left_pending_records=_finite(facts.one("batch_run_left_pending_records")),
    )
    schedule = None
    if any(facts.one(metric) is not None for metric in (
            "batch_schedule_last_expected_timestamp_seconds", "batch_schedule_next_expected_timestamp_seconds",
            "batch_schedule_paused")):
        schedule = ScheduleStatus(at("batch_schedule_last_expected_timestamp_seconds"),
                                  at("batch_schedule_next_expected_timestamp_seconds"),
                                  at("batch_schedule_finish_deadline_timestamp_seconds"),
                                  facts.one("batch_schedule_paused") == 1)
    ok_of = {labels["check"]: value for labels, value in facts.all("batch_check_ok")}
    values = {labels["check"]: value for labels, value in facts.all("batch_check_value")}
    checks = tuple(CheckStatus(mask_path(check), values.get(check), None if check not in ok_of else ok_of[check] == 1)
                   for check in sorted(set(ok_of) | set(values)))
    logs = _logs(facts, zone, now)
    sources = tuple(sorted((_source(report, zone, now) for report in reports), key=lambda s: s.source))
    conditions = _conditions(name, facts, run, schedule, checks, logs, sources, now, runbook_base_url)
    severities = {c.severity for c in conditions}
    level = next((s for s in SEVERITIES[:2] if s in severities), None)
    if level is None:
        runs_unknown = not run.known and any(s.source.startswith("runs:") or s.source.startswith("fleet:")
                                             for s in sources)
        # a latest run whose status the status map cannot tell is never "ok"
        level = "unknown" if runs_unknown or run.status == "unknown" else ("info" if severities else "ok")
    shown = mask_path(name)  # a fleet's job names come from its run table
    if config_path is not None:
        command = f"batch-exporter rerun-check -c {shlex.quote(config_path)} {shlex.quote(shown)}"
        note = ""
    else:
        command = None
        note = (f"a job of fleet {fleet}: rerun-check takes the batches of the configuration only"
                if fleet is not None else "the exporter was not started from a configuration file")
    return BatchStatus(shown, level, zone_name, run, schedule, checks, logs, sources, conditions, command, note)


def _logs(facts: _Facts, zone: ZoneInfo, now: float) -> tuple[LogStatus, ...]:
    limits = {labels["log"]: value for labels, value in facts.all("batch_log_file_size_limit_bytes")}
    counts = {labels["log"]: value for labels, value in facts.all("batch_log_files")}
    sizes: dict[str, dict[str, float]] = {}
    modified: dict[tuple[str, str], float] = {}
    for labels, value in facts.all("batch_log_file_size_bytes"):
        sizes.setdefault(labels["log"], {})[labels["path"]] = value
    for labels, value in facts.all("batch_log_file_modified_timestamp_seconds"):
        sizes.setdefault(labels["log"], {}).setdefault(labels["path"], math.nan)
        modified[labels["log"], labels["path"]] = value
    out = []
    for log in sorted(set(limits) | set(counts) | set(sizes)):
        limit = limits.get(log)
        limit = limit if limit is not None and limit > 0 else None
        files = []
        # the most recently written first: the live file the size alerts watch
        for path, size in sorted(sizes.get(log, {}).items(), key=lambda item: -modified.get((log, item[0]), 0.0)):
            known = None if math.isnan(size) else size
            files.append(LogFileStatus(mask_path(path), known,
                                       None if limit is None or known is None else known / limit,
                                       moment(modified.get((log, path)), zone, now)))
        out.append(LogStatus(mask_path(log), limit, tuple(files), _integer(counts.get(log))))
    return tuple(out)


def _source(report: SourceReport, zone: ZoneInfo, now: float) -> SourceStatus:
    down = report.polled and not report.up
    return SourceStatus(
        source=mask_path(report.name), up=report.up, polled=report.polled,
        reason=(report.last_error or "unknown") if down else None,
        message=clean_line(report.last_error_message, _MESSAGE_WIDTH) if down else "",
        last_success=moment(report.last_success, zone, now),
        last_failure=moment(report.last_failure, zone, now) if down else None,
    )


def _conditions(name: str, facts: _Facts, run: RunStatus, schedule: ScheduleStatus | None,
                checks: tuple[CheckStatus, ...], logs: tuple[LogStatus, ...], sources: tuple[SourceStatus, ...],
                now: float, base: str) -> tuple[Condition, ...]:
    """Each rule's expression read on the latest samples (its `for` left out: it may still be pending)."""
    found: list[Condition] = []

    def add(alert: str, severity: str, summary: str) -> None:
        found.append(Condition(alert, severity, summary, f"{base}/{alert}.md"))

    # BatchRunFailed joins the status on the start timestamp: no start sample, no alert
    if run.status == "failed" and facts.one("batch_run_last_start_timestamp_seconds") is not None:
        add("BatchRunFailed", "critical", "The latest run failed" +
            (f' (status "{run.code}" in the run table).' if run.code else " (its status code is empty)."))
    reruns = [(run.attempts, f"its latest business date {run.business_date}" if run.business_date
               else "its latest business date")]
    if run.earlier_key is not None:
        reruns.append((run.earlier_key[1], f"the earlier business date {run.earlier_key[0]}, re-run after a later one"))
    for attempts, what in reruns:
        if attempts is not None and attempts >= 2:
            if run.idempotent:
                add("BatchRerunDetected", "info", f"{attempts} runs for {what}; the batch is configured as "
                                                  "idempotent: check that the re-run was deliberate.")
            else:
                add("BatchRerunOfNonIdempotentBatch", "critical",
                    f"{attempts} runs for {what}, and the batch is not "
                    f"{'known to be ' if run.idempotent is None else 'configured as '}idempotent.")
    if run.left_pending_records is not None and run.left_pending_records > 0:
        add("BatchRunLeftPendingRecords", "critical",
            f"{run.left_pending_records:.0f} records left pending by an attempt that is no longer in progress.")
    failed = [check.check for check in checks if check.ok is False and check.value is not None]
    if failed:
        add("BatchCheckFailed", "critical", f"Out of bounds: {', '.join(failed)}.")
    limit = run.max_duration_seconds if run.max_duration_seconds and run.max_duration_seconds > 0 else None
    too_long = limit is not None and run.running_seconds is not None and run.running_seconds > limit
    if too_long:
        dead = f"; {run.presumed_dead} presumed dead" if run.presumed_dead else ""
        add("BatchRunTooLong", "critical",
            f"Running for {how_long(run.running_seconds or 0)}, over its maximum of {how_long(limit or 0)}{dead}.")
    elif (limit is not None and not run.running and run.last_duration_seconds is not None
          and run.last_duration_seconds > limit):
        add("BatchRunTooLong", "warning",
            f"The latest run took {how_long(run.last_duration_seconds)}, over its maximum of {how_long(limit)}.")
    _usual_conditions(facts, run, too_long, add)
    _schedule_conditions(facts, run, schedule, now, add)
    _log_conditions(facts, run, now, add)
    if run.status == "success":
        evidence = [f"log {mask_path(labels['log'])} gained {value:.0f} lines matching {labels['pattern']}"
                    for labels, value in facts.all("batch_run_latest_log_matches")
                    if ERROR_PATTERN.fullmatch(labels.get("pattern", "")) and value > 0]
        evidence += [f"check {check} is out of its bounds ({check.value:g})" for check in checks
                     if check.ok is False and check.value is not None]
        if evidence:
            add("BatchSuccessContradicted", "warning",
                "The latest run is recorded as successful, but " + "; ".join(evidence) + ".")
    # not up: failing, or never polled yet (a first poll that hangs is down too, as the rule sees it)
    down = [source for source in sources if not source.up]
    if down:
        add("BatchExporterSourceDown", "warning", "Failing: " + ", ".join(
            f"{source.source} ({source.reason if source.polled else source.state})" for source in down)
            + "; their last good data is shown.")
    stale = [source for source in sources if source.up and source.last_success is not None
             and now - source.last_success.epoch > STALE_SNAPSHOT_SECONDS]
    if stale:
        add("BatchExporterSnapshotStale", "warning", "No poll completed for a long time: " + ", ".join(
            f"{source.source} (last {source.last_success.ago if source.last_success else ''})" for source in stale)
            + "; what it shows is that old.")
    return tuple(found)


def _usual(facts: _Facts, quantile: str) -> float | None:
    found = [value for labels, value in facts.all("batch_run_usual_duration_seconds")
             if labels.get("quantile") == quantile]
    return _finite(found[0]) if found else None


def _usual_conditions(facts: _Facts, run: RunStatus, too_long: bool, add: Any) -> None:
    """The usual duration is exported once runs.min_history runs back it: its latest value decides."""
    p90 = _usual(facts, "0.9")
    if (p90 is not None and run.running_seconds is not None and not too_long
            and run.running_seconds > FAR_LONGER_FACTOR * p90):
        add("BatchRunFarLongerThanUsual", "warning",
            f"Running for {how_long(run.running_seconds)}, over twice the {how_long(p90)} that 9 in 10 of its "
            "recent successful runs took.")
    median = _usual(facts, "0.5")
    if (median is not None and run.status == "success" and run.key_work_seconds is not None
            and run.key_work_seconds < SUSPICIOUSLY_FAST_FACTOR * median):
        add("BatchRunSuspiciouslyFast", "warning",
            f"The latest run succeeded, and its run key's runs worked {how_long(run.key_work_seconds)} in all, "
            f"under a tenth of its usual {how_long(median)}: it may have processed nothing.")


def _log_conditions(facts: _Facts, run: RunStatus, now: float, add: Any) -> None:
    limits = {labels["log"]: value for labels, value in facts.all("batch_log_file_size_limit_bytes")}
    sizes = {(labels["log"], labels["path"]): value for labels, value in facts.all("batch_log_file_size_bytes")}
    written: dict[str, dict[str, float]] = {}
    for labels, value in facts.all("batch_log_file_modified_timestamp_seconds"):
        written.setdefault(labels["log"], {})[labels["path"]] = value
    for log in sorted(written):
        last = max(written[log].values())
        limit = limits.get(log)
        # the live file(s): those written last, as the rule's `== max without (path)`; the worst of them
        ratios = [(sizes[log, path] / limit, path) for path, at in written[log].items()
                  if at == last and limit is not None and limit > 0 and (log, path) in sizes
                  and math.isfinite(sizes[log, path])]
        if ratios:
            ratio, path = max(ratios)
            if ratio >= NEAR_LIMIT_WARNING:
                add("BatchLogFileNearSizeLimit", "critical" if ratio >= NEAR_LIMIT_CRITICAL else "warning",
                    f"Log {mask_path(log)} ({mask_path(path)}) is at {ratio:.0%} of its size limit.")
        if (run.running_seconds is not None and run.running_seconds > SILENT_LOG_SECONDS
                and now - last > SILENT_LOG_SECONDS):
            add("BatchLogSilentWhileRunning", "warning",
                f"Running for {how_long(run.running_seconds)}, but log {mask_path(log)} was last written "
                f"{ago(last, now)}: its writer may have stopped, or the run is stuck.")


def _schedule_conditions(facts: _Facts, run: RunStatus, schedule: ScheduleStatus | None, now: float,
                         add: Any) -> None:
    if schedule is None:
        return
    if schedule.paused:
        add("BatchSchedulePaused", "warning", "The scheduler has the job paused: no run is expected.")
    expected = facts.one("batch_schedule_last_expected_timestamp_seconds")
    grace = facts.one("batch_schedule_grace_seconds")
    watched = facts.one("batch_schedule_watched_since_timestamp_seconds")
    start = facts.one("batch_run_last_start_timestamp_seconds")
    success = facts.one("batch_run_last_success_timestamp_seconds")
    attempts = facts.one("batch_run_attempts")
    if expected is None:
        return
    # the rules' "no run (success) at all, for a start expected since the exporter began watching"
    watched_since = watched is not None and expected >= watched
    if grace is not None:  # the rules that compare with the grace fire only with its sample
        # attempts 0: the run table was read and holds no run; no sample: it was not read yet (unknown)
        started_before = start is not None and start != 0 and start < expected - grace
        if now > expected + grace and (started_before or (watched_since and attempts == 0)):
            add("BatchRunMissed", "critical",
                f"Expected to start {ago(expected, now)} and no run has started since.")
        max_duration = facts.one("batch_run_max_duration_seconds")
        success_deadline = expected + grace + (max_duration if max_duration is not None else 0.0)
        if success is not None and success != 0 and now > success_deadline and success < expected - grace:
            add("BatchNoRecentSuccess", "critical",
                f"No success since its start expected {ago(expected, now)} should have succeeded; the latest "
                f"success ended {ago(success, now)}.")
    deadline = facts.one("batch_schedule_finish_deadline_timestamp_seconds")
    if deadline is None:
        return
    succeeded = success is not None and success != 0
    if now >= deadline:  # at the deadline itself neither rule holds: at risk needs it ahead, missed past
        late_success = grace is not None and succeeded and success is not None and success < expected - grace
        if now > deadline and (late_success or (watched_since and attempts is not None and not succeeded)):
            add("BatchFinishDeadlineMissed", "critical",
                f"Not succeeded by its finish deadline, passed {ago(deadline, now)}.")
        return
    if grace is None or (success is not None and success >= expected - grace):
        return
    projected = _projected_end(facts, run, start, expected - grace, now)
    if projected is not None and projected > deadline:
        add("BatchFinishDeadlineAtRisk", "warning",
            f"At its usual pace it ends {ago(projected, now)}, after its finish deadline {ago(deadline, now)}.")


def _projected_end(facts: _Facts, run: RunStatus, start: float | None, due: float, now: float) -> float | None:
    """batch:batch_run_projected_end_timestamp_seconds: a run in progress ends at max(start + median, now)
    plus the usual spread; a start that is due and not made, as if it started now, even while another run
    (a re-run of an earlier key, yesterday's still going) is in progress."""
    median, p90 = _usual(facts, "0.5"), _usual(facts, "0.9")
    if p90 is None:
        return None
    if start is not None and start < due:
        return now + p90
    if run.running is not None and run.running > 0:
        if start is None or median is None:
            return None
        return max(start + median, now) + (p90 - median)
    return None


# --- JSON ----------------------------------------------------------------------------------------


def _when(value: Moment | None) -> dict[str, Any] | None:
    return None if value is None else value.as_json()


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _batch_json(batch: BatchStatus) -> dict[str, Any]:
    run = batch.run
    return {
        "batch": batch.batch,
        "level": batch.level,
        "time_zone": batch.time_zone,
        "conditions": [condition.as_json() for condition in batch.conditions],
        "rerun_check": batch.rerun_check,
        "rerun_check_note": batch.rerun_check_note or None,
        "run": None if not run.known and run.attempts is None else {
            "status": run.status, "code": run.code, "business_date": run.business_date,
            "attempts": run.attempts,
            "earlier_key": None if run.earlier_key is None else {
                "business_date": run.earlier_key[0], "attempts": run.earlier_key[1]},
            "idempotent": run.idempotent,
            "last_start": _when(run.last_start), "last_end": _when(run.last_end),
            "last_success": _when(run.last_success),
            "last_duration_seconds": _number(run.last_duration_seconds),
            "key_work_seconds": _number(run.key_work_seconds),
            "running": run.running, "running_seconds": _number(run.running_seconds),
            "max_duration_seconds": _number(run.max_duration_seconds), "presumed_dead": run.presumed_dead,
            "pending_records": _number(run.pending_records),
            "left_pending_records": _number(run.left_pending_records),
        },
        "schedule": None if batch.schedule is None else {
            "last_expected": _when(batch.schedule.last_expected),
            "next_expected": _when(batch.schedule.next_expected),
            "finish_deadline": _when(batch.schedule.finish_deadline), "paused": batch.schedule.paused},
        "checks": [{"check": c.check, "value": _number(c.value), "ok": c.ok} for c in batch.checks],
        "logs": [{"log": log.log, "limit_bytes": _number(log.limit_bytes), "files_matching": log.file_count,
                  "files": [{"path": f.path, "size_bytes": _number(f.size_bytes), "ratio_of_limit": _number(f.ratio),
                             "modified": _when(f.modified)} for f in log.files]} for log in batch.logs],
        "sources": [{"source": s.source, "state": s.state, "up": s.up, "polled": s.polled, "reason": s.reason,
                     "message": s.message or None, "last_success": _when(s.last_success),
                     "last_failure": _when(s.last_failure)} for s in batch.sources],
    }
