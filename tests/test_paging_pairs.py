"""Every pair of shipped alerts that can fire together, posted to a live Alertmanager 0.25 with the
shipped routing and inhibition rules.

The alert names, severities and labels come from alerts/batch-exporter.rules.yml, so a new alert is
paired with every other one without touching this file. Each pair gets its own batch and exporter
(instance), and every pair, plus a staging and a production exporter with the same batch name, is
posted in one request, so that one wait covers them all and any inhibition that crossed a batch
or an exporter would show as well.

Timings are the test overlay's (tests/promstack.py: group_wait and group_interval 1 s); the
inhibition rules and routes are the shipped ones.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from promstack import EXPORTER_JOB, REPO_ROOT, PromStack, WebhookRecorder, wait_until

pytestmark = pytest.mark.slow

RULES = REPO_ROOT / "alerts" / "batch-exporter.rules.yml"
RANK = {"critical": 3, "warning": 2, "info": 1, "none": 0}
RECEIVER = {"critical": "pager", "warning": "ticket", "info": "null"}
# Alerts about the exporter or the pipeline rather than one batch, and which of batch/instance/job
# they carry. Every other alert carries all three (the pack's convention).
NOT_PER_BATCH: dict[str, tuple[str, ...]] = {
    "BatchExporterDown": ("instance", "job"),
    "BatchExporterAbsent": ("job",),
    "BatchExporterSeriesCapReached": ("instance", "job"),
    "Watchdog": (),
}
SCOPE = ("batch", "instance", "job")
# Run alerts that say why a batch has no recent success (their critical tier).
EXPLAIN_NO_SUCCESS = {
    "BatchRunFailed",
    "BatchRunMissed",
    "BatchRunTooLong",
    "BatchRerunOfNonIdempotentBatch",
    "BatchRunLeftPendingRecords",
    "BatchFinishDeadlineMissed",
}
# Where a rule's result gets a label beyond batch/instance/job.
LABEL_SOURCES = (
    re.compile(r"\$labels\.(\w+)"),  # named in an annotation
    re.compile(r'label_replace\s*\([^"]*"(\w+)"'),  # written by label_replace
    re.compile(r'count_values[^"]*"(\w+)"'),
    re.compile(r"group_left\s*\(([\w\s,]+)\)"),  # copied in by a join
)
Labels = dict[str, str]
Pair = tuple[Labels, Labels]
VALUES = {"log": "sdk", "path": "/var/log/vendor/auth.log", "pattern": "error", "check": "totals",
          "code": "ABEND", "attempt": "2"}


@dataclass(frozen=True)
class Variant:
    """One alerting rule of the shipped file: its name, severity and the labels its result carries."""

    name: str
    severity: str
    labels: tuple[str, ...]

    @property
    def per_exporter(self) -> bool:
        return "instance" in self.labels

    def make(self, batch: str, instance: str) -> dict[str, str]:
        given = {"batch": batch, "instance": instance, "job": EXPORTER_JOB, "source": f"runs:{batch}"}
        labels = {name: given.get(name) or VALUES.get(name, "x") for name in self.labels}
        return {"alertname": self.name, "severity": self.severity, **labels}

    def __str__(self) -> str:
        return f"{self.name}/{self.severity}"


def shipped_variants() -> list[Variant]:
    variants: list[Variant] = []
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            text = rule["expr"] + "\n" + "\n".join(rule.get("annotations", {}).values())
            found = {
                label.strip()
                for pattern in LABEL_SOURCES
                for match in pattern.findall(text)
                for label in match.split(",")
            } - set(SCOPE) - {""}
            scope = NOT_PER_BATCH.get(name, SCOPE)
            variant = Variant(name, rule["labels"]["severity"], tuple(scope) + tuple(sorted(found)))
            if variant not in variants:
                variants.append(variant)
    return variants


def explains(source: dict[str, str], target: dict[str, str]) -> bool:
    """The design: which alert may silence which. Anything else must be notified."""
    if source == target or "instance" not in source:
        return False
    if (source["instance"], source["job"]) != (target.get("instance"), target.get("job")):
        return False  # another exporter (staging vs production) never explains anything
    if source["alertname"] == "BatchExporterDown":
        return "batch" in target
    if source["alertname"] == "BatchExporterGone":
        return target.get("batch") == source["batch"] and target["alertname"] != "BatchExporterGone"
    if source["severity"] != "critical" or source.get("batch") != target.get("batch"):
        return False
    if target["alertname"] == "BatchNoRecentSuccess":
        return source["alertname"] in EXPLAIN_NO_SUCCESS
    same_thing = {k: v for k, v in source.items() if k != "severity"} == {
        k: v for k, v in target.items() if k != "severity"
    }
    return same_thing and target["severity"] == "warning"  # the critical tier of the same alert


def _key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


@dataclass
class Night:
    """What was posted, and what Alertmanager made of it."""

    pairs: list[Pair]
    posted: list[Labels]
    sent: dict[frozenset[tuple[str, str]], set[str]]  # labels -> receivers that got it firing
    held: dict[frozenset[tuple[str, str]], dict[str, Any]]  # labels -> Alertmanager's view

    def notified(self, labels: dict[str, str]) -> bool:
        """Reached its severity's receiver (info: active in Alertmanager, routed to null)."""
        if labels["alertname"] == "Watchdog":
            return self.sent.get(_key(labels), set()) == {"heartbeat"}
        receiver = RECEIVER.get(labels["severity"], "ticket")
        if receiver == "null":
            alert = self.held.get(_key(labels))
            return alert is not None and alert["status"]["state"] == "active"
        return receiver in self.sent.get(_key(labels), set())

    def silencers(self, labels: dict[str, str]) -> list[dict[str, str]]:
        by_fingerprint = {a["fingerprint"]: a["labels"] for a in self.held.values()}
        alert = self.held.get(_key(labels))
        return [by_fingerprint.get(fp, {"?": fp}) for fp in (alert or {}).get("status", {}).get("inhibitedBy", [])]

    def expected_silent(self, labels: dict[str, str]) -> bool:
        return any(explains(source, labels) for source in self.posted)


def _post_everything(variants: list[Variant]) -> tuple[list[Pair], list[Labels]]:
    per_exporter = [v for v in variants if v.per_exporter]
    pairs = [
        (a.make(f"pair-{i:03d}", f"exp-{i:03d}:10117"), b.make(f"pair-{i:03d}", f"exp-{i:03d}:10117"))
        for i, (a, b) in enumerate(itertools.combinations(per_exporter, 2))
    ]
    # Both environments in full incident for the same batch name; production has no exporter down.
    staging = [v.make("card-authorization", "staging:10117") for v in per_exporter]
    production = [
        v.make("card-authorization", "production:10117") for v in per_exporter if v.name != "BatchExporterDown"
    ]
    pipeline = [v.make("", "") for v in variants if not v.per_exporter]
    return pairs, [*itertools.chain.from_iterable(pairs), *staging, *production, *pipeline]


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Night]:
    pairs, posted = _post_everything(shipped_variants())
    with WebhookRecorder() as hook, PromStack(tmp_path_factory.mktemp("pairs"), webhook_base=hook.url) as stack:
        stack.post_alerts([{"labels": labels, "annotations": {"summary": "pair test"}} for labels in posted])

        def observe() -> Night:
            sent: dict[frozenset[tuple[str, str]], set[str]] = {}
            for notification in hook.notifications():
                for alert in notification.payload.get("alerts", []):
                    if alert["status"] == "firing":
                        sent.setdefault(_key(alert["labels"]), set()).add(notification.receiver)
            held = {_key(a["labels"]): a for a in stack.alertmanager_alerts()}
            return Night(pairs, posted, sent, held)

        def settled() -> bool:
            seen = observe()
            return all(seen.notified(labels) for labels in posted if not seen.expected_silent(labels))

        with suppress(TimeoutError):  # the tests below say which ones
            wait_until(settled, timeout=60, what="every alert that nothing explains to be notified")
        time.sleep(3)  # three more group_intervals: a silenced alert had its chance to leak
        yield observe()


def _describe(night: Night, labels: dict[str, str]) -> str:
    receivers = sorted(night.sent.get(_key(labels), set())) or "nowhere"
    silencers = [f"{s.get('alertname')}/{s.get('severity')}" for s in night.silencers(labels)]
    return f"{labels['alertname']}/{labels['severity']} sent to {receivers}, inhibited by {silencers or 'nothing'}"


def test_every_shipped_alert_is_paired() -> None:
    variants = shipped_variants()
    names = {v.name for v in variants}
    assert {"BatchRunTooLong", "BatchNoRecentSuccess", "BatchExporterDown", "Watchdog"} <= names
    assert len([v for v in variants if v.name == "BatchLogFileNearSizeLimit"]) == 2  # both tiers


def test_the_most_severe_alert_of_every_pair_is_notified(night: Night) -> None:
    failures = []
    for a, b in night.pairs:
        top = max(RANK[a["severity"]], RANK[b["severity"]])
        candidates = [x for x in (a, b) if RANK[x["severity"]] == top]
        if not any(night.notified(x) for x in candidates):
            failures.append(f"{_describe(night, a)}  +  {_describe(night, b)}")
    assert not failures, f"{len(failures)} of {len(night.pairs)} pairs notify nobody:\n" + "\n".join(failures)


def test_an_alert_is_silenced_only_by_one_that_explains_it(night: Night) -> None:
    wrong = []
    for labels in night.posted:
        silent = not night.notified(labels)
        if silent != night.expected_silent(labels):
            where = f"{labels.get('batch', '-')}@{labels.get('instance', '-')}"
            wrong.append(f"{where}: {_describe(night, labels)}; expected {'silent' if not silent else 'notified'}")
        elif silent and not night.silencers(labels):
            wrong.append(f"{_describe(night, labels)}: silent without an inhibition (lost?)")
    assert not wrong, "\n".join(wrong)


def test_staging_never_silences_production_for_the_same_batch_name(night: Night) -> None:
    production = [labels for labels in night.posted if labels.get("instance") == "production:10117"]
    crossed = [
        f"{_describe(night, labels)} by {source.get('instance')}"
        for labels in production
        for source in night.silencers(labels)
        if source.get("instance") != "production:10117"
    ]
    assert not crossed, "\n".join(crossed)
    # Production's own backstop is still explained by its own run alerts.
    backstop = next(labels for labels in production if labels["alertname"] == "BatchNoRecentSuccess")
    assert not night.notified(backstop)


def test_a_failing_check_does_not_silence_the_log_size_warnings(night: Night) -> None:
    log_size = {"BatchLogFileNearSizeLimit", "BatchLogFileWillHitLimit"}
    checked = [
        warning
        for a, b in night.pairs
        for check, warning in ((a, b), (b, a))
        if check["alertname"] == "BatchCheckFailed"
        and warning["alertname"] in log_size
        and warning["severity"] == "warning"
    ]
    assert {w["alertname"] for w in checked} == log_size
    assert all("ticket" in night.sent.get(_key(w), set()) for w in checked), [_describe(night, w) for w in checked]


def test_watchdog_reaches_only_the_heartbeat_and_absent_exporter_pages(night: Night) -> None:
    (watchdog,) = [labels for labels in night.posted if labels["alertname"] == "Watchdog"]
    assert night.sent.get(_key(watchdog)) == {"heartbeat"}, _describe(night, watchdog)
    assert night.held[_key(watchdog)]["status"]["inhibitedBy"] == []
    (absent,) = [labels for labels in night.posted if labels["alertname"] == "BatchExporterAbsent"]
    assert night.sent.get(_key(absent)) == {"pager"}, _describe(night, absent)
