"""The Alertmanager example: amtool's checks, and real Prometheus + Alertmanager started by promstack.

The stack test scrapes a closed loopback port so that the shipped BatchExporterDown rule fires for
real, travels through the shipped routing and reaches the test's webhook; batch alerts posted to
Alertmanager directly then prove routing by severity and each inhibition rule.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from promstack import (
    ALERTMANAGER_CONFIG,
    REPO_ROOT,
    Overlay,
    PromStack,
    WebhookRecorder,
    alertmanager_config,
    free_port,
    prepare_prometheus,
    wait_until,
)

AM_CONFIG = REPO_ROOT / ALERTMANAGER_CONFIG
RULES = REPO_ROOT / "alerts" / "batch-exporter.rules.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], check=False, capture_output=True, text=True, timeout=30)


def test_amtool_check_config_is_clean() -> None:
    result = amtool("check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [
        ("critical", "pager"),
        ("warning", "ticket"),
        ("info", "null"),
        ("", "ticket"),  # an alert without a severity still reaches a human
    ],
)
def test_routes_by_severity(severity: str, receiver: str) -> None:
    labels = ["alertname=BatchRunFailed", "batch=card-authorization"]
    if severity:
        labels.append(f"severity={severity}")
    result = amtool(
        "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_severity_has_a_route() -> None:
    severities = {
        rule["labels"]["severity"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    routed = {
        matcher
        for route in yaml.safe_load(AM_CONFIG.read_text())["route"]["routes"]
        for matcher in route["matchers"]
    }
    assert {f'severity="{s}"' for s in severities} <= routed


def test_overlay_rewrites_only_a_copy() -> None:
    before = AM_CONFIG.read_text()
    config = alertmanager_config(webhook_base="http://127.0.0.1:1/hook", overlay=Overlay())
    assert AM_CONFIG.read_text() == before
    urls = {r["name"]: [h["url"] for h in r.get("webhook_configs", [])] for r in config["receivers"]}
    assert urls == {
        "pager": ["http://127.0.0.1:1/hook/pager"],
        "ticket": ["http://127.0.0.1:1/hook/ticket"],
        "null": [],
    }
    assert config["route"]["group_wait"] == "1s"
    assert all(r.get("repeat_interval", "1h") == "1h" for r in config["route"]["routes"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PromStack, WebhookRecorder]]:
    dead_exporter = f"127.0.0.1:{free_port()}"  # nothing listens there: up == 0
    with (
        WebhookRecorder() as hook,
        PromStack(
            tmp_path_factory.mktemp("promstack"), exporter_targets=[dead_exporter], webhook_base=hook.url
        ) as running,
    ):
        yield running, hook


def _shipped_rule_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule.get("alert") or rule["record"] for group in groups for rule in group["rules"]}


@pytest.mark.slow
def test_prometheus_loads_every_shipped_rule_with_the_overlay(
    stack: tuple[PromStack, WebhookRecorder],
) -> None:
    prom, _ = stack
    groups = prom.rule_groups()
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == _shipped_rule_names()
    assert {group["interval"] for group in groups} == {1}
    alerting = [rule for group in groups for rule in group["rules"] if rule["type"] == "alerting"]
    assert {rule["duration"] for rule in alerting} == {0, 2}  # every non-zero `for` became 2s

    def all_evaluated_ok() -> bool:
        rules = [rule for group in prom.rule_groups() for rule in group["rules"]]
        return all(rule["health"] == "ok" for rule in rules)

    wait_until(all_evaluated_ok, timeout=15, what="every rule evaluated without error")
    active = wait_until(
        lambda: prom.prometheus_api("alertmanagers")["activeAlertmanagers"],
        timeout=15,
        what="Prometheus to discover the Alertmanager",
    )
    assert [am["url"] for am in active] == [f"{prom.alertmanager_url}/api/v2/alerts"]


@pytest.mark.slow
def test_dead_exporter_pages_with_runbook_link(stack: tuple[PromStack, WebhookRecorder]) -> None:
    _, hook = stack
    pages = wait_until(
        lambda: [
            a for a in hook.alerts("pager", "firing") if a["labels"]["alertname"] == "BatchExporterDown"
        ],
        timeout=20,
        what="BatchExporterDown at the pager webhook",
    )
    alert = pages[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "batch-exporter"
    assert alert["annotations"]["runbook_url"].endswith("/alerts/runbooks/BatchExporterDown.md")
    assert not [a for a in hook.alerts("ticket") if a["labels"]["alertname"] == "BatchExporterDown"]


def _alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, "job": "batch-exporter", **labels},
        "annotations": {"summary": name},
    }


@pytest.mark.slow
def test_routing_and_inhibition_in_a_running_alertmanager(stack: tuple[PromStack, WebhookRecorder]) -> None:
    prom, hook = stack
    dead = next(
        a
        for a in wait_until(prom.alertmanager_alerts, timeout=20, what="BatchExporterDown in Alertmanager")
        if a["labels"]["alertname"] == "BatchExporterDown"
    )
    dead_instance = dead["labels"]["instance"]
    live = "exp-live:10117"
    prom.post_alerts(
        [
            # silenced by the real BatchExporterDown of the same exporter
            _alert("BatchRunFailed", "critical", batch="blind", instance=dead_instance),
            # a critical of a batch silences that batch's warning and info, not another batch's warning
            _alert("BatchRerunOfNonIdempotentBatch", "critical", batch="auth", instance=live),
            _alert("BatchLogErrors", "warning", batch="auth", instance=live, log="app", pattern="error"),
            _alert("BatchRerunDetected", "info", batch="auth", instance=live),
            _alert("BatchLogErrors", "warning", batch="settle", instance=live, log="app", pattern="error"),
            # the backstop stays silent while a specific alert explains it
            _alert("BatchRunMissed", "critical", batch="night", instance=live),
            _alert("BatchNoRecentSuccess", "critical", batch="night", instance=live),
            _alert("BatchRerunDetected", "info", batch="quiet", instance=live),
        ]
    )

    def delivered() -> set[tuple[str, str, str]]:
        return {
            (n.receiver, a["labels"]["alertname"], a["labels"].get("batch", ""))
            for n in hook.notifications()
            for a in n.payload["alerts"]
        }

    expected = {
        ("pager", "BatchExporterDown", ""),
        ("pager", "BatchRerunOfNonIdempotentBatch", "auth"),
        ("ticket", "BatchLogErrors", "settle"),
        ("pager", "BatchRunMissed", "night"),
    }
    wait_until(lambda: expected <= delivered(), timeout=20, what=f"notifications {sorted(expected)}")

    inhibited = {
        (a["labels"]["alertname"], a["labels"]["batch"])
        for a in prom.alertmanager_alerts(inhibited="true", active="false")
        if a["status"]["inhibitedBy"]
    }
    assert inhibited == {
        ("BatchRunFailed", "blind"),
        ("BatchLogErrors", "auth"),
        ("BatchRerunDetected", "auth"),
        ("BatchNoRecentSuccess", "night"),
    }
    # Their groups were due at the same moment as the delivered ones: none of them went out, and
    # info went nowhere.
    assert delivered() == expected


def test_shipped_prometheus_config_points_at_alertmanager_and_the_rules() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["../../alerts/*.rules.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["batch-exporter"]
    assert (
        Path(REPO_ROOT / "deploy/prometheus" / config["rule_files"][0]).parent.resolve()
        == (REPO_ROOT / "alerts").resolve()
    )


def _promtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_promtool_check_config_of_the_shipped_prometheus_config_from_any_directory() -> None:
    result = _promtool_check_config(REPO_ROOT / "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_check_config_of_the_test_overlay_copy(tmp_path: Path) -> None:
    config = prepare_prometheus(
        tmp_path, exporter_targets=["127.0.0.1:10117"], alertmanager="127.0.0.1:9093", overlay=Overlay()
    )
    result = _promtool_check_config(config)
    assert result.returncode == 0, result.stdout + result.stderr
    copied = yaml.safe_load(config.read_text())
    assert copied["global"]["evaluation_interval"] == "1s"
    assert copied["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:10117"]}]
    rules = yaml.safe_load((tmp_path / "alerts" / RULES.name).read_text())
    shipped = yaml.safe_load(RULES.read_text())
    for copy, original in zip(rules["groups"], shipped["groups"], strict=True):
        for new, old in zip(copy["rules"], original["rules"], strict=True):
            assert new["expr"] == old["expr"] and new.get("labels") == old.get("labels")
            if old.get("for") not in (None, "0m"):
                assert new["for"] == "2s"
            if "keep_firing_for" in old:
                assert new["keep_firing_for"] == "2s"
