"""The alert pack: promtool checks, the unit tests beside the rules, and what every alert must carry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_exporter.metrics import BY_NAME, exposed_names
from promql_names import BUILTIN_METRICS, TARGET_LABELS, selectors

ROOT = Path(__file__).resolve().parents[1]
ALERTS_DIR = ROOT / "alerts"
RULE_FILES = sorted(ALERTS_DIR.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS_DIR / "tests").glob("*.test.yml"))
RUNBOOKS = ALERTS_DIR / "runbooks"

# DESIGN.md's incident-to-alert map, plus the exporter's own health.
REQUIRED_ALERTS = {
    "BatchLogFileNearSizeLimit",
    "BatchLogFileWillHitLimit",
    "BatchLogSilentWhileRunning",
    "BatchRunFailed",
    "BatchLogErrors",
    "BatchRerunOfNonIdempotentBatch",
    "BatchRerunDetected",
    "BatchRunLeftPendingRecords",
    "BatchCheckFailed",
    "BatchRunMissed",
    "BatchRunTooLong",
    "BatchNoRecentSuccess",
    "BatchExporterSeriesCapReached",
    "BatchFinishDeadlineMissed",
    "BatchFinishDeadlineAtRisk",
    "BatchRunFarLongerThanUsual",
    "BatchRunSuspiciouslyFast",
    "BatchSuccessContradicted",
    "BatchSchedulePaused",
    "BatchExporterDown",
    "BatchExporterSourceDown",
    "BatchExporterSnapshotStale",
    "BatchExporterAbsent",
    "BatchExporterGone",
    "BatchExportedTwice",
    "BatchFleetShardsMisassigned",
    "Watchdog",
}
# Watchdog is the always-firing heartbeat (kube-prometheus's name and severity): it names no batch
# or instance, never pages and has no quiet case.
HEARTBEAT = "Watchdog"
SEVERITIES = {"critical", "warning", "info"}
# The oldest servers the pack works on, and the tool versions the checks below must run with:
# a newer promtool accepting the files would prove nothing about an older server.
MIN_PROMETHEUS = (2, 42)  # keep_firing_for
MIN_ALERTMANAGER = (0, 25)
RUNBOOK_SECTIONS = ("## What it means", "## Confirm", "## Do not", "## Recover", "## Who to ask")


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


ALERT_RULES = [rule for rule in _rules() if "alert" in rule]
RECORDING_RULES = [rule for rule in _rules() if "record" in rule]
ALERT_NAMES = sorted({rule["alert"] for rule in ALERT_RULES})


def _rule_id(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-{rule['labels']['severity']}"


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([name, *args], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return _tool("promtool", *args)


def _version(tool: str) -> tuple[int, int]:
    result = _tool(tool, "--version")
    match = re.search(r"version (\d+)\.(\d+)\.\d+", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return int(match[1]), int(match[2])


def test_the_pack_is_checked_with_the_minimum_versions_it_states() -> None:
    assert _version("promtool") == MIN_PROMETHEUS
    assert _version("amtool") == MIN_ALERTMANAGER
    header = RULE_FILES[0].read_text().split("groups:", 1)[0]
    assert "Prometheus >= {}.{}".format(*MIN_PROMETHEUS) in header
    assert "Alertmanager >= {}.{}".format(*MIN_ALERTMANAGER) in header
    rules = promtool("check", "rules", *map(str, RULE_FILES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _tool("amtool", "check-config", str(ALERTS_DIR / "alertmanager.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS" in config.stdout


def test_promtool_check_rules_is_clean() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_of_the_design_exists() -> None:
    assert set(ALERT_NAMES) == REQUIRED_ALERTS


@pytest.mark.parametrize("rule", ALERT_RULES, ids=_rule_id)
def test_alert_carries_what_on_call_needs(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    if name == HEARTBEAT:
        assert rule["expr"].strip() == "vector(1)" and rule["labels"] == {"severity": "none"}
        assert "dead man's switch" in rule["annotations"]["description"]
        return
    assert re.fullmatch(r"Batch(?:[A-Z][a-z0-9]*)+", name), "CamelCase Batch... name"
    assert rule["labels"]["severity"] in SEVERITIES
    assert "for" in rule, "every alert states its `for`, even 0m"
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    summary = annotations["summary"]
    assert "{{" not in summary and summary.endswith(".") and summary.count(". ") == 0, "one static sentence"
    description = annotations["description"]
    assert "$value" in description
    subjects = {"BatchExporterDown": "$labels.instance", "BatchExporterAbsent": "$labels.job",
                "BatchExporterSeriesCapReached": "$labels.instance"}
    subject = subjects.get(name, "$labels.batch")
    assert subject in description


def test_runbook_urls_share_one_base_and_name_a_runbook_that_exists() -> None:
    bases = set()
    for rule in ALERT_RULES:
        url = rule["annotations"]["runbook_url"]
        base, _, page = url.rpartition("/")
        assert page == f"{rule['alert']}.md"
        assert url.startswith("https://"), "a pager needs an absolute, clickable link"
        bases.add(base)
        assert (RUNBOOKS / page).is_file(), f"missing runbook {page}"
    assert bases == {"https://github.com/batch-exporter/batch-exporter/blob/main/alerts/runbooks"}


@pytest.mark.parametrize("name", sorted(REQUIRED_ALERTS))
def test_runbook_answers_the_on_call_questions(name: str) -> None:
    text = (RUNBOOKS / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n")
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{name}.md lacks {section!r}"


def test_no_runbook_without_an_alert() -> None:
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == REQUIRED_ALERTS


def test_alerts_readme_lists_every_alert() -> None:
    readme = (ALERTS_DIR / "README.md").read_text()
    for name in REQUIRED_ALERTS:
        assert f"`{name}`" in readme


def _unit_test_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


@pytest.mark.parametrize("rule", ALERT_RULES, ids=_rule_id)
def test_every_alert_tier_has_a_firing_and_a_quiet_unit_test(rule: dict[str, Any]) -> None:
    cases = [case for case in _unit_test_cases() if case["alertname"] == rule["alert"]]
    firing = [
        alert
        for case in cases
        for alert in case.get("exp_alerts") or []
        if alert["exp_labels"]["severity"] == rule["labels"]["severity"]
    ]
    assert firing, "no promtool case where this alert fires"
    assert all(set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"} for alert in firing)
    if rule["alert"] != HEARTBEAT:
        assert any(not case.get("exp_alerts") for case in cases), "no promtool case where it stays quiet"


def _known_metrics() -> set[str]:
    return exposed_names() | {rule["record"] for rule in RECORDING_RULES} | BUILTIN_METRICS


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rule_names_only_metrics_and_labels_the_exporter_exports(rule: dict[str, Any]) -> None:
    for selector in selectors(rule["expr"]):
        assert selector.metric in _known_metrics(), f"unknown metric {selector.metric}"
        spec = BY_NAME.get(selector.metric)
        if spec is not None:
            allowed = set(spec.labels) | TARGET_LABELS
            assert {label for label, _, _ in selector.matchers} <= allowed, selector


def test_recording_rules_follow_the_naming_convention() -> None:
    """level:metric[:operation], the level made of the labels the series keeps (besides the target's)."""
    labels = {label for spec in BY_NAME.values() for label in spec.labels}
    for rule in RECORDING_RULES:
        level, metric, *operation = rule["record"].split(":")
        assert len(operation) <= 1 and metric.startswith("batch_"), rule["record"]
        assert set(level.split("_")) <= labels, rule["record"]
