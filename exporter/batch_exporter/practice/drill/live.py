"""Running a drill against a real Prometheus and Alertmanager: inject, watch, restore, watch again.

Prometheus's /api/v1/alerts gives pending and firing (`activeAt` is when the alert became pending);
the drill's own webhook receiver, which every receiver of its Alertmanager copy points at, gives
delivery and resolution as on-call would see them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..stack import PromStack, StackError, WebhookRecorder
from .report import AlertTimeline, Progress, ScenarioResult
from .scenarios import Scenario
from .world import BATCH, DrillWorld

POLL_SECONDS = 0.25
# How long a scenario that stays quiet is watched. With the drill's timings (1 s polls, scrapes and
# evaluations, every `for` 2 s, group_wait 1 s) the missed-run drill's page arrives within about 5 s of
# its fault; 20 s leaves room for a loaded machine. tests/test_drill.py checks the holiday's negative
# control (the same fault, no calendar) pages within it.
QUIET_SECONDS = 20.0


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class LiveDrill:
    """Scenarios run one after the other against one world and one stack."""

    def __init__(self, world: DrillWorld, stack: PromStack, hook: WebhookRecorder, progress: Progress, *,
                 timeout: float = 60.0, hold: Callable[[ScenarioResult], None] | None = None,
                 quiet_seconds: float = QUIET_SECONDS) -> None:
        """`hold`, when given, is called while the fault is still in place, once the alerts arrived (or,
        for a scenario that stays quiet, once it was watched for `quiet_seconds`)."""
        self.world = world
        self._hold = hold
        self.quiet_seconds = quiet_seconds
        self.stack = stack
        self.hook = hook
        self.progress = progress
        self.timeout = timeout
        self._durations: list[tuple[str, dict[str, str], float]] = []

    def wait_ready(self) -> list[str]:
        """Wait until Prometheus scrapes the exporter and has evaluated the rules.

        Returns the batch's alerts already pending or firing then (none, for a prepared demo).
        """
        def scraped() -> bool:
            try:
                series = self.stack.query(f'batch_run_last_start_timestamp_seconds{{batch="{BATCH}"}}')
                rules = [rule for group in self.stack.rule_groups() for rule in group["rules"]]
            except StackError:
                return False
            return bool(series) and bool(rules) and all(rule.get("lastEvaluation", "").startswith("2")
                                                         and rule["health"] == "ok" for rule in rules)
        self._wait(scraped, "Prometheus to scrape the drill's exporter and evaluate the rules")
        self._durations = [(rule["name"], dict(rule.get("labels", {})), float(rule.get("duration", 0)))
                           for group in self.stack.rule_groups() for rule in group["rules"]
                           if rule.get("type") == "alerting"]
        time.sleep(3)  # a few evaluations, so that anything the baseline raises is visible
        return sorted({self._name(a) for a in self._batch_alerts()})

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not check():
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {self.timeout:g}s waiting for {what}\n{self.stack.logs()}")
            time.sleep(POLL_SECONDS)

    @staticmethod
    def _name(alert: Mapping[str, Any]) -> str:
        labels = alert["labels"]
        return f"{labels['alertname']} ({labels.get('severity', '?')})"

    def _batch_alerts(self) -> list[dict[str, Any]]:
        return [a for a in self.stack.prometheus_alerts() if a["labels"].get("batch") == BATCH]

    def _for(self, labels: Mapping[str, str]) -> float | None:
        for name, rule_labels, duration in self._durations:
            if name == labels.get("alertname") and all(labels.get(k) == v for k, v in rule_labels.items()):
                return duration
        return None

    def run(self, scenario: Scenario) -> ScenarioResult:
        """Inject, wait for every expected alert to be delivered (or watch that none fires, for a scenario
        that stays quiet), restore, wait for them to resolve."""
        timelines = [AlertTimeline(expected) for expected in scenario.expected]
        result = ScenarioResult(scenario, injected_at=time.time(), alerts=timelines)
        quiet = self._wait_quiet(scenario)
        if quiet:
            result.error = quiet
            return result
        before = {self._name(a) for a in self._batch_alerts()}
        result.injected_at = time.time()
        undo = scenario.inject(self.world)
        try:
            if scenario.stays_quiet:
                self._watch_quiet(result, before)
            else:
                self._watch_firing(result, before)
            self.progress.clear()
            if self._hold is not None:
                self._hold(result)
        finally:
            undo()
            result.restored_at = time.time()
        self._watch_resolved(result)
        self.progress.clear()
        return result

    def _wait_quiet(self, scenario: Scenario) -> str:
        """Wait for the scenario's alerts, expected or kept quiet, to be inactive (a previous scenario may
        still be resolving)."""
        deadline = time.monotonic() + self.timeout
        while True:
            active = [a for a in self.stack.prometheus_alerts()
                      if any(e.matches(a["labels"]) for e in scenario.expected + scenario.quiet)]
            if not active:
                return ""
            if time.monotonic() > deadline:
                return ("already active before the injection: "
                        + ", ".join(sorted({self._name(a) for a in active})))
            time.sleep(POLL_SECONDS)

    def _watch_firing(self, result: ScenarioResult, before: set[str]) -> None:
        start = time.monotonic()
        expected_names = {e.alertname for e in result.scenario.expected}
        while True:
            now = time.time()
            for alert in self.stack.prometheus_alerts():
                labels = alert["labels"]
                new = self._name(alert) not in before and labels.get("alertname") not in expected_names
                if labels.get("batch") == BATCH and alert["state"] == "firing" and new:
                    result.others.add(self._name(alert))
                for timeline in result.alerts:
                    if not timeline.expected.matches(labels):
                        continue
                    timeline.for_seconds = self._for(labels)
                    active_at = _epoch(alert["activeAt"]) if alert.get("activeAt") else now
                    if timeline.for_seconds and timeline.pending_at is None:
                        timeline.pending_at = active_at
                    if alert["state"] == "firing" and timeline.firing_at is None:
                        timeline.firing_at = active_at if not timeline.for_seconds else now
            for notification in self.hook.notifications():
                if notification.received_at < result.injected_at:
                    continue
                for sent in notification.payload.get("alerts", []):
                    for timeline in result.alerts:
                        if (sent.get("status") == "firing" and timeline.delivered_at is None
                                and timeline.expected.matches(sent.get("labels", {}))):
                            timeline.delivered_at = notification.received_at
                            timeline.receiver = notification.receiver
            if all(t.delivered for t in result.alerts):
                self._exact_times(result)
                return
            elapsed = time.monotonic() - start
            if elapsed > self.timeout:
                self._exact_times(result)
                self._explain_missing(result)
                return
            self.progress.update(f"{result.scenario.name}: " + self._status(result), elapsed)
            time.sleep(POLL_SECONDS)

    def _watch_quiet(self, result: ScenarioResult, before: set[str]) -> None:
        """For `quiet_seconds`: any alert of the batch that fires (or is delivered) and was not active
        before the injection, and any alert the scenario keeps quiet even pending, goes to `others`."""
        start = time.monotonic()
        result.quiet_for = self.quiet_seconds
        while True:
            for alert in self._batch_alerts():
                kept_quiet = any(e.matches(alert["labels"]) for e in result.scenario.quiet)
                if kept_quiet or (alert["state"] == "firing" and self._name(alert) not in before):
                    result.others.add(self._name(alert))
            for notification in self.hook.notifications():
                if notification.received_at < result.injected_at:
                    continue
                for sent in notification.payload.get("alerts", []):
                    labels = sent.get("labels", {})
                    name = f"{labels.get('alertname', '?')} ({labels.get('severity', '?')})"
                    if sent.get("status") == "firing" and labels.get("batch") == BATCH and name not in before:
                        result.others.add(name)
            elapsed = time.monotonic() - start
            if elapsed >= self.quiet_seconds:
                return
            fired = f"; fired: {', '.join(sorted(result.others))}" if result.others else ""
            self.progress.update(f"{result.scenario.name}: watching that no alert of the batch fires "
                                 f"({self.quiet_seconds:g}s){fired}", elapsed)
            time.sleep(POLL_SECONDS)

    def _exact_times(self, result: ScenarioResult) -> None:
        """Pending and firing as Prometheus recorded them: the first ALERTS samples after the injection."""
        window = int(time.time() - result.injected_at) + 5
        for timeline in result.alerts:
            matchers = {"alertname": timeline.expected.alertname, "batch": BATCH, **timeline.expected.labels}
            selector = ",".join(f"{k}={json.dumps(v)}" for k, v in matchers.items())
            try:
                series = self.stack.query(f"ALERTS{{{selector}}}[{window}s]")
            except StackError:
                continue
            first: dict[str, float] = {}
            for one in series:
                times = [float(t) for t, _ in one.get("values", []) if float(t) >= result.injected_at]
                state = one["metric"].get("alertstate", "")
                if times:
                    first[state] = min(times + ([first[state]] if state in first else []))
            if "firing" in first:
                timeline.firing_at = first["firing"]
            if "pending" in first:
                timeline.pending_at = first["pending"]

    @staticmethod
    def _status(result: ScenarioResult) -> str:
        parts = []
        for t in result.alerts:
            state = ("delivered" if t.delivered else "firing, waiting for Alertmanager" if t.firing_at
                     else "pending" if t.pending_at else "waiting")
            parts.append(f"{t.expected.describe()} {state}")
        return "; ".join(parts)

    def _explain_missing(self, result: ScenarioResult) -> None:
        try:
            held = self.stack.alertmanager_alerts()
        except StackError:
            held = []
        for timeline in result.alerts:
            if timeline.delivered:
                continue
            if timeline.firing_at is None:
                timeline.note = f"did not fire within {self.timeout:g}s"
                continue
            inhibited = [a for a in held if timeline.expected.matches(a.get("labels", {}))
                         and a.get("status", {}).get("inhibitedBy")]
            late = f"fired but was not delivered within {self.timeout:g}s"
            timeline.note = ("fired but Alertmanager inhibited it (an alert that explains it was active: the "
                             "exporter down, a run alert, or its own critical tier)" if inhibited else late)

    def _watch_resolved(self, result: ScenarioResult) -> None:
        assert result.restored_at is not None
        start = time.monotonic()
        gone_at: dict[int, float] = {}
        waiting = [t for t in result.alerts if t.firing_at is not None and not t.expected.outlasts_restore]
        for timeline in result.alerts:
            if timeline.expected.outlasts_restore:
                timeline.note = f"stays after the restore: {timeline.expected.outlasts_restore}"
        while waiting:
            now = time.time()
            active = self.stack.prometheus_alerts()
            for timeline in waiting:
                if not any(timeline.expected.matches(a["labels"]) for a in active):
                    gone_at.setdefault(id(timeline), now)
            for notification in self.hook.notifications():
                if notification.received_at < result.restored_at:
                    continue
                for sent in notification.payload.get("alerts", []):
                    for timeline in waiting:
                        resolved = sent.get("status") == "resolved"
                        if resolved and timeline.expected.matches(sent.get("labels", {})):
                            timeline.resolved_at = timeline.resolved_at or notification.received_at
            for timeline in list(waiting):
                gone = id(timeline) in gone_at
                if gone and (timeline.resolved_at is not None or not timeline.delivered):
                    timeline.resolved_at = timeline.resolved_at or gone_at[id(timeline)]
                    waiting.remove(timeline)
            elapsed = time.monotonic() - start
            if waiting and elapsed > self.timeout:
                for timeline in waiting:
                    timeline.note = (timeline.note + "; " if timeline.note else "") + \
                        f"not resolved within {self.timeout:g}s of the restore"
                return
            if waiting:
                names = ", ".join(t.expected.describe() for t in waiting)
                self.progress.update(f"{result.scenario.name}: restored, waiting for {names} to resolve",
                                     elapsed)
                time.sleep(POLL_SECONDS)
