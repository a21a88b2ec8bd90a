"""promtool tests of the shipped rules on a business calendar's edge days, from the exporter's own schedule.

Each scenario is a configuration (cron, time zone, calendar, days, finish_by) and local times to check.
The exporter's config source (BatchInfoSource, with an injected clock) is polled once a minute over the
hour before each: the schedule series are what the exporter would export, not numbers written by
hand. The runs are written by hand, apart from the exporter: the nights the real batch runs (on each
business day, 5 minutes after its start), each taking 45 minutes or a scenario's own duration, except on
the nights a scenario breaks. So are the expectations: which of the schedule alerts fire at which local
times. An exporter that ignored the calendar would expect a run on a holiday that none of the nights
has, and page.

promtool evaluates from the instant 0, so every timestamp is written relative to that hour's start.
`python tests/calendar_days.py > alerts/tests/calendar.test.yml` writes the committed file;
tests/test_calendar_rules.py checks that it is this module's output and that promtool passes it.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from batch_exporter.config import parse_config
from batch_exporter.sources.batchinfo import BatchInfoSource

STEP = 60
INSTANCE = {"instance": "e:1", "job": "batch-exporter"}
SCHEDULE_ALERTS = ("BatchRunMissed", "BatchNoRecentSuccess", "BatchFinishDeadlineMissed")
EXPORTED = (
    "batch_schedule_last_expected_timestamp_seconds",
    "batch_schedule_finish_deadline_timestamp_seconds",
    "batch_schedule_grace_seconds",
    "batch_schedule_watched_since_timestamp_seconds",
    "batch_run_max_duration_seconds",
)
TIMESTAMPS = {
    "batch_schedule_last_expected_timestamp_seconds",
    "batch_schedule_finish_deadline_timestamp_seconds",
    "batch_schedule_watched_since_timestamp_seconds",
    "batch_run_last_start_timestamp_seconds",
    "batch_run_last_success_timestamp_seconds",
}
USUAL = 45 * 60


@dataclass(frozen=True)
class Batch:
    name: str
    schedule: str  # the `schedule` mapping as YAML flow text
    nights: tuple[str, ...]  # local starts (YYYY-MM-DD HH:MM) of the runs the real batch makes, written by hand
    broken: frozenset[str] = frozenset()  # local dates (YYYY-MM-DD) of those nights on which no run starts
    durations: dict[str, float] = field(default_factory=dict)  # local date -> run duration, else USUAL


@dataclass(frozen=True)
class Check:
    at: str  # local time YYYY-MM-DD HH:MM
    firing: frozenset[tuple[str, str]]  # (alertname, batch) of the schedule alerts firing then
    why: str


@dataclass(frozen=True)
class Scenario:
    title: str
    timezone: str
    batches: tuple[Batch, ...]
    checks: tuple[Check, ...]


CALENDARS = """
calendars:
  jp: {country: JP}
  jp-bank: {country: JP, categories: [public, bank]}
  de-daily: {country: DE, weekend: []}
"""


def _firing(*pairs: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairs)


def _nights(at: str, *days: str) -> tuple[str, ...]:
    return tuple(f"{day} {at}" for day in days)


def _daily(first: str, last: str, at: str) -> tuple[str, ...]:
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    return tuple(f"{day + timedelta(days=n)} {at}" for n in range((end - day).days + 1))


# Japan's business days around Golden Week and the year-end closure, and the business days after a
# holiday (Labor Thanksgiving Day fell on Monday 23 November 2026).
GOLDEN_WEEK_NIGHTS = _nights("02:05", "2026-04-23", "2026-04-24", "2026-04-27", "2026-04-28", "2026-04-30",
                             "2026-05-01", "2026-05-07")
YEAR_END_NIGHTS = _nights("02:05", "2026-12-24", "2026-12-25", "2026-12-28", "2026-12-29", "2026-12-30",
                          "2027-01-04", "2027-01-05")
BERLIN_SPRING = tuple(n if not n.startswith("2026-03-29") else "2026-03-29 03:05"  # 02:30 skipped: cron runs 03:00
                      for n in _daily("2026-03-20", "2026-03-30", "02:35"))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "Golden Week 2026 (Asia/Tokyo): 29 April, and 3 to 6 May with the substitute holiday",
        "Asia/Tokyo",
        (
            Batch("gw-ok", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}', GOLDEN_WEEK_NIGHTS),
            Batch("gw-broken", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}', GOLDEN_WEEK_NIGHTS,
                  broken=frozenset({"2026-05-07"})),
            # the negative control: the same nights without the calendar expect a run on every day
            Batch("gw-cron", '{cron: "0 2 * * *", finish_by: "06:00"}', GOLDEN_WEEK_NIGHTS),
        ),
        (
            Check("2026-04-28 12:00", _firing(), "a business day that ran"),
            Check("2026-04-29 03:00", _firing(("BatchRunMissed", "gw-cron")),
                  "Showa Day: only the calendar-less schedule expects a run"),
            Check("2026-04-29 07:00", _firing(("BatchRunMissed", "gw-cron"), ("BatchNoRecentSuccess", "gw-cron"),
                                              ("BatchFinishDeadlineMissed", "gw-cron")),
                  "Showa Day after 06:00"),
            Check("2026-05-02 03:00", _firing(("BatchRunMissed", "gw-cron")), "Saturday, after Friday's run"),
            Check("2026-05-04 12:00", _firing(("BatchRunMissed", "gw-cron"), ("BatchNoRecentSuccess", "gw-cron"),
                                              ("BatchFinishDeadlineMissed", "gw-cron")),
                  "Greenery Day"),
            Check("2026-05-06 23:00", _firing(("BatchRunMissed", "gw-cron"), ("BatchNoRecentSuccess", "gw-cron"),
                                              ("BatchFinishDeadlineMissed", "gw-cron")),
                  "the substitute holiday, late evening: still quiet with the calendar"),
            Check("2026-05-07 02:12", _firing(), "first business day after: within the grace"),
            Check("2026-05-07 02:30", _firing(("BatchRunMissed", "gw-broken")),
                  "first business day after Golden Week, no run: a page"),
            Check("2026-05-07 06:10", _firing(("BatchRunMissed", "gw-broken"), ("BatchNoRecentSuccess", "gw-broken"),
                                              ("BatchFinishDeadlineMissed", "gw-broken")),
                  "and its finish deadline passes"),
        ),
    ),
    Scenario(
        "Year-end 2026 (Asia/Tokyo): the banks' closure from 31 December to 3 January",
        "Asia/Tokyo",
        (
            Batch("ye-ok", '{cron: "0 2 * * *", calendar: jp-bank, finish_by: "06:00"}', YEAR_END_NIGHTS),
            Batch("ye-after", '{cron: "0 5 * * *", calendar: jp-bank, days: business-day-after-holiday, '
                              'finish_by: "09:00"}', _nights("05:05", "2026-11-24", "2027-01-04"),
                  broken=frozenset({"2027-01-04"})),
            # a calendar of public holidays only, for a batch that runs on the banks' days
            Batch("ye-public", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}', YEAR_END_NIGHTS),
        ),
        (
            Check("2026-12-30 12:00", _firing(), "the last business day of the year ran"),
            Check("2026-12-31 04:00", _firing(("BatchRunMissed", "ye-public")),
                  "31 December: a bank holiday, not a public one"),
            Check("2027-01-02 12:00", _firing(("BatchRunMissed", "ye-public"), ("BatchNoRecentSuccess", "ye-public"),
                                              ("BatchFinishDeadlineMissed", "ye-public")),
                  "2 January is a Saturday: ye-public's last expected start is 31 December's"),
            Check("2027-01-04 04:00", _firing(), "4 January: everyone's runs came"),
            Check("2027-01-04 05:30", _firing(("BatchRunMissed", "ye-after")),
                  "the business day after the closure: its catch-up run did not start"),
            Check("2027-01-04 09:10", _firing(("BatchRunMissed", "ye-after"), ("BatchFinishDeadlineMissed", "ye-after"),
                                              ("BatchNoRecentSuccess", "ye-after")),
                  "and missed its deadline"),
            Check("2027-01-05 12:00", _firing(("BatchRunMissed", "ye-after"), ("BatchNoRecentSuccess", "ye-after"),
                                              ("BatchFinishDeadlineMissed", "ye-after")),
                  "5 January is no day after a holiday: the missed catch-up stays the latest expected"),
        ),
    ),
    Scenario(
        "A month ending on a Sunday (May 2026): the last business day is Friday 29",
        "Asia/Tokyo",
        (
            Batch("me-ok", '{cron: "0 22 * * *", calendar: jp, days: last-business-day-of-month}',
                  _nights("22:05", "2026-04-30", "2026-05-29")),
            Batch("me-broken", '{cron: "0 22 * * *", calendar: jp, days: last-business-day-of-month}',
                  _nights("22:05", "2026-04-30", "2026-05-29"), broken=frozenset({"2026-05-29"})),
        ),
        (
            Check("2026-05-28 23:00", _firing(), "Thursday 28: not the last business day"),
            Check("2026-05-29 21:50", _firing(), "Friday 29, before its start"),
            Check("2026-05-29 22:30", _firing(("BatchRunMissed", "me-broken")),
                  "Friday 29: the month's run is missing"),
            Check("2026-06-01 12:00", _firing(("BatchRunMissed", "me-broken"), ("BatchNoRecentSuccess", "me-broken")),
                  "Monday 1 June: nothing new expected; the missing run still pages"),
        ),
    ),
    Scenario(
        "Spring forward in Europe/Berlin (29 March 2026): 02:30 does not exist",
        "Europe/Berlin",
        (
            Batch("dst-ok", '{cron: "30 2 * * *", calendar: de-daily, finish_by: "04:00"}', BERLIN_SPRING),
            # 2 hours a night: late every day, as 02:30 + 2h > 04:00; on this night it starts at 03:00
            Batch("dst-slow", '{cron: "30 2 * * *", calendar: de-daily, finish_by: "04:00"}', BERLIN_SPRING,
                  durations={"2026-03-27": 7200, "2026-03-28": 3000, "2026-03-29": 7200, "2026-03-30": 3000}),
            # due 30 minutes after its 02:30 start; 20 minutes a night, 35 on the night of the change
            Batch("dst-tight", '{cron: "30 2 * * *", calendar: de-daily, finish_by: "03:00"}', BERLIN_SPRING,
                  durations={night[:10]: 2100 if night.startswith("2026-03-29") else 1200 for night in BERLIN_SPRING}),
        ),
        (
            Check("2026-03-27 04:10", _firing(("BatchFinishDeadlineMissed", "dst-slow")), "a plain night"),
            Check("2026-03-28 04:10", _firing(), "a short night"),
            Check("2026-03-29 03:25", _firing(),
                  "the cron fired at 03:00, dst-tight's '03:00' itself: due 03:30 CEST, 30 minutes as every night"),
            Check("2026-03-29 03:38", _firing(("BatchFinishDeadlineMissed", "dst-tight")),
                  "not succeeded by 03:30 CEST"),
            Check("2026-03-29 03:50", _firing(), "the cron fired at 03:00, the deadline is 04:00 CEST"),
            Check("2026-03-29 04:10", _firing(("BatchFinishDeadlineMissed", "dst-slow")), "an hour shorter night"),
            Check("2026-03-29 05:20", _firing(), "succeeded at 05:05 CEST; held 5 minutes"),
        ),
    ),
    Scenario(
        "Fall back in Europe/Berlin (25 October 2026): 02:30 happens twice",
        "Europe/Berlin",
        (
            Batch("dst-slow", '{cron: "30 2 * * *", calendar: de-daily, finish_by: "04:00"}',
                  _daily("2026-10-15", "2026-10-26", "02:35"),  # 25 October: the first 02:35, in CEST
                  durations={"2026-10-23": 7200, "2026-10-24": 7200, "2026-10-25": 7200, "2026-10-26": 7200}),
        ),
        (
            Check("2026-10-24 04:10", _firing(("BatchFinishDeadlineMissed", "dst-slow")), "a plain night: 1h30"),
            Check("2026-10-25 04:10", _firing(),
                  "the first 02:30 (CEST) to 04:00 (CET) is 2h30: a 2-hour run (ending 03:35 CET) makes it"),
            Check("2026-10-26 04:10", _firing(("BatchFinishDeadlineMissed", "dst-slow")), "the next plain night"),
        ),
    ),
)


def _config_text(scenario: Scenario) -> str:
    lines = [CALENDARS, "batches:"]
    for batch in scenario.batches:
        schedule = yaml.safe_load(batch.schedule)
        schedule.update(timezone=scenario.timezone, grace="15m")
        lines.append(f"  {batch.name}:")
        lines.append(f"    schedule: {yaml.safe_dump(schedule, default_flow_style=True).strip()}")
        lines.append("    max_duration: 3h")
    return "\n".join(lines) + "\n"


def _local(text: str, tz: ZoneInfo) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=tz).timestamp()


def _exported(batch: Batch, config_text: str, t0: float, t1: float) -> dict[str, list[float]]:
    """What the exporter's config source exports for the batch, once a minute from t0 to t1."""
    config = parse_config(config_text, "calendar_days.py")
    now = [t0]
    source = BatchInfoSource(batch.name, config.batches[batch.name], clock=lambda: now[0],
                             watching_since=t0 - 30 * 86400, calendars=config.calendars)
    series: dict[str, list[float]] = {name: [] for name in EXPORTED}
    while now[0] <= t1:
        values = {s.name: s.value for s in source.poll().samples}
        for name in EXPORTED:
            series[name].append(values.get(name, float("nan")))
        now[0] += STEP
    return series


def _runs(scenario: Scenario, batch: Batch, t0: float, t1: float) -> dict[str, list[float]]:
    """The run series of a batch that starts on its nights (not on its broken days) and succeeds."""
    tz = ZoneInfo(scenario.timezone)
    runs = []
    for night in batch.nights:
        day = night[:10]
        if day not in batch.broken:
            start = _local(night, tz)
            runs.append((start, start + batch.durations.get(day, USUAL)))
    series: dict[str, list[float]] = {name: [] for name in (
        "batch_run_last_start_timestamp_seconds", "batch_run_last_success_timestamp_seconds", "batch_run_running",
        "batch_run_attempts")}
    t = t0
    while t <= t1:
        started = [r for r in runs if r[0] <= t]
        ended = [r for r in started if r[1] <= t]
        series["batch_run_last_start_timestamp_seconds"].append(started[-1][0] if started else float("nan"))
        series["batch_run_last_success_timestamp_seconds"].append(ended[-1][1] if ended else float("nan"))
        series["batch_run_running"].append(1.0 if started and started[-1][1] > t else 0.0)
        series["batch_run_attempts"].append(1.0 if started else 0.0)
        t += STEP
    return series


def promtool_values(points: list[float]) -> str:
    """promtool's expanding notation: a run of n + 1 equal values as `axn`, of n missing points as `_xn`."""
    parts: list[str] = []
    i = 0
    while i < len(points):
        j = i
        while j + 1 < len(points) and _same(points[j + 1], points[i]):
            j += 1
        value, count = points[i], j - i + 1
        if value != value:
            parts.append("_" if count == 1 else f"_x{count}")
        else:
            parts.append(f"{value:.0f}" if count == 1 else f"{value:.0f}x{count - 1}")
        i = j + 1
    return " ".join(parts)


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


WINDOW = 3600  # each check is evaluated on the hour before it: longer than any `for` and hold


def check_inputs(scenario: Scenario, check: Check) -> tuple[list[dict[str, str]], dict[str, float]]:
    """The input series of the hour that ends at the check (timestamps relative to its start), and the
    end of each batch's latest success by then (absolute; only batches that have one)."""
    tz = ZoneInfo(scenario.timezone)
    config_text = _config_text(scenario)
    end = _local(check.at, tz)
    t0 = end - WINDOW
    inputs = []
    successes: dict[str, float] = {}
    for batch in scenario.batches:
        runs = _runs(scenario, batch, t0, end)
        last_success = runs["batch_run_last_success_timestamp_seconds"][-1]
        if not math.isnan(last_success):
            successes[batch.name] = last_success
        inputs += input_series(batch.name, {**_exported(batch, config_text, t0, end), **runs}, t0, TIMESTAMPS)
    return inputs, successes


def input_series(batch: str, series: dict[str, list[float]], t0: float, timestamps: set[str]
                 ) -> list[dict[str, str]]:
    """promtool input series of one batch's exported values, one point a minute from `t0`; timestamps
    made relative to `t0` (promtool's clock starts at 0); a series never exported is left out."""
    out = []
    labels = ",".join(f'{k}="{v}"' for k, v in {"batch": batch, **INSTANCE}.items())
    for name, points in series.items():
        if all(p != p for p in points):
            continue  # not exported at all (no finish_by)
        if name in timestamps:
            points = [p - t0 for p in points]
        out.append({"series": f"{name}{{{labels}}}", "values": promtool_values(points)})
    return out


def firing_expr() -> str:
    """The schedule alerts firing, by alert name and batch."""
    wanted = "|".join(SCHEDULE_ALERTS)
    return f'count by (alertname, batch) (ALERTS{{alertstate="firing",alertname=~"{wanted}"}})'


def firing_samples(check: Check) -> list[dict[str, object]]:
    return [{"labels": f'{{alertname="{a}",batch="{b}"}}', "value": 1} for a, b in sorted(check.firing)]


def scenario_tests(scenario: Scenario) -> Iterator[dict[str, object]]:
    """One promtool test per check, on the hour that ends at it (promtool's cost grows with
    the minutes evaluated; the schedule series of any instant come from the exporter all the same)."""
    for check in scenario.checks:
        inputs, _ = check_inputs(scenario, check)
        yield {
            "interval": "1m",
            "name": f"{scenario.title}: {check.at} {scenario.timezone}, {check.why}",
            "input_series": inputs,
            "promql_expr_test": [{
                "expr": firing_expr(),
                "eval_time": f"{WINDOW // 60}m",
                "exp_samples": firing_samples(check),
            }],
        }


def promtool_document(header: list[str], scenarios: Sequence[Any],
                      tests_of: Callable[[Any], Iterator[dict[str, object]]]) -> str:
    """A generated promtool test file: `header` and each scenario's checks as comments, then one test per
    check (tests_of(scenario)) against the shipped rules."""
    lines = list(header)
    for scenario in scenarios:
        lines.append(f"# {scenario.title}")
        for check in scenario.checks:
            shown = ", ".join(f"{a} {b}" for a, b in sorted(check.firing)) or "nothing"
            lines.append(f"#   {check.at} {scenario.timezone}: {shown} ({check.why})")
    document = {"rule_files": ["../batch-exporter.rules.yml"], "evaluation_interval": "1m",
                "tests": [test for scenario in scenarios for test in tests_of(scenario)]}
    body = yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)
    return "\n".join(lines) + "\n" + body


def render() -> str:
    return promtool_document([
        "# Generated by tests/calendar_days.py: do not edit; change the scenarios there and run",
        "#   python tests/calendar_days.py > alerts/tests/calendar.test.yml",
        "# The schedule series are the exporter's own (BatchInfoSource polled once a minute); the",
        "# checks, by local time:",
    ], SCENARIOS, scenario_tests)


if __name__ == "__main__":
    sys.stdout.write(render())
