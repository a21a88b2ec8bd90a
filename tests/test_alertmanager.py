"""The Alertmanager example: amtool's checks, and real Prometheus + Alertmanager started by promstack.

The stack test scrapes a closed loopback port so that the shipped BatchExporterDown rule fires for
real, travels through the shipped routing and reaches the test's webhook; batch alerts posted to
Alertmanager directly then prove routing by severity and each inhibition rule.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
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


def _shipped_alerts() -> list[tuple[str, str]]:
    """(alertname, severity) of every alerting rule, each tier once."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    found = [(rule["alert"], rule["labels"]["severity"]) for g in groups for rule in g["rules"] if "alert" in rule]
    return list(dict.fromkeys(found))


def test_every_shipped_alert_routes_to_its_receiver() -> None:
    expected = {"critical": "pager", "warning": "ticket", "info": "null"}
    wrong = []
    for name, severity in _shipped_alerts():
        receiver = "heartbeat" if name == "Watchdog" else expected[severity]
        result = amtool(
            "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}",
            f"alertname={name}", f"severity={severity}", "batch=card-authorization", "instance=exp:10117",
            "job=batch-exporter",
        )
        if result.returncode != 0:
            wrong.append(f"{name}/{severity}: {result.stdout.strip()} instead of {receiver}")
    assert not wrong, "\n".join(wrong)
    assert ("BatchExporterAbsent", "critical") in _shipped_alerts()


def _route_for(labels: dict[str, str]) -> dict[str, Any]:
    """The shipped route `labels` take, with the timings it inherits from the root filled in."""
    root = yaml.safe_load(AM_CONFIG.read_text())["route"]

    def matches(matcher: str) -> bool:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()  # type: ignore[union-attr]
        actual = labels.get(name, "")
        hit = re.fullmatch(value, actual) is not None if "~" in op else actual == value
        return hit != op.startswith("!")

    route = next(r for r in root["routes"] if all(matches(m) for m in r["matchers"]))
    timings = {key: route.get(key, root[key]) for key in ("group_wait", "group_interval", "repeat_interval")}
    return {**route, **timings}


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))


def test_repeat_intervals_per_alert_class() -> None:
    def repeat(name: str, severity: str) -> float:
        return _seconds(_route_for({"alertname": name, "severity": severity})["repeat_interval"])

    # A day-long critical re-pages every 4 h, not every hour; a blind monitoring reminds hourly.
    assert repeat("BatchRunFailed", "critical") == repeat("BatchRerunOfNonIdempotentBatch", "critical") == 4 * 3600
    assert repeat("BatchExporterDown", "critical") == repeat("BatchExporterAbsent", "critical") == 3600
    assert repeat("BatchLogErrors", "warning") == 24 * 3600


def test_heartbeat_route_beats_often_and_never_reports_resolved() -> None:
    route = _route_for({"alertname": "Watchdog", "severity": "none"})
    assert route["receiver"] == "heartbeat"
    assert _seconds(route["group_wait"]) == 0
    # a beat at the first group_interval tick after repeat_interval: both well inside a 5-minute timeout
    assert _seconds(route["repeat_interval"]) + _seconds(route["group_interval"]) <= 150
    config = yaml.safe_load(AM_CONFIG.read_text())
    (heartbeat,) = [r for r in config["receivers"] if r["name"] == "heartbeat"]
    assert all(hook["send_resolved"] is False for hook in heartbeat["webhook_configs"])
    assert config["route"]["routes"][0]["matchers"] == ['alertname="Watchdog"']


def test_overlay_rewrites_only_a_copy() -> None:
    before = AM_CONFIG.read_text()
    config = alertmanager_config(webhook_base="http://127.0.0.1:1/hook", overlay=Overlay())
    assert AM_CONFIG.read_text() == before
    urls = {r["name"]: [h["url"] for h in r.get("webhook_configs", [])] for r in config["receivers"]}
    assert urls == {
        "heartbeat": ["http://127.0.0.1:1/hook/heartbeat"],
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
    sdk_log = {"log": "sdk", "path": "/var/log/vendor/auth.log"}
    prom.post_alerts(
        [
            # silenced by the real BatchExporterDown of the same exporter
            _alert("BatchRunFailed", "critical", batch="blind", instance=dead_instance),
            # a critical of another cause does not silence the batch's warning and info
            _alert("BatchRerunOfNonIdempotentBatch", "critical", batch="auth", instance=live),
            _alert("BatchLogErrors", "warning", batch="auth", instance=live, log="app", pattern="error"),
            _alert("BatchRerunDetected", "info", batch="auth", instance=live),
            _alert("BatchLogErrors", "warning", batch="settle", instance=live, log="app", pattern="error"),
            # the backstop stays silent while a specific alert explains it
            _alert("BatchRunMissed", "critical", batch="night", instance=live),
            _alert("BatchNoRecentSuccess", "critical", batch="night", instance=live),
            _alert("BatchRerunDetected", "info", batch="quiet", instance=live),
            # the critical tier of an alert silences its warning tier for the same file
            _alert("BatchLogFileNearSizeLimit", "critical", batch="clearing", instance=live, **sdk_log),
            _alert("BatchLogFileNearSizeLimit", "warning", batch="clearing", instance=live, **sdk_log),
            # an exporter gone from service discovery: one page for all its batches
            *(_alert("BatchExporterGone", "critical", batch=f"fleet-job-{n}", instance="gone:10117")
              for n in range(3)),
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
        ("heartbeat", "Watchdog", ""),  # the shipped rules' own Watchdog
        ("pager", "BatchRerunOfNonIdempotentBatch", "auth"),
        ("ticket", "BatchLogErrors", "auth"),
        ("ticket", "BatchLogErrors", "settle"),
        ("pager", "BatchRunMissed", "night"),
        ("pager", "BatchLogFileNearSizeLimit", "clearing"),
        *(("pager", "BatchExporterGone", f"fleet-job-{n}") for n in range(3)),
    }
    wait_until(lambda: expected <= delivered(), timeout=20, what=f"notifications {sorted(expected)}")
    gone = [n for n in hook.notifications() if n.payload["groupLabels"].get("alertname") == "BatchExporterGone"]
    assert len(gone) == 1 and len(gone[0].payload["alerts"]) == 3, [n.payload for n in gone]
    assert gone[0].payload["groupLabels"] == {"alertname": "BatchExporterGone", "instance": "gone:10117",
                                              "job": "batch-exporter"}

    inhibited = {
        (a["labels"]["alertname"], a["labels"]["batch"], a["labels"]["severity"])
        for a in prom.alertmanager_alerts(inhibited="true", active="false")
        if a["status"]["inhibitedBy"]
    }
    assert inhibited == {
        ("BatchRunFailed", "blind", "critical"),
        ("BatchNoRecentSuccess", "night", "critical"),
        ("BatchLogFileNearSizeLimit", "clearing", "warning"),
    }
    # Their groups were due at the same moment as the delivered ones: none of them went out, and
    # info went nowhere.
    assert delivered() == expected


@pytest.mark.slow
def test_watchdog_beats_on_the_heartbeat_only(tmp_path: Path) -> None:
    # repeat_interval 2 s in this copy (the shipped 1m would make the test wait minutes); the
    # shipped route's timings are checked in test_heartbeat_route_beats_often_and_never_reports_resolved.
    # No exporter target at all: the shipped BatchExporterAbsent fires for real as well.
    with (
        WebhookRecorder() as hook,
        PromStack(tmp_path, webhook_base=hook.url, overlay=Overlay(repeat_interval="2s")),
    ):
        beats = wait_until(
            lambda: len(hook.notifications("heartbeat")) >= 3 and hook.notifications("heartbeat"),
            timeout=40,
            what="three Watchdog notifications at the heartbeat",
        )
        wait_until(
            lambda: [a for a in hook.alerts("pager", "firing") if a["labels"]["alertname"] == "BatchExporterAbsent"],
            timeout=30,
            what="BatchExporterAbsent at the pager",
        )
    assert {a["labels"]["alertname"] for n in beats for a in n.payload["alerts"]} == {"Watchdog"}
    assert {a["status"] for n in beats for a in n.payload["alerts"]} == {"firing"}
    watchdog_receivers = {
        n.receiver for n in hook.notifications() for a in n.payload["alerts"] if a["labels"]["alertname"] == "Watchdog"
    }
    assert watchdog_receivers == {"heartbeat"}
    assert {n.receiver for n in hook.notifications()} <= {"heartbeat", "pager"}


@dataclass
class PagerNight:
    """Arrival times at the pager, in seconds after the second post (exporter back, third run)."""

    recovered_run_failed: float  # inf: never
    third_attempt: float
    second_attempt_resolved: bool
    timings: dict[str, Any]


@pytest.fixture(scope="module")
def pager_night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagerNight]:
    """Items 5 and 9 on the shipped pager timings (group_wait, group_interval of the batch critical
    route, applied to the whole copy): the overlay's 1 s would hide how long a page really waits."""
    timings = _route_for({"alertname": "BatchRunFailed", "severity": "critical"})
    overlay = Overlay(**{key: timings[key] for key in ("group_wait", "group_interval", "repeat_interval")})
    down = _alert("BatchExporterDown", "critical", instance="exp-back:10117")
    failed = _alert("BatchRunFailed", "critical", batch="settle", instance="exp-back:10117", code="ABEND")
    second = _alert("BatchRerunOfNonIdempotentBatch", "critical", batch="auth", instance="exp-b:10117", attempt="2")
    third = _alert("BatchRerunOfNonIdempotentBatch", "critical", batch="auth", instance="exp-b:10117", attempt="3")

    def at_pager(alert: dict[str, Any], status: str = "firing") -> list[float]:
        return [
            n.received_at
            for n in hook.notifications("pager")
            for a in n.payload["alerts"]
            if a["labels"] == alert["labels"] and a["status"] == status
        ]

    with (
        WebhookRecorder() as hook,
        PromStack(tmp_path_factory.mktemp("pager-night"), webhook_base=hook.url, overlay=overlay) as stack,
    ):
        stack.post_alerts([down, failed, second])
        # The groups' first flush: the exporter-down page and the second run went out, the failed
        # run was held by the inhibition.
        wait_until(lambda: at_pager(down) and at_pager(second), timeout=_seconds(timings["group_wait"]) + 30,
                   what="the first pages")
        assert not at_pager(failed)
        time.sleep(1)
        back = time.time()
        stack.post_alerts([{**down, "endsAt": _iso(back - 1)}, second, third])
        with suppress(TimeoutError):  # the tests say which page was late
            wait_until(lambda: at_pager(failed) and at_pager(third), timeout=RECOVERY_BOUND + 5, what="pages")
        yield PagerNight(
            recovered_run_failed=min(at_pager(failed), default=float("inf")) - back,
            third_attempt=min(at_pager(third), default=float("inf")) - back,
            second_attempt_resolved=bool(at_pager(second, "resolved")),
            timings=timings,
        )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


# Bound: the pager route's group_interval (1 minute) after BatchExporterDown's resolution reaches
# Alertmanager, plus 15 s for a loaded machine. With the rules' own lag (BatchExporterDown resolves
# at the first good scrape, evaluated within a minute), a failure that is still true pages within
# about two minutes of the exporter's recovery.
RECOVERY_BOUND = 60 + 15


@pytest.mark.slow
def test_a_failure_still_true_pages_within_a_minute_of_the_exporter_recovering(pager_night: PagerNight) -> None:
    assert _seconds(pager_night.timings["group_interval"]) + 15 <= RECOVERY_BOUND
    assert pager_night.recovered_run_failed <= RECOVERY_BOUND, (
        f"BatchRunFailed reached the pager {pager_night.recovered_run_failed:.0f}s after the exporter came back"
    )


@pytest.mark.slow
def test_a_further_run_pages_within_group_wait_and_resolves_nothing(pager_night: PagerNight) -> None:
    bound = _seconds(pager_night.timings["group_wait"]) + 15
    assert pager_night.third_attempt <= bound, (
        f"the third run reached the pager {pager_night.third_attempt:.0f}s after it started (bound {bound:.0f}s)"
    )
    assert not pager_night.second_attempt_resolved


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
