"""A fleet: the batches of a scheduler's run table, discovered from its rows and read with one statement
per poll for all of them.

Each poll reads the whole fleet's lookback window once (RunTable, as a batch's runs source does; the
rows end with the job), groups the rows by job, keeps the jobs the filter and the shard admit, and
exports for each exactly what a batch of that name with the fleet's runs section and the job's settings
would: its runs series (runsummary.summarize, runs.add_run_samples) and its configuration series
(batchinfo.BatchInfo). The latest success before the window is looked up with one grouped statement,
sent only when jobs without a success in the window appear.

The window comes ordered by job and is read batch by batch: each job's rows are fingerprinted, parsed
when they changed, and dropped before the next job's arrive, so that a poll never holds the whole
window (100,000 rows for 5,000 jobs) at once. A database whose order splits one job's rows (a
case-insensitive collation sorts "Job" and "job" together) is noticed, and the fleet then reads its
window whole, grouping it in memory, from that poll on.

What one poll may send: until the columns are known, RunTable's probes and one of the job column;
until a start time is stored, the sample; the window (twice in the poll that finds it split); the grouped
last success.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..config import CalendarConfig, FleetConfig, FleetJobSettings, FleetRunsConfig
from ..database import Database, QueryError
from ..masking import mask_cards, mask_digits
from ..run_statements import build_fleet_last_success_query, last_success_params, probe_statement
from ..runsummary import (
    Expected,
    KeyedRuns,
    RunRow,
    RunSummary,
    began_at,
    end_after,
    keyed_runs,
    parse_run_row,
    summarize_keyed,
)
from ..shards import WHOLE, Shard
from ..snapshot import Sample, SampleBuilder, Snapshot
from ..values import as_float, as_text, as_utc_datetime
from .batchinfo import BatchInfo
from .errors import SourceError, join_problems
from .run_columns import MissingColumns, describe_source
from .run_table import Query, ResolvedColumns, RunTable, TimestampsContradicted, probe_columns
from .runs import add_run_samples, later, needs_search_before_window

log = logging.getLogger(__name__)

_JOB_PROBES = 1
_WINDOW_REREADS = 1  # the poll that finds the window's order splitting a job reads it again whole


def probe_job_column(runs: FleetRunsConfig, query: Query) -> None:
    """Whether the run table or query returns columns.job (a zero-row probe): MissingColumns if not, the
    QueryError of a source that cannot be read at all."""
    try:
        query(probe_statement(runs, runs.columns.job), ())
    except QueryError as exc:
        if exc.reason != "query":
            raise
        raise MissingColumns(describe_source(runs), [("job", runs.columns.job)]) from None


def probe_fleet_columns(runs: FleetRunsConfig, query: Query) -> ResolvedColumns:
    """probe_columns, and the job column: what check-config asks of a fleet's run table."""
    resolved = probe_columns(runs, query)
    probe_job_column(runs, query)
    return resolved


class JobClaims:
    """Which batch names the exporter exports, and who exports each: the configured batches first, then the
    fleets' jobs as their polls find them. A name is exported once: a second claimant is told who has it.
    Shared by the fleets of one exporter, polled from different threads."""

    def __init__(self, batches: Iterable[str] = ()) -> None:
        # label -> (who holds it, how to name them in a log line)
        self._owners: dict[str, tuple[str, str]] = {name: (f"batch {name}", f"batch {name}") for name in batches}
        self._lock = threading.Lock()

    def claim(self, label: str, owner: str, shown: str) -> str | None:
        """Take `label` for `owner` (`shown` in logs); None when it is (now) the owner's, else who has it."""
        with self._lock:
            holder, holder_shown = self._owners.setdefault(label, (owner, shown))
        return None if holder == owner else holder_shown

    def release(self, label: str, owner: str) -> None:
        with self._lock:
            if self._owners.get(label, ("", ""))[0] == owner:
                del self._owners[label]


@dataclass
class FleetJob:
    """One job of a fleet as its polls know it."""

    name: str  # as the run table holds it
    label: str  # its batch label: card-like digits masked
    settings: FleetJobSettings
    info: BatchInfo
    watching_since: float
    last_run: datetime | None = None  # when the latest run the window showed began
    latest_success: datetime | None = None
    searched: bool = False  # its latest success before the window was looked up
    samples: tuple[Sample, ...] = field(default_factory=tuple)  # of its last good poll
    # what they were made of: its runs series and what they follow from, its BatchInfo's (_InfoTemplates)
    run_samples: int = 0  # how many of `samples` are runs series, the first ones
    runs_input: tuple[RunSummary, datetime | None] | None = None
    info_template: tuple[Sample, ...] | None = None
    # its window's rows as last read: a fingerprint of the raw rows, and what they parsed to
    fingerprint: Fingerprint | None = None
    runs: KeyedRuns | None = None


_STATUS = 2  # the status code's position in a window row (run_statements.WINDOW_FIELDS)

Fingerprint = tuple[int, tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class JobWindow:
    """One job's rows in this poll's window, kept only as far as the poll needs them: their fingerprint and
    what they parsed to, or `unchanged` (the job's runs of its last poll stand), or why they cannot be
    parsed."""

    fingerprint: Fingerprint | None = None
    runs: KeyedRuns | None = None
    last_run: datetime | None = None  # when the latest of these runs began
    unchanged: bool = False
    error: ValueError | None = None


class WindowSplit(Exception):
    """A job's rows came in two stretches: the database orders job names by a collation under which two
    different names are equal."""


class JobStretches:
    """Takes the window's rows in the order read, and hands each job's rows to `finish` when the next job's
    begin (rows of jobs that `admits` refuses are dropped as they come). WindowSplit when an admitted
    job's rows begin again after another job's."""

    def __init__(self, admits: Callable[[str], bool], finish: Callable[[str, list[tuple[object, ...]]], None]) -> None:
        self._admits = admits
        self._finish = finish
        self._job: str | None = None
        self._kept = False  # whether the current job's rows are kept
        self._rows: list[tuple[object, ...]] = []
        self.seen: set[str] = set()
        self.without_job = 0

    def take(self, raw: tuple[object, ...]) -> None:
        try:
            job = as_text(raw[-1])
        except ValueError:
            job = None
        if not job:
            self.without_job += 1
            return
        if job != self._job:
            self.close()
            self._job, self._kept = job, self._admits(job)
            if self._kept:  # a job left out may come in stretches: its rows are dropped anyway
                if job in self.seen:
                    raise WindowSplit(job)
                self.seen.add(job)
        if self._kept:
            self._rows.append(raw)

    def close(self) -> None:
        """The last job's rows are all read (the window ended, or another job's began)."""
        if self._job is not None and self._kept:
            rows, self._rows = self._rows, []
            self._finish(self._job, rows)
        self._job, self._kept = None, False


def _fingerprint(raws: list[tuple[object, ...]]) -> Fingerprint | None:
    """A hash of a job's raw rows in any order (the window is ordered by job only, and a database returns
    one job's rows in whatever order its sort or plan gives), with their status codes as they are
    (CPython hashes -1 and -2 alike, and a status code may be either); None when a value cannot be
    hashed (a driver type without one) or two codes of one hash cannot be ordered: such rows are parsed
    every poll."""
    try:
        ordered = sorted([(hash(raw), _shared(raw[_STATUS])) for raw in raws])
    except TypeError:
        return None
    return hash(tuple([row_hash for row_hash, _ in ordered])), tuple([code for _, code in ordered])


def _shared(code: object) -> object:
    """One copy of a text status code however many rows hold it (the driver makes one per row)."""
    return sys.intern(code) if type(code) is str else code


_TEMPLATE_BATCH = "\0batch"  # the batch label of a BatchInfo's template series, replaced by each job's


def _with_batch(template: tuple[Sample, ...], label: str) -> tuple[Sample, ...]:
    """The template's series for the job `label`: samples with the same labels share them (memory)."""
    pair = ("batch", label)
    relabelled: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
    out = []
    for sample in template:
        labels = relabelled.get(sample.labels)
        if labels is None:
            labels = relabelled[sample.labels] = tuple([pair if key == "batch" else (key, value)
                                                        for key, value in sample.labels])
        out.append(Sample(sample.name, labels, sample.value))
    return tuple(out)


class _InfoTemplates:
    """The series of each BatchInfo at one poll's time, batch label left to fill in: made once for all the
    jobs that share it and their watching time, and the previous poll's own object when they are the same
    (a job whose runs series are unchanged too keeps its series then)."""

    def __init__(self, previous: Mapping[tuple[int, float], tuple[Sample, ...]], now: datetime) -> None:
        self._previous = previous
        self._now = now
        self.made: dict[tuple[int, float], tuple[Sample, ...]] = {}

    def of(self, info: BatchInfo, watching_since: float) -> tuple[Sample, ...]:
        key = (id(info), watching_since)  # a source's BatchInfos live as long as it does
        found = self.made.get(key)
        if found is None:
            out = SampleBuilder()
            info.add_samples(out, _TEMPLATE_BATCH, watching_since, self._now)
            found = out.build("").samples
            before = self._previous.get(key)
            self.made[key] = found = before if before == found else found
        return found


class FleetSource:
    """Polls a fleet's run table: one window statement for all its jobs."""

    def __init__(self, fleet: str, config: FleetConfig, db: Database, *,
                 calendars: Mapping[str, CalendarConfig] | None = None, claims: JobClaims | None = None,
                 shard: Shard | None = None, text_timestamps: bool = False, clock: Callable[[], float] = time.time,
                 locate: Callable[[tuple[str, ...]], str] | None = None,
                 watching_since: Mapping[str, float] | None = None) -> None:
        self.name = f"fleet:{fleet}"
        self.fleet = fleet
        self._config = config
        self._calendars = calendars or {}
        self._claims = claims or JobClaims()
        self.shard = shard or config.shard_spec or WHOLE
        self._query = db.query
        self._query_batches = db.query_batches
        self._table = RunTable(f"fleet {fleet}", config.runs, None, db.query, text_timestamps=text_timestamps)
        self._clock = clock
        self._locate = locate or (lambda path: ".".join(path))
        self._lookback = timedelta(seconds=config.runs.lookback)
        self._mapping = config.runs.status.model_dump()
        self._handed_over = dict(watching_since or {})
        self._job_column_checked = False
        self._infos: dict[str, BatchInfo] = {}  # by the settings they stand for
        self._info_templates: Mapping[tuple[int, float], tuple[Sample, ...]] = {}  # of the last poll
        self._jobs: dict[str, FleetJob] = {}
        self._since: Mapping[str, float] = {}  # replaced whole by each poll: read from other threads
        self._refused: set[str] = set()  # jobs left out at run time (a name taken), warned about once
        self._warned_without_job = False
        self._read_whole = False  # the window's order splits jobs: read it whole (see WindowSplit)

    @property
    def max_statements_per_poll(self) -> int:
        """The most statements any poll sends (the first, which probes the columns too): for its deadline."""
        return self._table.max_statements_per_poll(first_poll=True) + _JOB_PROBES + _WINDOW_REREADS

    def watching_since(self) -> dict[str, float]:
        """When this source began watching each job it exports, by job name: kept across reloads."""
        return dict(self._since)

    def admits(self, job: str) -> bool:
        """Whether the fleet's filter and this exporter's shard take the job."""
        return self._config.jobs.admits(job) and self.shard.takes(job)

    def poll(self) -> Snapshot:
        """Read the fleet's window once and summarise each job; raises SourceError on failure, with the
        other jobs' fresh series when only some jobs' rows cannot be read."""
        clock = self._clock()
        now = datetime.fromtimestamp(clock, tz=UTC)
        if not self._job_column_checked:
            self._resolve_columns()
        try:
            windows = self._window(now - self._lookback)
        except SourceError as exc:
            raise SourceError(exc.reason, str(exc), self._schedules_moved_on(now)) from None
        jobs = self._current_jobs(windows, clock, now)
        problems: list[str] = []
        summaries: dict[str, RunSummary] = {}
        expected: dict[int, Expected | None] = {}  # by BatchInfo: worked out once for the jobs that share one
        for job in jobs:
            try:
                runs = self._runs_of(job, windows.pop(job.name, None))
            except ValueError as exc:
                problems.append(f"job {job.label}: runs row: {exc}")
                continue
            if id(job.info) not in expected:
                expected[id(job.info)] = job.info.expected(now)
            summaries[job.name] = summarize_keyed(runs, now, self._table.key_tz, job.settings.max_duration,
                                                  expected[id(job.info)])
        del windows
        problems += self._search_before_window(jobs, summaries)
        fresh: list[Sample] = []
        templates = _InfoTemplates(self._info_templates, now)
        for job in jobs:
            summary = summaries.get(job.name)
            if summary is not None:
                job.latest_success = later(job.latest_success, summary.last_success, summary.passed_over)
                self._refresh_samples(job, summary, templates.of(job.info, job.watching_since))
            fresh += job.samples
        self._info_templates = templates.made
        fleet = SampleBuilder()
        fleet.add("batch_exporter_fleet_jobs", len(jobs), fleet=self.fleet)
        fleet.add("batch_exporter_fleet_shard", self.shard.count, fleet=self.fleet, shard=str(self.shard.index))
        snapshot = Snapshot(self.name, tuple(fresh) + fleet.build(self.name).samples)
        self._since = {job.name: job.watching_since for job in jobs}
        if problems:
            raise SourceError("data", f"fleets.{self.fleet}: {join_problems(problems)}", snapshot)
        return snapshot

    def _schedules_moved_on(self, now: datetime) -> Snapshot | None:
        """When the window cannot be read (the scheduler's database is down): each job's runs series as last
        read, with its schedule and configuration series worked out afresh, as a batch's config source goes
        on without its database, so that a start expected during the outage still pages as missed. None
        before any job is known."""
        if not self._jobs:
            return None
        templates = _InfoTemplates(self._info_templates, now)
        moved: list[Sample] = []
        for name in sorted(self._jobs):
            job = self._jobs[name]
            moved += job.samples[:job.run_samples] + _with_batch(templates.of(job.info, job.watching_since), job.label)
        fleet = SampleBuilder()
        fleet.add("batch_exporter_fleet_jobs", len(self._jobs), fleet=self.fleet)
        fleet.add("batch_exporter_fleet_shard", self.shard.count, fleet=self.fleet, shard=str(self.shard.index))
        return Snapshot(self.name, tuple(moved) + fleet.build(self.name).samples)

    def _refresh_samples(self, job: FleetJob, summary: RunSummary, info: tuple[Sample, ...]) -> None:
        """The job's series from its summary and its BatchInfo's template: those of its last poll, or the
        part of them that is unchanged (most jobs of a fleet did not run between two polls)."""
        runs_input = (summary, job.latest_success)
        if job.runs_input != runs_input:
            out = SampleBuilder()
            add_run_samples(out, job.label, summary, job.latest_success, self._config.runs.min_history)
            runs = out.build(self.name).samples
            job.run_samples, job.runs_input = len(runs), runs_input
        elif info is job.info_template:
            return
        else:
            runs = job.samples[:job.run_samples]
        job.info_template = info
        job.samples = runs + _with_batch(info, job.label)

    # --- reading ----------------------------------------------------------------------------------------

    def _resolve_columns(self) -> None:
        """Once per source start: the columns the source really returns, the job's too."""
        try:
            resolved = self._table.columns()
            probe_job_column(self._config.runs, self._query)
        except MissingColumns as exc:
            where = self._locate(("fleets", self.fleet, "runs", "columns", exc.missing[0][0]))
            raise SourceError("query", f"{where}: {exc}") from None
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        self._job_column_checked = True
        if resolved.business_date_note is not None:
            log.warning("fleet %s: %s", self.fleet, resolved.business_date_note)

    def _window(self, start: datetime) -> dict[str, JobWindow]:
        """The window's rows of each job the filter and the shard admit, as far as the poll needs them."""
        windows: dict[str, JobWindow] = {}

        def finish(job: str, raws: list[tuple[object, ...]]) -> None:
            windows[job] = self._window_of(job, raws)

        stretches = JobStretches(self.admits, finish)
        try:
            try:
                if not self._read_whole:
                    self._table.each_window_row(start, stretches.take, self._query_batches)
                    stretches.close()
            except WindowSplit as split:
                self._read_whole = True
                log.warning("fleet %s: the database returns the rows of job %s in two stretches of the window "
                            "ordered by job (its collation takes different names as equal): the window is "
                            "read whole from now on, which holds all its rows in memory during a poll",
                            self.fleet, mask_digits(str(split)))
            if self._read_whole:
                windows.clear()
                stretches = JobStretches(self.admits, finish)
                self._window_in_memory(start, stretches)
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        except TimestampsContradicted as exc:
            raise SourceError("data", f"fleets.{self.fleet}.runs.timestamps: {exc}") from None
        except ValueError as exc:  # UnreadableRow
            raise SourceError("data", f"fleets.{self.fleet}: runs row: {exc}") from None
        if stretches.without_job and not self._warned_without_job:
            self._warned_without_job = True
            log.warning("fleet %s: %d rows of the window have no job (columns.job is NULL, blank or not text): "
                        "they belong to no job and are not counted (logged once)", self.fleet,
                        stretches.without_job)
        return windows

    def _window_in_memory(self, start: datetime, stretches: JobStretches) -> None:
        """The window read whole and grouped by job, each job's rows handed to `stretches` together."""
        by_job: dict[str | None, list[tuple[object, ...]]] = {}
        for raw in self._table.window(start):
            try:
                job = as_text(raw[-1])
            except ValueError:
                job = None
            by_job.setdefault(job or None, []).append(raw)
        for job in sorted(by_job, key=lambda name: name or ""):
            for raw in by_job.pop(job):
                stretches.take(raw)
        stretches.close()

    def _window_of(self, name: str, raws: list[tuple[object, ...]]) -> JobWindow:
        """A job's rows in this window: `unchanged` when they are the same raw rows as at its last poll
        (most jobs of a fleet did not run between two polls), else parsed."""
        fingerprint = _fingerprint(raws)
        job = self._jobs.get(name)
        if job is not None and job.runs is not None and fingerprint is not None and fingerprint == job.fingerprint:
            return JobWindow(fingerprint, unchanged=True)
        try:
            rows = [self._row(raw) for raw in raws]
            runs = keyed_runs(rows, self._table.key_tz)
        except ValueError as exc:
            return JobWindow(error=exc)
        last_run = max((moment for moment in map(began_at, rows) if moment is not None), default=None)
        return JobWindow(fingerprint, runs, last_run)

    def _runs_of(self, job: FleetJob, window: JobWindow | None) -> KeyedRuns:
        """The job's runs in this window (None: it has no rows in it); ValueError for a row that cannot be
        parsed."""
        if window is None:
            window = self._window_of(job.name, [])
        if window.unchanged:
            assert job.runs is not None  # unchanged is said only of parsed runs
            return job.runs
        if window.error is not None or window.runs is None:
            job.fingerprint, job.runs = None, None  # until its rows parse
            raise window.error or ValueError("its rows were not parsed")
        job.last_run = window.last_run or job.last_run
        job.fingerprint, job.runs = window.fingerprint, window.runs
        return window.runs

    def _row(self, raw: tuple[object, ...]) -> RunRow:
        return parse_run_row(raw, self._mapping, self._table.tz, slot_keys=self._table.slot_keys,
                             key_tz=self._table.key_tz)[0]

    # --- which jobs -------------------------------------------------------------------------------------

    def _current_jobs(self, windows: Mapping[str, object], clock: float, now: datetime) -> list[FleetJob]:
        """The jobs exported this poll, by name: those with runs in the window, those named under overrides,
        and those whose latest run left the window less than a lookback ago (it began less than two
        lookbacks ago); a new one's name claimed first, in name order."""
        for name in sorted(windows):
            if name not in self._jobs:
                self._adopt(name, clock)
        for name in self._config.overrides:
            if name not in self._jobs and self.admits(name):
                self._adopt(name, clock)
        for name, job in list(self._jobs.items()):
            if name in windows or name in self._config.overrides or job.last_run is None:
                continue
            if now - job.last_run >= 2 * self._lookback:
                log.info("fleet %s: job %s: its latest run left the window a lookback ago; no longer exported",
                         self.fleet, job.label)
                del self._jobs[name]
                self._claims.release(job.label, self._owner(name))
        return [self._jobs[name] for name in sorted(self._jobs)]

    def _adopt(self, name: str, clock: float) -> FleetJob | None:
        """A job seen for the first time, or None when its batch name is already exported (warned once; it is
        asked again at each poll, and exported once the name is free: the other fleet dropped it)."""
        label = job_label(name)
        holder = self._claims.claim(label, self._owner(name), f"fleet {self.fleet} (job {label})")
        if holder is not None:
            if name not in self._refused:
                self._refused.add(name)
                log.warning("fleet %s: job %s is left out: its batch name %r is already exported by %s; exclude "
                            "it from the fleet (jobs.exclude) or rename one of them", self.fleet, label, label, holder)
            return None
        if name in self._refused:
            self._refused.discard(name)
            log.info("fleet %s: job %s: its batch name is free now; exported from now on", self.fleet, label)
        settings = self._config.settings_of(name)
        job = FleetJob(name, label, settings, self._info_of(name, settings),
                       watching_since=self._handed_over.get(name, clock))
        self._jobs[name] = job
        return job

    def _owner(self, name: str) -> str:
        """Who holds a job's name: two names masked alike are two owners (the log shows the masked one)."""
        return f"fleet {self.fleet}\0{name}"

    def _info_of(self, name: str, settings: FleetJobSettings) -> BatchInfo:
        """Jobs with the same settings share one BatchInfo, and so the work of its schedule and calendar."""
        key = settings.model_dump_json()
        info = self._infos.get(key)
        if info is None:
            info = BatchInfo(self._config.as_batch(settings), self._calendars,
                             subject=f"fleet {self.fleet!r}, job {mask_digits(name)!r}")
            self._infos[key] = info
        return info

    # --- the latest success before the window -----------------------------------------------------------

    def _search_before_window(self, jobs: list[FleetJob], summaries: Mapping[str, RunSummary]) -> list[str]:
        """One grouped statement for every job whose window holds no success and that was not looked up yet
        (new jobs: at most once per change of the job set); the problems of rows it cannot read."""
        waiting = [job for job in jobs if job.name in summaries and needs_search_before_window(
            summaries[job.name].last_success, window_has_success=summaries[job.name].by_status["success"] > 0,
            searched=job.searched)]
        if not waiting:
            return []
        runs = self._config.runs
        try:
            found = self._query(build_fleet_last_success_query(runs), last_success_params(runs))
        except QueryError as exc:
            raise SourceError(exc.reason, str(exc)) from None
        wanted = {job.name: job for job in waiting}
        problems: list[str] = []
        for row in found:
            try:
                name = as_text(row[0])
                job = wanted.get(name or "")
                if job is None:
                    continue
                moment = as_utc_datetime(row[1], self._table.tz, epoch_unit=self._table.epoch_unit)
                if moment is not None and runs.columns.duration is not None:
                    moment = end_after(moment, as_float(row[2]) or 0.0)
            except ValueError as exc:
                problems.append(f"the latest success before the window, job {mask_digits(str(row[0]))}: {exc}")
                continue
            job.latest_success = later(job.latest_success, moment)
        for job in waiting:
            job.searched = True
        return problems


MAX_JOB_LABEL = 200


def job_label(name: str) -> str:
    """A job's batch label: its name with card numbers masked (13-19 Luhn-valid digits, as in log path
    labels: mask_digits would mask a dated name such as job-20261128-0001 and give every night's job the
    same label), at most MAX_JOB_LABEL characters (a longer one is cut; two names cut alike are two
    claimants, and the second is left out with a warning)."""
    return mask_cards(name)[:MAX_JOB_LABEL]
