"""Configuration: pydantic models for the YAML file, and loading with located, readable errors.

Shape checks (types, units, unknown keys) are pydantic's; meaning checks (a batch naming an unknown
database, a write statement, a bad cron) run afterwards. Both report `file:line: dotted.path: message`.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from .business_calendar import LOOKAHEAD_DAYS, WEEKDAYS, BusinessCalendar, CalendarSchedule, Skip, calendar_problems
from .database import odbc_dialect
from .finish_by import CHECKED_YEAR, FinishBy, late_deadline, latest_start_of_day
from .masking import mask_cards
from .presets import expand as expand_preset
from .run_statements import (
    build_fleet_last_success_query,
    build_last_success_query,
    build_sample_query,
    build_window_query,
    probe_statement,
)
from .schedule import CronSchedule, ScheduleError
from .shards import Shard, parse_shard
from .sqlcheck import StatementError, check_read_only
from .tailing.encoding import resolve as resolve_encoding
from .units import DURATION_HINT, SIZE_HINT, parse_duration, parse_size
from .values import TimestampStorage, as_text
from .yamlsource import (
    Located,
    LocatedError,
    Path_,
    Problem,
    YamlProblem,
    dotted_path,
    expand_references,
    read_text,
    read_yaml,
)

# --- small reusable types -------------------------------------------------------------------------

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": ["string", "number"], "description": DURATION_HINT}),
]
ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"type": ["string", "integer"], "description": SIZE_HINT}),
]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}: expected an IANA name such as UTC or Asia/Tokyo") from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def _encoding(value: str) -> str:
    try:
        resolve_encoding(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; expected e.g. utf-8, cp932, shift_jis, utf-16") from None
    return value


def _unquoted_time(value: object) -> object:
    """YAML 1.1 reads an unquoted 12:30 as the base-60 number 750: say so instead of 'not a string'."""
    if isinstance(value, int) and not isinstance(value, bool):
        hint = f": finish_by: '{value // 60:02d}:{value % 60:02d}'" if 0 <= value < 24 * 60 else ""
        raise ValueError(f"an unquoted time is a number in YAML (base 60: 12:30 is 750); quote it{hint}")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain column or table name (letters, digits, _ and one optional "
                         "schema prefix); use runs.query for anything more complex")
    return value


_EXPRESSION_FORBIDDEN = {";": "a ';' (one statement only)", "--": "a '--' comment", "/*": "a '/*' comment",
                         "#": "a '#' (a comment in MySQL and MariaDB)",
                         "?": "a '?' (the placeholders are the exporter's)"}
# SQLite's :name, @name and $name, SQL Server's @variables, PostgreSQL's $1 and $$ quoting (a cast's
# `::type` is no parameter)
_NAMED_PARAMETER = re.compile(r"(?<!:):(?!:)[A-Za-z_]\w*|@\w+|\$")


def _column_expression(value: str) -> str:
    """A column name, or a SQL expression over the source's columns (a time zone conversion, a COALESCE):
    it becomes part of the statements sent, which are checked as a whole (sqlcheck) like any query."""
    text = value.strip()
    if not text:
        raise ValueError("expected a column name or a SQL expression, got an empty text")
    if len(text) > 1000:
        raise ValueError(f"expected at most 1000 characters, got {len(text)}")
    for token, what in _EXPRESSION_FORBIDDEN.items():
        if token in text:
            raise ValueError(f"{text[:80]!r} contains {what}; a column expression is one SQL expression")
    named = _NAMED_PARAMETER.search(text)
    if named:
        raise ValueError(f"{text[:80]!r} contains {named.group(0)!r}, a parameter or variable some databases "
                         "bind; a column expression is one SQL expression (use runs.query for more)")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ValueError(f"{text[:80]!r} has unbalanced parentheses")
    return text


def _shard(value: str) -> str:
    parse_shard(value)
    return value


# string literals and quoted identifiers of the dialects, quotes doubled inside; an unclosed one runs to the end
_QUOTED = re.compile(r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|\[[^\]]*\]?|`(?:[^`]|``)*`?")


def _where_condition(value: str) -> str:
    """runs.where is put inside parentheses in the statements built from it: a condition that closes them
    (`1=1) OR (1=1`) or comments out the rest (`--`) would remove the lookback bound, or break every poll."""
    text = value.strip()
    bare = _QUOTED.sub(" ", text)  # a ';' or '(' inside 'a literal', "a name", [a name] or `a name` is text
    for token, what in _EXPRESSION_FORBIDDEN.items():
        if token in bare:
            raise ValueError(f"{text[:80]!r} contains {what}; 'where' is one condition (use runs.query for more)")
    depth = 0
    for char in bare:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ValueError(f"{text[:80]!r} closes a parenthesis it did not open; 'where' is one condition")
    if depth != 0:
        raise ValueError(f"{text[:80]!r} has unbalanced parentheses")
    return text


TimeZoneName = Annotated[str, AfterValidator(_timezone)]
ShardText = Annotated[str, AfterValidator(_shard)]
Regex = Annotated[str, AfterValidator(_regex)]
Encoding = Annotated[str, AfterValidator(_encoding)]
Identifier = Annotated[str, AfterValidator(_identifier)]
ColumnExpression = Annotated[str, AfterValidator(_column_expression)]
# Anchored: pydantic searches a pattern anywhere in the text, so "my batch" would match "my".
Name = Annotated[str, Field(pattern=f"^{_NAME_RE.pattern}$")]
NAME_RULE = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"


def _between(low: float, high: float, shown: str) -> AfterValidator:
    """Refuse a value outside [low, high]; `shown` is the range in the words of the config file."""
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {shown}")
        return value
    return AfterValidator(check)


# Below 1s a poll is a busy loop; above 1h an alert would wait hours to see a stuck batch.
PollInterval = Annotated[Duration, _between(1, 3600, "1s and 1h")]
POLL_RANGE = "1s to 1h"
# A line is held in memory whole up to this size, once per followed file.
LineBytes = Annotated[ByteSize, _between(256, 16 * 1024**2, "256B and 16MiB")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- the configuration shape ----------------------------------------------------------------------


class GlobalConfig(_Model):
    poll_interval: PollInterval = Field(
        30.0, description=f"How often database sources are polled; {POLL_RANGE}, 30s by default."
    )
    log_poll_interval: PollInterval = Field(
        10.0, description=f"How often log sources are polled; {POLL_RANGE}, 10s by default."
    )
    state_dir: str | None = Field(
        None, description="Folder for the log read positions, created if missing. Default: "
                          "$BATCH_EXPORTER_STATE_DIR, else /var/lib/batch-exporter (systemd StateDirectory= or "
                          "root), %ProgramData%\\batch-exporter\\state on Windows, "
                          "~/.local/state/batch-exporter ($XDG_STATE_HOME) for other users.")
    max_series: int = Field(
        200_000, ge=100, le=10_000_000,
        description="Cap on the series of one exposition: past it, whole sources are left out (the exporter's own "
                    "health series never), batch_exporter_series_dropped says which, and BatchExporterSeriesCapReached "
                    "warns. 200000 by default (about 2,000 fully configured batches).")


class DatabaseConfig(_Model):
    sqlite: str | None = Field(None, description="Path of a SQLite file, opened read-only.")
    odbc: str | None = Field(None, description="ODBC connection string (pyodbc); use ${VAR} for the password.")
    query_timeout: Duration = Field(10.0, ge=0.1, le=3600, description="Longest a query may run (100ms to 1h; "
                                                                        "it becomes the server's statement timeout).")
    connect_timeout: Duration = Field(5.0, ge=0.1, le=300, description="Longest a connection attempt may take "
                                                                       "(100ms to 5m).")
    max_connections: int = Field(2, ge=1, le=32, description="Connections (and polling threads) the exporter "
                                                             "opens to this database at most.")

    @model_validator(mode="after")
    def _one_driver(self) -> DatabaseConfig:
        if (self.sqlite is None) == (self.odbc is None):
            raise ValueError("expected exactly one of 'sqlite' (a file path) or 'odbc' (a connection string)")
        if self.odbc is not None:
            odbc_dialect(self.odbc)  # a malformed string fails here, located; the message never quotes it
        return self


class RunColumns(_Model):
    """Where each field of a run comes from: a column name or a SQL expression over the source's columns."""

    run_id: ColumnExpression = "run_id"
    business_date: ColumnExpression | None = Field(
        None, description="The business date a run works on; a timestamp is cut to its date in runs.timezone. "
                          "Attempts are the runs of one business date.")
    run_key: ColumnExpression | None = Field(
        None, description="Instead of business_date: the scheduled slot a run belongs to, a date or a timestamp "
                          "(read in runs.timezone) kept whole, for schedules that run more than once a day.")
    status: ColumnExpression = "status"
    started_at: ColumnExpression = "started_at"
    ended_at: ColumnExpression = "ended_at"
    attempt: ColumnExpression | None = Field(
        None, description="The attempt's number within its run key (1 for the first), where the scheduler keeps "
                          "a counter on one row instead of a row per attempt (Airflow: clear_number + 1).")
    queued_at: ColumnExpression | None = Field(
        None, description="When a run without a start was queued: such runs are windowed on it.")
    duration: ColumnExpression | None = Field(
        None, description="Seconds a run took, where the table keeps no end time: the end is the start plus "
                          "this (ended_at is then not read).")

    @model_validator(mode="after")
    def _one_key(self) -> RunColumns:
        if self.business_date is not None and self.run_key is not None:
            raise ValueError("map either business_date or run_key, not both")
        return self

    @property
    def key(self) -> str | None:
        """The column or expression that gives a run's key, when one is mapped."""
        return self.run_key if self.run_key is not None else self.business_date


class StatusMap(_Model):
    success: list[str] = Field(min_length=1)
    failed: list[str] = Field(min_length=1)
    running: list[str] = Field(default_factory=list)
    queued: list[str] = Field(default_factory=list, description="Runs waiting to start (a scheduler's queue).")

    @model_validator(mode="before")
    @classmethod
    def _text_values(cls, data: Any) -> Any:
        # status codes are often numeric in the DB (0, 1, 9): compare them as text, normalised the way
        # values read from the DB are (1.0 and Decimal('1') both become '1')
        if isinstance(data, dict):
            return {k: [as_text(v) for v in vals] if isinstance(vals, list) else vals for k, vals in data.items()}
        return data

    @model_validator(mode="after")
    def _disjoint(self) -> StatusMap:
        seen: dict[str, str] = {}
        for kind in ("success", "failed", "running", "queued"):
            for value in getattr(self, kind):
                if value in seen:
                    raise ValueError(f"status value {value!r} is listed under both {seen[value]} and {kind}")
                seen[value] = kind
        return self


class RunsConfig(_Model):
    table: Identifier | None = Field(None, description="The run table; or give `query`.")
    query: str | None = Field(None, description="A SELECT returning the mapped columns, instead of `table`.")
    where: Annotated[str, AfterValidator(_where_condition)] | None = Field(
        None, description="Extra SQL condition on the run table (e.g. job_name = 'x'): one condition, without "
                          "comments, ';' or '?'.")
    columns: RunColumns = Field(default_factory=RunColumns)
    status: StatusMap
    lookback: Duration = 14 * 86400.0
    timezone: TimeZoneName = Field("UTC", description="How naive timestamps in the DB are to be read.")
    key_timezone: TimeZoneName | None = Field(
        None, description="The time zone run keys, dates and rerun-check's times are given in, when it differs "
                          "from `timezone` (a scheduler that stores UTC for a DAG that lives in Asia/Tokyo).")
    min_history: int = Field(
        5, ge=3, le=1000, description="Successful runs in the lookback window needed before the usual duration "
                                      "is exported and the alerts that compare with it can fire.")
    timestamps: TimestampStorage = Field(
        "auto", description="How started_at/ended_at are stored: auto (TIMESTAMP, DATETIME, DATETIME2, ISO text; "
                            "numbers as epoch seconds), epoch_seconds or epoch_milliseconds (integer columns).")

    @model_validator(mode="after")
    def _table_or_query(self) -> RunsConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("expected exactly one of 'table' or 'query'")
        if self.where is not None and self.query is not None:
            raise ValueError("'where' applies to 'table'; put the condition inside 'query' instead")
        if self.lookback <= 0:
            raise ValueError("lookback must be greater than 0")
        return self


class RecordsConfig(_Model):
    query: str = Field(description="SELECT state, COUNT(*) ... WHERE run_id = ? GROUP BY state")
    pending_states: list[str] = Field(default_factory=list)
    max_states: int = Field(20, ge=1, le=200, description="Cap on distinct state values exported.")
    done_states: list[str] | None = Field(
        None, description="States that mean work done (rerun-check: what a re-run would repeat); by default "
                          "every state that is not pending. Airflow's task instances: [success].")
    rerun_unfinished: str | None = Field(
        None, description="A command that re-runs only an attempt's unfinished work, leaving the done rows "
                          "alone ({key} is replaced by the run key), e.g. Airflow's `tasks clear --only-failed`; "
                          "rerun-check then tells it instead of a full re-run.")


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DayRule = Literal["every-business-day", "first-business-day-of-month", "last-business-day-of-month",
                  "business-day-after-holiday"]


def _weekend_default() -> list[Weekday]:
    return ["sat", "sun"]


class CalendarConfig(_Model):
    """Which days a business works: not its weekend, not a public holiday, not a date it closes."""

    country: str | None = Field(
        None, description="ISO 3166-1 code whose holidays close the day, from the `holidays` library (JP, US, "
                          "DE...); none: only the weekend and `closed`.")
    subdivision: str | None = Field(None, description="A state or prefecture of `country` (the library's code).")
    categories: list[str] = Field(
        default_factory=lambda: ["public"],
        description="The library's holiday categories, e.g. [public, bank] for Japan's bank holidays "
                    "(31 December to 3 January).")
    weekend: list[Weekday] = Field(default_factory=_weekend_default)
    closed: list[date] = Field(default_factory=list, description="Extra closed dates (YYYY-MM-DD).")
    open: list[date] = Field(default_factory=list,
                             description="Dates open although a weekend or holiday (YYYY-MM-DD); win over all.")


class ScheduleConfig(_Model):
    cron: str | None = Field(None, description="Five-field cron expression of the expected start; or give "
                                               "`query`.")
    query: str | None = Field(
        None, description="Instead of cron, where the scheduler keeps its own plan: a SELECT returning one row "
                          "(the latest start the scheduler has already planned, the next one it will plan, which "
                          "may be overdue, and 1 when the job is paused), e.g. from Airflow's dag table.")
    timezone: TimeZoneName = Field("UTC", description="The cron's time zone; how the query's naive times are read.")
    grace: Duration = 15 * 60.0
    calendar: Name | None = Field(
        None, description="A name under `calendars`: the cron then fires only on the days `days` picks among "
                          "the calendar's business days (local dates in `timezone`). With `cron` only.")
    days: DayRule | None = Field(
        None, description="Which business days, with `calendar`: every-business-day (the default), "
                          "first-business-day-of-month, last-business-day-of-month, or business-day-after-holiday "
                          "(the first business day after closed days that include a holiday or a closed date).")
    finish_by: Annotated[str | None, BeforeValidator(_unquoted_time)] = Field(
        None, description="When the expected run's work must have succeeded: a wall time in `timezone` on the "
                          "day of its expected start, 'HH:MM', or on a later day, 'HH:MM +N days' (e.g. "
                          "'06:00', '01:30 +1 day').")

    @model_validator(mode="after")
    def _cron_or_query(self) -> ScheduleConfig:
        if (self.cron is None) == (self.query is None):
            raise ValueError("expected exactly one of 'cron' or 'query'")
        return self


class CheckConfig(_Model):
    query: str = Field(description="A SELECT returning one number (first column of the first row).")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> CheckConfig:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        return self


class LogConfig(_Model):
    path: str = Field(description="File path or glob (wildcards in the file name part).")
    size_limit: ByteSize = Field(4 * 1024**3, description="Size at which the writer is known to stop or "
                                                          "misbehave; 4GiB by default (the 32-bit offset cap).")
    encoding: Encoding = "utf-8"
    patterns: dict[Name, Regex] = Field(default_factory=dict)
    max_line_bytes: LineBytes = Field(
        1024**2, description="Longest line kept whole (longer lines are counted as oversized and matched on "
                             "their start); 256B to 16MiB, 1MiB by default. Held in memory once per file."
    )
    max_path_series: int = Field(20, ge=1, le=1000)
    follow_symlinks: bool = Field(True, description="False: a file name that is a symbolic link is no log "
                                                    "file, so its target (perhaps outside the folder) is "
                                                    "never read; see docs/logs.md.")
    poll_interval: PollInterval | None = Field(
        None, description=f"How often this log is polled, instead of global.log_poll_interval; {POLL_RANGE}."
    )


class BatchConfig(_Model):
    preset: dict[str, Any] | None = Field(
        None, description="Generate runs, records and schedule from a scheduler's own tables: "
                          "{name: airflow, dag_id: ..., version: 3, timezone: ...} or {name: sqlserver-agent, "
                          "job_name: ..., timezone: ...}; keys written in those sections win. See docs/presets/.")
    database: str | None = None
    poll_interval: PollInterval | None = Field(
        None, description=f"How often this batch's database sources are polled, instead of "
                          f"global.poll_interval; {POLL_RANGE}."
    )
    runs: RunsConfig | None = None
    records: RecordsConfig | None = None
    schedule: ScheduleConfig | None = None
    max_duration: Duration | None = None
    idempotent: bool = Field(False, description="True only when a re-run can never do harm.")
    checks: dict[Name, CheckConfig] = Field(default_factory=dict, description=f"Check names: {NAME_RULE}.")
    logs: dict[Name, LogConfig] = Field(default_factory=dict, description=f"Log names: {NAME_RULE}.")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        return expand_preset(data) if isinstance(data, dict) else data


# --- fleets: the batches of a scheduler's run table, discovered from its rows -----------------------

_NOT_FOR_FLEET_JOBS = ("records", "checks", "logs", "preset")
MAX_JOB_NAME = 200


def _refuse_batch_only_keys(data: Any) -> Any:
    """A fleet reads one statement per poll for all its jobs: nothing per job. Say so, rather than
    'unknown field', for the sections a batch has and a fleet job cannot."""
    if isinstance(data, dict):
        for key in _NOT_FOR_FLEET_JOBS:
            if key in data:
                raise ValueError(f"{key!r} is not read for the jobs of a fleet (one statement per poll for the "
                                 "whole fleet); configure a job that needs it as a batch and exclude it from the "
                                 "fleet (jobs.exclude)")
    return data


class FleetRunColumns(RunColumns):
    job: ColumnExpression = Field(
        description="The job a run belongs to (a column or an expression): its value is the batch label of "
                    "the job's series, and what jobs.include, jobs.exclude, overrides and shards match.")


class FleetRunsConfig(RunsConfig):
    """A batch's runs section read for every job of the table at once: columns.job says whose run a row is."""

    columns: FleetRunColumns


class FleetJobSettings(_Model):
    """What a batch of the same name would configure besides its runs: the fleet's defaults, or a job's
    override (each key given there replaces the default's; a schedule is replaced whole)."""

    max_duration: Duration | None = None
    idempotent: bool = Field(False, description="True only when a re-run can never do harm.")
    schedule: ScheduleConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _batch_only(cls, data: Any) -> Any:
        return {} if data is None else _refuse_batch_only_keys(data)

    def merged_over(self, defaults: FleetJobSettings) -> FleetJobSettings:
        """These settings over `defaults`: the keys given here win."""
        return defaults.model_copy(update={key: getattr(self, key) for key in self.model_fields_set})


class FleetJobFilter(_Model):
    include: Regex | None = Field(None, description="Only jobs whose name matches (Python re, searched).")
    exclude: Regex | None = Field(None, description="Leave out jobs whose name matches (Python re, searched); "
                                                    "wins over include.")

    def admits(self, job: str) -> bool:
        if self.include is not None and re.search(self.include, job) is None:
            return False
        return self.exclude is None or re.search(self.exclude, job) is None


class FleetConfig(_Model):
    database: str = Field(description="The database of the run table (a name under `databases`).")
    poll_interval: PollInterval | None = Field(
        None, description=f"How often the fleet's run table is read, instead of global.poll_interval; "
                          f"{POLL_RANGE}.")
    runs: FleetRunsConfig
    jobs: FleetJobFilter = Field(default_factory=FleetJobFilter)
    defaults: FleetJobSettings = Field(default_factory=FleetJobSettings)
    overrides: dict[str, FleetJobSettings] = Field(
        default_factory=dict, description="Per job name (as the run table holds it): settings merged over "
                                          "`defaults`. A job named here is exported even without a run.")
    shard: ShardText | None = Field(
        None, description="'i/n': export only the jobs of shard i of n (see docs/fleet.md); `--shard` on the "
                          "command line wins.")

    @model_validator(mode="before")
    @classmethod
    def _batch_only(cls, data: Any) -> Any:
        return _refuse_batch_only_keys(data)

    @property
    def shard_spec(self) -> Shard | None:
        return parse_shard(self.shard) if self.shard is not None else None

    def settings_of(self, job: str) -> FleetJobSettings:
        override = self.overrides.get(job)
        return self.defaults if override is None else override.merged_over(self.defaults)

    def as_batch(self, settings: FleetJobSettings) -> BatchConfig:
        """The batch a job with these settings stands for: what it exports is what that batch would."""
        return BatchConfig(database=self.database, runs=self.runs, max_duration=settings.max_duration,
                           idempotent=settings.idempotent, schedule=settings.schedule)


class Config(_Model):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    databases: dict[Name, DatabaseConfig] = Field(default_factory=dict, description=f"Database names: {NAME_RULE}.")
    calendars: dict[Name, CalendarConfig] = Field(
        default_factory=dict, description=f"Business calendars that schedules name; names: {NAME_RULE}.")
    batches: dict[Name, BatchConfig] = Field(
        default_factory=dict, description=f"Batch names: {NAME_RULE}. At least one batch or fleet.")
    fleets: dict[Name, FleetConfig] = Field(
        default_factory=dict, description=f"Batches discovered in a scheduler's run table, one statement per poll "
                                          f"for all of them (docs/fleet.md); fleet names: {NAME_RULE}.")

    _origin: tuple[str, Located] | None = PrivateAttr(None)  # the file and its lines, when parsed from one

    def locate(self, path: Path_) -> str:
        """`file:line: dotted.path` of a field, for errors found after loading (a column the database lacks)."""
        if self._origin is None:
            return dotted_path(path)
        file, located = self._origin
        return Problem(path, located.line_of(path), "").render(file).removesuffix(": ")

    def batch_poll_interval(self, batch: BatchConfig) -> float:
        return batch.poll_interval or self.global_.poll_interval

    def log_poll_interval(self, log: LogConfig) -> float:
        return log.poll_interval or self.global_.log_poll_interval

    def fleet_poll_interval(self, fleet: FleetConfig) -> float:
        return fleet.poll_interval or self.global_.poll_interval


# --- errors -----------------------------------------------------------------------------------------


class ConfigError(LocatedError):
    """The configuration cannot be used; `str()` lists every problem with file, line and field."""


_SECRET_FIELDS = {"odbc"}


def _pydantic_problems(exc: ValidationError, located: Located) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and p.startswith("function")))
        message = err["msg"].removeprefix("Value error, ")
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field (check the spelling; see `batch-exporter schema`)"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "string_pattern_mismatch":
            message = f"expected a name of {NAME_RULE}"
        input_value = err.get("input")
        show_input = (
            kind not in ("missing", "extra_forbidden")
            and not any(p in _SECRET_FIELDS for p in path)
            and isinstance(input_value, (str, int, float, bool))
        )
        if show_input:
            message += f" (got {_short_repr(input_value)})"
        line = located.line_of(path)
        problems.append(Problem(tuple(_shown_key(p) for p in path), line, message))
    return problems


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def _shown_key(part: str | int) -> str | int:
    """A key fit for the one-line `dotted.path` of a message: a bad name is quoted and shortened."""
    if isinstance(part, int) or _NAME_RE.fullmatch(part) or part in ("global_", "[key]"):
        return part
    return _short_repr(part, 40)


# --- meaning checks ---------------------------------------------------------------------------------


def _semantic_problems(config: Config, located: Located) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: Path_, message: str) -> None:
        problems.append(Problem(path, located.line_of(path), message))

    def statement(path: Path_, sql: str, dialect: str | None, sent: str | None = None) -> bool:
        try:
            check_read_only(sql, dialect)
        except StatementError as exc:
            where = f" in the statement sent to the database ({_shorten(sent)})" if sent else ""
            add(path, f"only a single read-only SELECT is allowed{where}: {exc}")
            return False
        return True

    for name, batch in config.batches.items():
        base: Path_ = ("batches", name)
        needs_db = batch.runs is not None or bool(batch.checks) or (
            batch.schedule is not None and batch.schedule.query is not None)
        if batch.database is None:
            if needs_db:
                add(base, "'database' is required when 'runs', 'checks' or 'schedule.query' are configured")
        elif batch.database not in config.databases:
            known = ", ".join(sorted(config.databases)) or "none are configured"
            add(base + ("database",), f"unknown database {batch.database!r} (known: {known})")
        dialect = _dialect(config.databases.get(batch.database or ""))
        if batch.runs is not None:
            runs_path = base + ("runs", "query" if batch.runs.query is not None else "where")
            fragment_ok = True
            if batch.runs.query is not None:
                fragment_ok = statement(runs_path, batch.runs.query, dialect)
            if batch.runs.where is not None:
                fragment_ok = statement(runs_path, f"SELECT 1 FROM t WHERE {batch.runs.where}", dialect)
            for sent in _runs_statements(batch.runs) if fragment_ok else ():
                if not statement(runs_path if batch.runs.query or batch.runs.where else base + ("runs",),
                                 sent, dialect, sent):
                    break
        if batch.records is not None:
            if batch.runs is None:
                add(base + ("records",), "'records' describes the latest run and needs 'runs'")
            statement(base + ("records", "query"), batch.records.query, dialect)
            if batch.records.query.count("?") != 1:
                add(base + ("records", "query"), "expected exactly one '?' placeholder for the latest run's id")
        if batch.schedule is not None and batch.runs is not None and batch.max_duration is None:
            add(base + ("schedule",), "'max_duration' is required with 'schedule' and 'runs': how long a run may "
                                      "take (a run is due to succeed by its expected start + grace + max_duration, "
                                      "and one still marked running after it is presumed dead)")
        if batch.schedule is not None and batch.schedule.cron is not None:
            try:
                CronSchedule.parse(batch.schedule.cron, batch.schedule.timezone)
            except ScheduleError as exc:
                add(base + ("schedule", "cron"), str(exc))
        if batch.schedule is not None and batch.schedule.query is not None:
            statement(base + ("schedule", "query"), batch.schedule.query, dialect)
        if batch.schedule is not None:
            for path, message in _calendar_and_deadline_problems(config, batch.schedule):
                add(base + ("schedule", *path), message)
        for check_name, check in batch.checks.items():
            statement(base + ("checks", check_name, "query"), check.query, dialect)
        if not (batch.runs or batch.checks or batch.logs or batch.schedule):
            add(base, "nothing to watch: configure at least one of runs, checks, logs or schedule")
    if not config.batches and not config.fleets:
        add(("batches",), "required field is missing: configure at least one batch (or a fleet, see docs/fleet.md)")
    named: dict[str, str] = {}  # a job named under overrides -> its fleet
    for name, fleet in config.fleets.items():
        for path, message in _fleet_problems(config, name, fleet, named):
            add(("fleets", name, *path), message)
        dialect = _dialect(config.databases.get(fleet.database))
        base = ("fleets", name, "runs")
        fragment_ok = True
        if fleet.runs.query is not None:
            fragment_ok = statement(base + ("query",), fleet.runs.query, dialect)
        if fleet.runs.where is not None:
            fragment_ok = statement(base + ("where",), f"SELECT 1 FROM t WHERE {fleet.runs.where}", dialect)
        for sent in _fleet_statements(fleet.runs) if fragment_ok else ():
            if not statement(base, sent, dialect, sent):
                break
    for name, calendar in config.calendars.items():
        for path, message in calendar_problems(calendar):
            add(("calendars", name, *path), message)
        both = sorted(set(calendar.closed) & set(calendar.open))
        if both:
            add(("calendars", name, "open"), f"{', '.join(day.isoformat() for day in both)} also listed under "
                                              "'closed': keep each date in one of the two lists")
    return problems


def _fleet_problems(config: Config, name: str, fleet: FleetConfig, named: dict[str, str]
                   ) -> list[tuple[Path_, str]]:
    """(path under the fleet, message) for its database, its jobs' settings and the jobs it names;
    `named` collects the jobs named under every fleet's overrides, to find one named twice."""
    problems: list[tuple[Path_, str]] = []
    if fleet.database not in config.databases:
        known = ", ".join(sorted(config.databases)) or "none are configured"
        problems.append((("database",), f"unknown database {fleet.database!r} (known: {known})"))
    # (where, the settings a job gets there, whether max_duration or the schedule is set there, whether
    # the schedule is): a problem of the defaults' schedule is reported once, under defaults
    settings: list[tuple[Path_, FleetJobSettings, bool, bool]] = [(("defaults",), fleet.defaults, True, True)]
    for job, override in fleet.overrides.items():
        where: Path_ = ("overrides", job)
        given = override.model_fields_set
        settings.append((where, override.merged_over(fleet.defaults), bool({"schedule", "max_duration"} & given),
                         "schedule" in given))
        if not job.strip() or len(job) > MAX_JOB_NAME or job != job.rstrip(" "):
            problems.append((where, f"expected a job name as the run table holds it: 1 to {MAX_JOB_NAME} "
                                    "characters, no trailing blank"))
        if job in config.batches or mask_cards(job)[:MAX_JOB_NAME] in config.batches:
            problems.append((where, f"job {job!r} is also configured as a batch: one series per batch name; "
                                    "leave it out of the fleet (jobs.exclude) or rename the batch"))
        if not fleet.jobs.admits(job):
            problems.append((where, f"job {job!r} is left out by the fleet's jobs.include / jobs.exclude, so "
                                    "this override would never apply"))
        if job in named:
            problems.append((where, f"job {job!r} is also named under fleets.{named[job]}.overrides: two fleets "
                                    "would export the same batch"))
        named.setdefault(job, name)
    for where, merged, touched, own in settings:
        schedule = merged.schedule
        if schedule is None:
            continue
        if merged.max_duration is None and touched:
            problems.append((where, "'max_duration' is required with 'schedule': how long a run may take (a run "
                                    "is due to succeed by its expected start + grace + max_duration)"))
        if not own:
            continue  # the defaults' schedule: reported there
        if schedule.query is not None:
            problems.append((where + ("schedule", "query"), "a fleet's jobs are scheduled by cron: a schedule query "
                                                           "would be one more statement per job and poll; "
                                                           "configure the job as a batch"))
            continue
        if schedule.cron is not None:
            try:
                CronSchedule.parse(schedule.cron, schedule.timezone)
            except ScheduleError as exc:
                problems.append((where + ("schedule", "cron"), str(exc)))
        problems += [(where + ("schedule", *path), message)
                     for path, message in _calendar_and_deadline_problems(config, schedule)]
    return problems


def _calendar_and_deadline_problems(config: Config, schedule: ScheduleConfig) -> list[tuple[Path_, str]]:
    """(path under the schedule, message) for its calendar, day rule and finish_by."""
    problems: list[tuple[Path_, str]] = []
    if schedule.query is not None:
        for field in ("calendar", "days"):
            if getattr(schedule, field) is not None:
                problems.append(((field,), f"'{field}' works with 'cron' only: with 'query' the scheduler plans "
                                           "its own days (have it skip the holidays, or use cron with a calendar)"))
    elif schedule.calendar is not None and schedule.calendar not in config.calendars:
        known = ", ".join(sorted(config.calendars)) or "none are configured under 'calendars'"
        problems.append((("calendar",), f"unknown calendar {schedule.calendar!r} (known: {known})"))
    if schedule.days is not None and schedule.calendar is None and schedule.query is None:
        problems.append((("days",), "'days' picks among a calendar's business days: it needs 'calendar'"))
    if schedule.finish_by is not None:
        try:
            finish = FinishBy.parse(schedule.finish_by)
        except ValueError as exc:
            problems.append((("finish_by",), str(exc)))
        else:
            latest = latest_start_of_day(schedule.cron) if schedule.cron is not None else None
            if finish.days == 0 and latest is not None and finish.at <= latest:
                problems.append((("finish_by",), (
                    f"{schedule.finish_by!r} is not after the cron's last start of the day ({latest:%H:%M}), so "
                    f"the deadline would come before the run; for the next day write '{finish.at:%H:%M} +1 day'")))
            elif latest is not None and schedule.cron is not None:
                expected = _expected_starts(config, schedule, CronSchedule.parse(schedule.cron, schedule.timezone))
                late = None if expected is None else late_deadline(expected, finish)
                if expected is not None and late is not None:
                    problems.append((("finish_by",), f"{schedule.finish_by!r} comes too late: "
                                                     f"{late.describe(expected.timezone)}"))
    problem = _never_kept(config, schedule)
    if problem is not None:
        problems.append(problem)
    return problems


def _expected_starts(config: Config, schedule: ScheduleConfig,
                     cron: CronSchedule) -> CronSchedule | CalendarSchedule | None:
    """The starts the exporter expects (sources.batchinfo) of the schedule's cron: the cron's, kept to the
    business days its calendar's day rule picks when it names one; None for a calendar that is unknown or
    wrong (reported on its own)."""
    if schedule.calendar is None:
        return cron
    rules = config.calendars.get(schedule.calendar)
    if rules is None or calendar_problems(rules):
        return None
    return CalendarSchedule(cron, BusinessCalendar(rules), schedule.days or "every-business-day")


def _never_kept(config: Config, schedule: ScheduleConfig) -> tuple[Path_, str] | None:
    """A calendar schedule that keeps none of its cron's starts in the LOOKAHEAD_DAYS from 1 January
    CHECKED_YEAR (a fixed day: the verdict must not depend on when the file is checked) nor on any of
    the calendar's open dates: the batch would never be expected, and each search for its next start
    walks the whole lookahead."""
    rules = config.calendars.get(schedule.calendar or "")
    if schedule.cron is None or rules is None or calendar_problems(rules):
        return None
    try:
        cron = CronSchedule.parse(schedule.cron, schedule.timezone)
    except ScheduleError:
        return None  # reported on its own
    days = schedule.days or "every-business-day"
    kept = CalendarSchedule(cron, BusinessCalendar(rules), days)
    since = datetime(CHECKED_YEAR, 1, 1, tzinfo=cron.timezone)
    found = kept.plan(since.astimezone(UTC) - timedelta(microseconds=1), 1)
    if any(isinstance(item, datetime) for item in found) or any(_kept_on(kept, day) for day in rules.open):
        return None
    skips = [item for item in found if isinstance(item, Skip)]
    counts = Counter(skip.reason for skip in skips)
    tally = ", ".join(f"{counts[reason]} {reason}" for reason in ("closed", "holiday", "weekend", "not-picked")
                      if counts[reason])
    why = (f"of the {len(skips)} days the cron fires on, {tally}" if skips else
           f"the cron does not fire in them, and a schedule with a calendar looks {LOOKAHEAD_DAYS} days ahead at most")
    if set(WEEKDAYS) <= set(rules.weekend):
        why += "; its weekend is every day of the week"
    elif skips and counts["weekend"] == len(skips):
        fired = [day for day in WEEKDAYS if any(WEEKDAYS[skip.day.weekday()] == day for skip in skips)]
        why += f"; the cron fires only on {', '.join(fired)}, which the calendar keeps as weekend"
    elif days == "business-day-after-holiday" and rules.country is None and not rules.closed:
        why += "; business-day-after-holiday needs a holiday or a closed date: give the calendar a country or " \
               "closed dates"
    field = "days" if counts["not-picked"] and schedule.days is not None else "calendar"
    where = f"the {LOOKAHEAD_DAYS} days from {since:%Y-%m-%d}" + (" nor on its open dates" if rules.open else "")
    return (field,), (f"calendar {schedule.calendar!r} with days {days!r} keeps none of the cron's starts in {where}, "
                      f"so the batch would never be expected ({why})")


def _kept_on(schedule: CalendarSchedule, day: date) -> bool:
    """Whether the cron fires on the local date `day` and the calendar schedule keeps that date."""
    midnight = datetime.combine(day, time(0), tzinfo=schedule.timezone).astimezone(UTC)
    fire = schedule.cron.next_fire(midnight - timedelta(microseconds=1))
    return fire is not None and schedule.local_date(fire) == day and schedule.verdict(day) is None


def _dialect(database: DatabaseConfig | None) -> str | None:
    """The SQL dialect statements are checked in: the database's own, or every one when unknown."""
    if database is None:
        return None
    return "sqlite" if database.sqlite is not None else odbc_dialect(database.odbc or "")


def _runs_statements(runs: RunsConfig) -> list[str]:
    """Every statement the runs source builds from the configured table, where, columns or query."""
    return [build_window_query(runs), build_last_success_query(runs), build_sample_query(runs),
            probe_statement(runs, "*")]


def _fleet_statements(runs: FleetRunsConfig) -> list[str]:
    """Every statement a fleet's source builds from its runs section (sources.fleet)."""
    return [build_window_query(runs), build_fleet_last_success_query(runs), build_sample_query(runs),
            probe_statement(runs, "*"), probe_statement(runs, runs.columns.job)]


def _shorten(sql: str | None, limit: int = 160) -> str:
    text = " ".join((sql or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- loading ----------------------------------------------------------------------------------------


def parse_config(text: str, file: str, env: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    """Validate YAML text; raises ConfigError naming `file`, the line and the field."""
    try:
        located = read_yaml(text)
        located = expand_references(located, os.environ if env is None else env,
                                    base_dir if base_dir is not None else Path(file).parent)
    except YamlProblem as exc:
        raise ConfigError(file, [Problem(exc.path, exc.line, exc.message)]) from None
    if not isinstance(located.data, dict):
        raise ConfigError(file, [Problem((), 1, "expected a mapping with 'databases' and 'batches' at the top")])
    try:
        config = Config.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(file, _pydantic_problems(exc, located)) from None
    problems = _semantic_problems(config, located)
    if problems:
        raise ConfigError(file, problems)
    config._origin = (file, located)
    return config


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a configuration file."""
    return parse_config(read_text(path, ConfigError), str(path), env, path.parent)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the configuration file, for editors."""
    schema = Config.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "batch-exporter configuration"
    return schema
