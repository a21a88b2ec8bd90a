"""The drill without Prometheus and Alertmanager: the shipped rules evaluated by `promtool test rules`.

For each scenario the exporter's exposition is recorded just before and just after the injection. A
promtool unit test then replays it: 20 simulated minutes of the healthy series, then 40 of the faulted
ones, against the shipped rule files unchanged (their real `for` durations). It checks that the
expected alert is quiet before the fault and firing once the rule's `for` has passed; for a scenario
that stays quiet, that no alert of the batch fires in any simulated minute. Timestamps are moved onto
promtool's clock (which starts at 0), and the clocks that move in reality keep moving (a source's last
success, a run's running time). Routing and delivery are not checked: that needs Alertmanager.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from ...units import parse_duration
from ..stack import EXPORTER_JOB
from .report import AlertTimeline, ScenarioResult
from .scenarios import Expected, Scenario
from .world import BATCH, DrillWorld

BASELINE_MINUTES = 20
FAULT_MINUTES = 40
MARGIN_MINUTES = 2
OUTPUT_LINES = 24  # of promtool's output on a failure (a quiet test can fail in every minute)
INSTANCE = "drill:10117"

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_exposition(text: str) -> dict[SeriesKey, float]:
    """{(sample name, sorted labels): value} of a text exposition."""
    series: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return series


def rule_for_seconds(rule_files: Sequence[Path], expected: Expected) -> float:
    """The longest `for` among the shipped rules the expected alert can come from."""
    longest = None
    for path in rule_files:
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("alert") != expected.alertname:
                    continue
                labels = rule.get("labels", {})
                if any(labels.get(k, v) != v for k, v in expected.labels.items()):
                    continue
                seconds = parse_duration(rule.get("for", "0s"))
                longest = seconds if longest is None else max(longest, seconds)
    if longest is None:
        raise ValueError(f"no rule named {expected.alertname} in {', '.join(map(str, rule_files))}")
    return longest


def _series_text(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f"{key}={json.dumps(value, ensure_ascii=False)}"
                     for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _is_up(series: Mapping[SeriesKey, float], source: str) -> bool:
    return series.get(("batch_exporter_source_up", (("source", source),)), 0.0) == 1.0


def _values(name: str, labels: Mapping[str, str], phases: Sequence[tuple[Mapping[SeriesKey, float], int]],
            origin: float, key: SeriesKey) -> str:
    """One sample per simulated minute: each phase's recorded value, timestamps moved to promtool's clock."""
    out: list[str] = []
    minute = 0
    for recorded, minutes in phases:
        value = recorded.get(key)
        for step in range(minutes):
            if value is None:
                # a series that leaves the exposition gets a staleness marker, as a real scrape gives it
                out.append("stale" if out and out[-1] not in ("_", "stale") else "_")
            else:
                v = value
                if name.endswith("_timestamp_seconds") and v != 0:
                    v -= origin
                if name == "batch_exporter_source_last_success_timestamp_seconds" and _is_up(
                        recorded, labels.get("source", "")):
                    v += step * 60  # polls keep succeeding while time passes
                if name == "batch_run_running_seconds" and v > 0:
                    v += step * 60
                out.append(repr(v))
            minute += 1
    return " ".join(out)


def _quiet_checks() -> list[dict[str, Any]]:
    """No alert of the batch firing, minute by minute through the baseline and the fault."""
    expr = f"count by (alertname, severity) ({_series_text('ALERTS', {'alertstate': 'firing', 'batch': BATCH})})"
    return [{"expr": expr, "eval_time": f"{minute}m", "exp_samples": []}
            for minute in range(1, BASELINE_MINUTES + FAULT_MINUTES)]


def fired_in(output: str) -> set[str]:
    """The alerts promtool found firing where a quiet test expected none ("NAME (severity)")."""
    found = re.findall(r'\{alertname="([^"]+)"(?:, severity="([^"]*)")?\}', output)
    return {f"{name} ({severity or '?'})" for name, severity in found}


def promtool_test(rule_files: Sequence[Path], baseline: Mapping[SeriesKey, float],
                  fault: Mapping[SeriesKey, float], fault_at: float,
                  expected: Sequence[Expected]) -> dict[str, Any]:
    """A promtool test file (as a dict): the baseline, then the fault from minute BASELINE_MINUTES; without
    `expected`, a test that nothing of the batch fires."""
    origin = fault_at - BASELINE_MINUTES * 60  # real time at promtool's 0
    target = {"instance": INSTANCE, "job": EXPORTER_JOB}
    up: SeriesKey = ("up", ())
    phases = [({**baseline, up: 1.0}, BASELINE_MINUTES), ({**fault, up: 1.0}, FAULT_MINUTES)]
    input_series = []
    for key in sorted(set(baseline) | set(fault) | {up}):
        name, labels = key[0], {**dict(key[1]), **target}
        input_series.append({"series": _series_text(name, labels),
                             "values": _values(name, labels, phases, origin, key)})
    checks = [] if expected else _quiet_checks()
    for alert in expected:
        selector = {"alertname": alert.alertname, "alertstate": "firing", "batch": BATCH, **alert.labels}
        expr = f"max({_series_text('ALERTS', selector)})"
        fires_by = BASELINE_MINUTES + int(rule_for_seconds(rule_files, alert) // 60) + MARGIN_MINUTES
        checks += [{"expr": expr, "eval_time": f"{BASELINE_MINUTES - 1}m", "exp_samples": []},
                   {"expr": expr, "eval_time": f"{fires_by}m", "exp_samples": [{"labels": "{}", "value": 1}]}]
    return {"rule_files": [str(path.resolve()) for path in rule_files], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": input_series, "promql_expr_test": checks}]}


@dataclass
class PromtoolOutcome:
    test_file: Path
    passed: bool
    output: str


class PromtoolDrill:
    """Scenarios recorded from the in-process exporter and checked with promtool against the shipped rules."""

    def __init__(self, world: DrillWorld, rule_files: Sequence[Path], promtool: str, workdir: Path) -> None:
        self.world = world
        self.rule_files = list(rule_files)
        self.promtool = promtool
        self.workdir = workdir
        self.outcomes: dict[str, PromtoolOutcome] = {}

    def run(self, scenario: Scenario) -> ScenarioResult:
        baseline = parse_exposition(self.world.scrape())
        result = ScenarioResult(scenario, injected_at=self.world.now(),
                                alerts=[AlertTimeline(e) for e in scenario.expected], promtool=True)
        undo = scenario.inject(self.world)
        try:
            fault = parse_exposition(self.world.scrape())
        finally:
            undo()
            result.restored_at = self.world.now()
        test = promtool_test(self.rule_files, baseline, fault, result.injected_at, scenario.expected)
        path = self.workdir / f"drill-{scenario.name}.test.yml"
        path.write_text(yaml.safe_dump(test, sort_keys=False, allow_unicode=True, width=1 << 16),
                        encoding="utf-8")
        done = subprocess.run([self.promtool, "test", "rules", str(path)], capture_output=True, text=True,
                              timeout=120, check=False)
        output = (done.stdout + done.stderr).strip()
        self.outcomes[scenario.name] = PromtoolOutcome(path, done.returncode == 0, output)
        for timeline in result.alerts:
            timeline.for_seconds = rule_for_seconds(self.rule_files, timeline.expected)
        result.quiet_for = (BASELINE_MINUTES + FAULT_MINUTES) * 60.0 if scenario.stays_quiet else None
        if done.returncode != 0:
            result.others = fired_in(output) if scenario.stays_quiet else set()
            if not result.others:
                result.error = "promtool: the expected alert did not fire as expected:\n" + output
        return result


def promtool_report(result: ScenarioResult, outcome: PromtoolOutcome, rule_files: Sequence[Path]) -> str:
    s = result.scenario
    lines = [f"{s.name}: {s.factor}", f"  injected: {s.injects}"]
    if s.stays_quiet:
        would = ", ".join(f"{e.describe()} (shipped `for` {rule_for_seconds(rule_files, e) / 60:g}m)"
                          for e in s.quiet)
        fired = ", ".join(sorted(result.others)) or "see the output below"
        verdict = (f"no alert of the batch fired in {BASELINE_MINUTES} simulated minutes before the fault and "
                   f"{FAULT_MINUTES} with it" if outcome.passed else f"FIRED: {fired}")
        lines.append(f"  quiet? {verdict}")
        if would:
            lines.append(f"  kept quiet by {s.quiet_by or 'the drill'}: {would}")
    for timeline in result.alerts:
        minutes = (timeline.for_seconds or 0) / 60
        verdict = "quiet before the fault, firing after it" if outcome.passed else "NOT as expected"
        lines.append(f"  {timeline.expected.describe()}: {verdict} (shipped `for` {minutes:g}m)")
    lines.append(f"  promtool test file: {outcome.test_file}")
    if not outcome.passed:
        output = [line for line in outcome.output.splitlines() if line.strip()]
        shown = output[:OUTPUT_LINES]
        if len(output) > len(shown):
            shown.append(f"(and {len(output) - len(shown)} more lines: promtool test rules {outcome.test_file})")
        lines += ["  " + line for line in shown]
    verdict = "OK (rules only: routing and delivery not checked)" if outcome.passed else "FAILED"
    lines.append(f"  result: {verdict}")
    return "\n".join(lines)
