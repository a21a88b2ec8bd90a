"""The alert pack on a second engine: VictoriaMetrics, vmagent and vmalert 1.79 (Debian's victoria-metrics).

vmalert loads alerts/vmalert/ (the rendering alerts/generate.py makes for it) and refuses the Prometheus
file, which is why the rendering exists. The differential test serves the expositions of two drill
scenarios (crash-no-rollback, fast-success; the drill's world on the real clock, since both engines
evaluate `time()` on it) to Prometheus 2.42 with the shipped rules and to vmagent -> VictoriaMetrics ->
vmalert with the vmalert rendering, both with the drill's short `for`s, and requires the same firing
alerts and the same recorded values from both. docs/victoriametrics.md records what differs otherwise.
"""
from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from batch_exporter.practice.drill.scenarios import BY_NAME, Scenario
from batch_exporter.practice.drill.target import open_target
from batch_exporter.practice.drill.world import DrillWorld
from ha_cluster import StaticExporter
from process_tree import alive
from promstack import EXPORTER_JOB, REPO_ROOT, Overlay, WebhookRecorder, free_port, prepare_prometheus, wait_until

VM_RULES = REPO_ROOT / "alerts" / "vmalert" / "batch-exporter.rules.yml"
PROMETHEUS_RULES = REPO_ROOT / "alerts" / "batch-exporter.rules.yml"
DOC = REPO_ROOT / "docs" / "victoriametrics.md"
VM_BINARIES = ("victoria-metrics", "vmagent", "vmalert")
SCENARIOS = ("crash-no-rollback", "fast-success", "blind-rerun", "log-limit", "missed-run")
ERROR_LINES = 'batch_log_matches_total{pattern=~"(?i)error|fatal|exception|critical"}'
# vmalert's own label on every alert (the group's name); Prometheus has none
VMALERT_ONLY_LABELS = ("alertgroup",)
SETTLE_TIMEOUT = 75.0  # rule chaining on vmalert reads records back through VictoriaMetrics: ~10 s a level
CONFIRM_SECONDS = 5.0  # once both agree: more than the short `for` (2s) and a few evaluations


def dry_run(rules: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vmalert", "-dryRun", f"-rule={rules}"], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT)


# --- loading the pack --------------------------------------------------------------------------------


def test_vmalert_loads_the_vmalert_rendering() -> None:
    result = dry_run(VM_RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_refuses_the_prometheus_rules_for_keep_firing_for() -> None:
    result = dry_run(PROMETHEUS_RULES)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    refusals = re.findall(r"unknown fields in rule: (\S+)", output)
    assert refusals and set(refusals) == {"keep_firing_for"}, output


@pytest.mark.parametrize(("old", "new", "refusal"), [
    ("increase_prometheus(batch_log", "increase_prometheus((batch_log", "invalid expression"),
    ("humanizePercentage", "humanizeNothing", "invalid annotations"),
], ids=["expression", "template"])
def test_the_dry_run_parses_expressions_and_templates(tmp_path: Path, old: str, new: str, refusal: str) -> None:
    # without this, loading the rendering would prove little: the dry run must read what it loads
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(VM_RULES.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    result = dry_run(broken)
    assert result.returncode != 0 and refusal in result.stdout + result.stderr, result.stdout + result.stderr


def _doc_commands() -> list[list[str]]:
    """The command lines of docs/victoriametrics.md's sh blocks, continuation lines joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if shlex.split(line, comments=True)]


def test_the_doc_names_only_flags_the_installed_binaries_have() -> None:
    commands = [c for c in _doc_commands() if c[0] in VM_BINARIES]
    assert {c[0] for c in commands} == set(VM_BINARIES), commands
    for binary in VM_BINARIES:
        shown = subprocess.run([binary, "-help"], capture_output=True, text=True, timeout=30)
        known = set(re.findall(r"^\s+-([\w.]+)", shown.stdout + shown.stderr, re.MULTILINE))
        assert len(known) > 20, f"{binary} -help listed no flags"
        for command in (c for c in commands if c[0] == binary):
            flags = {word[1:].split("=", 1)[0] for word in command[1:] if word.startswith("-")}
            assert flags <= known, f"{binary}: unknown flags {sorted(flags - known)} in {DOC.name}"


def test_the_doc_s_dry_runs_pass_as_written() -> None:
    # vmalert on the rendering, vmagent on the shipped Prometheus config's scrape job
    commands = [c for c in _doc_commands() if "-dryRun" in c]
    assert sorted(c[0] for c in commands) == ["vmagent", "vmalert"], commands
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert result.returncode == 0, f"{shlex.join(command)}:\n{result.stdout}{result.stderr}"


# --- the same scenarios on both engines --------------------------------------------------------------


@pytest.fixture(scope="module")
def expositions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What the exporter serves with each of SCENARIOS injected into the drill's world."""
    scratch = tmp_path_factory.mktemp("vm-drill")
    world = DrillWorld(open_target(None, scratch), scratch)
    texts: dict[str, str] = {}
    try:
        world.prepare()
        world.start_exporter(serve=False)
        for name in SCENARIOS:
            undo = BY_NAME[name].inject(world)
            texts[name] = world.scrape()
            undo()
            world.scrape()
    finally:
        world.close()
    return texts


def get(url: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}" if params else url, timeout=10) as reply:
        return json.load(reply)


@contextmanager
def server(name: str, argv: list[str], workdir: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running until the block ends (SIGTERM, SIGKILL after 10 s), once `ready_url` answers 200."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=30, what=f"{name} at {ready_url}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def short_fors(rules_text: str, overlay: Overlay) -> str:
    """The vmalert rules with the overlay's `for`, as prepare_prometheus gives Prometheus's copy."""
    rules = yaml.safe_load(rules_text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule.get("for") not in (None, "0s", "0m", 0):
                rule["for"] = overlay.alert_for
    return yaml.safe_dump(rules, sort_keys=False)


@dataclass
class Engines:
    """What both engines said once they agreed (or the time ran out)."""

    prometheus_alerts: set[tuple[str, ...]]
    vmalert_alerts: set[tuple[str, ...]]
    records: dict[str, tuple[list[Any], list[Any]]]  # record -> (Prometheus's, VictoriaMetrics's)
    rule_errors: list[str]                # rules either engine could not evaluate (an unknown function...)
    plain_increase: list[Any]             # MetricsQL's increase() of the error-line counters
    increase_prometheus: list[Any]        # and increase_prometheus(), on the same data
    pids: list[int]


def _alert_keys(alerts: list[dict[str, Any]], scenarios: dict[str, str]) -> set[tuple[str, ...]]:
    """Firing alerts as (scenario, alertname, batch, severity, other labels...); the instance names the scenario."""
    keys = set()
    for alert in alerts:
        if alert["state"] != "firing":
            continue
        labels = {k: v for k, v in alert["labels"].items() if k not in VMALERT_ONLY_LABELS}
        scenario = scenarios.get(labels.pop("instance", ""), "-")
        first = (scenario, labels.pop("alertname"), labels.pop("batch", ""), labels.pop("severity", ""))
        keys.add(first + tuple(f"{k}={v}" for k, v in sorted(labels.items())))
    return keys


def _same_samples(left: list[Any], right: list[Any]) -> bool:
    def by_labels(result: list[Any]) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k not in VMALERT_ONLY_LABELS)):
                float(s["value"][1]) for s in result}

    a, b = by_labels(left), by_labels(right)
    # rel_tol: a record holding time() (a projected end) moves by the few seconds between two evaluations
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-8) for k in a)


def _agree(left: set[tuple[str, ...]], right: set[tuple[str, ...]]) -> bool:
    return bool(left) and left == right


def _run_engines(workdir: Path, expositions: dict[str, str]) -> Engines:
    overlay = Overlay()
    servers = {name: StaticExporter(partial(str, text)) for name, text in expositions.items()}
    scenarios = {s.address: name for name, s in servers.items()}
    targets = [s.address for s in servers.values()]
    prom_port, vm_port, agent_port, vmalert_port = free_port(), free_port(), free_port(), free_port()
    prometheus, vm = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{vm_port}"
    vmalert = f"http://127.0.0.1:{vmalert_port}"
    record_names = [r["record"] for g in yaml.safe_load(VM_RULES.read_text(encoding="utf-8"))["groups"]
                    for r in g["rules"] if "record" in r]
    with WebhookRecorder() as prom_sink, WebhookRecorder() as vm_sink, ExitStack() as running:
        for exposition in servers.values():
            running.enter_context(exposition)
        prom_config = prepare_prometheus(workdir / "prometheus", exporter_targets=targets,
                                         alertmanager=prom_sink.url.removeprefix("http://"), overlay=overlay)
        # vmagent scrapes with Prometheus's own scrape job and intervals
        config = yaml.safe_load(prom_config.read_text(encoding="utf-8"))
        scrape = workdir / "vmagent.yml"
        scrape.write_text(yaml.safe_dump({
            "global": {k: config["global"][k] for k in ("scrape_interval", "scrape_timeout")},
            "scrape_configs": [j for j in config["scrape_configs"] if j["job_name"] == EXPORTER_JOB]}))
        vm_rules = workdir / VM_RULES.name
        vm_rules.write_text(short_fors(VM_RULES.read_text(encoding="utf-8"), overlay), encoding="utf-8")
        procs = [
            # VictoriaMetrics first: vmalert's first evaluations must find it
            running.enter_context(server("victoria-metrics", [
                "victoria-metrics", f"-storageDataPath={workdir / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
                "-retentionPeriod=1d", "-search.latencyOffset=0s", "-search.disableCache"],
                workdir, f"{vm}/health")),
            running.enter_context(server("vmagent", [
                "vmagent", f"-promscrape.config={scrape}", f"-remoteWrite.url={vm}/api/v1/write",
                f"-remoteWrite.tmpDataPath={workdir / 'vmagent-data'}", f"-httpListenAddr=127.0.0.1:{agent_port}",
                "-remoteWrite.flushInterval=100ms"],
                workdir, f"http://127.0.0.1:{agent_port}/health")),
            running.enter_context(server("vmalert", [
                "vmalert", f"-rule={vm_rules}", f"-datasource.url={vm}", f"-remoteWrite.url={vm}",
                f"-remoteRead.url={vm}", f"-notifier.url={vm_sink.url}", "-evaluationInterval=1s",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}", f"-rule.resendDelay={overlay.resend_delay}",
                "-remoteWrite.flushInterval=1s"],
                workdir, f"{vmalert}/health")),
            running.enter_context(server("prometheus", [
                "prometheus", f"--config.file={prom_config}", f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", f"--rules.alert.resend-delay={overlay.resend_delay}"],
                workdir, f"{prometheus}/-/ready")),
        ]

        def alerts() -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
            # vmalert answers `"alerts": null` while none is pending or firing
            return (_alert_keys(get(f"{prometheus}/api/v1/alerts")["data"]["alerts"] or [], scenarios),
                    _alert_keys(get(f"{vmalert}/api/v1/alerts")["data"]["alerts"] or [], scenarios))

        def records() -> dict[str, tuple[list[Any], list[Any]]]:
            return {name: (get(f"{prometheus}/api/v1/query", query=name)["data"]["result"],
                           get(f"{vm}/api/v1/query", query=name)["data"]["result"]) for name in record_names}

        def settled(check: Callable[[], bool]) -> Callable[[], bool]:
            return lambda: check() or time.monotonic() > deadline

        deadline = time.monotonic() + SETTLE_TIMEOUT
        # Prometheus first (its records and `for`s settle within seconds), then VictoriaMetrics catches up:
        # every record the same, then the alerts reading them through their `for`
        wait_until(settled(lambda: all(_expected_fired(BY_NAME[n], alerts()[0], n) for n in SCENARIOS)),
                   timeout=SETTLE_TIMEOUT + 5, what="Prometheus firing the scenarios' alerts")
        wait_until(settled(lambda: all(_same_samples(*pair) for pair in records().values())),
                   timeout=SETTLE_TIMEOUT + 5, what="the same records on both engines")
        wait_until(settled(lambda: _agree(*alerts())), timeout=SETTLE_TIMEOUT + 5, what="the same alerts on both")
        time.sleep(CONFIRM_SECONDS)  # an alert vmalert adds later would show now
        prometheus_alerts, vmalert_alerts = alerts()
        found_records = records()
        plain = get(f"{vm}/api/v1/query", query=f"increase({ERROR_LINES}[15m]) > 0")["data"]["result"]
        compatible = get(f"{vm}/api/v1/query", query=f"increase_prometheus({ERROR_LINES}[15m]) > 0")["data"]["result"]
        errors = [f"{engine}: {rule['name']}: {rule['lastError']}" for engine, url in (("prometheus", prometheus),
                                                                                      ("vmalert", vmalert))
                  for group in get(f"{url}/api/v1/rules")["data"]["groups"] for rule in group["rules"]
                  if rule.get("lastError")]
        pids = [p.pid for p in procs]
    return Engines(prometheus_alerts, vmalert_alerts, found_records, errors, plain, compatible, pids)


def _expected_fired(scenario: Scenario, keys: set[tuple[str, ...]], name: str) -> bool:
    """Every alert the drill expects of `scenario` is among `keys`, from the exposition of scenario `name`."""
    fired = [{"alertname": key[1], "batch": key[2], "severity": key[3], **dict(item.split("=", 1) for item in key[4:])}
             for key in keys if key[0] == name]
    return all(any(expected.matches(labels) for labels in fired) for expected in scenario.expected)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, expositions: dict[str, str]) -> Engines:
    return _run_engines(tmp_path_factory.mktemp("engines"), expositions)


@pytest.mark.slow
def test_both_engines_fire_the_same_alerts_for_the_same_batches(engines: Engines) -> None:
    only_prometheus = sorted(engines.prometheus_alerts - engines.vmalert_alerts)
    only_vmalert = sorted(engines.vmalert_alerts - engines.prometheus_alerts)
    assert not only_prometheus and not only_vmalert, (
        f"only Prometheus fired: {only_prometheus}\nonly vmalert fired: {only_vmalert}")
    # not a vacuous agreement: each scenario's own alerts fired (on both, as the sets are equal)
    for name in SCENARIOS:
        assert _expected_fired(BY_NAME[name], engines.vmalert_alerts, name), (name, sorted(engines.vmalert_alerts))


@pytest.mark.slow
def test_both_engines_evaluate_every_rule_without_an_error(engines: Engines) -> None:
    # the dry run parses MetricsQL but does not resolve function names: evaluation does
    assert not engines.rule_errors


@pytest.mark.slow
def test_both_engines_record_the_same_values(engines: Engines) -> None:
    differ = [name for name, pair in engines.records.items() if not _same_samples(*pair)]
    assert not differ, {name: engines.records[name] for name in differ}
    assert sum(1 for prometheus, _ in engines.records.values() if prometheus) >= 5, engines.records


@pytest.mark.slow
def test_without_increase_prometheus_vmalert_would_report_old_error_lines_as_new(engines: Engines) -> None:
    # the exporter's counters of error lines hold constant values read at its first start: MetricsQL's
    # increase() counts them from 0 (BatchLogErrors would fire), increase_prometheus() as Prometheus does
    assert engines.plain_increase, "expected error-line counters in the scenarios' expositions"
    assert not engines.increase_prometheus, engines.increase_prometheus
    assert not any(key[1] == "BatchLogErrors" for key in engines.vmalert_alerts)


@pytest.mark.slow
def test_every_engine_process_is_reaped(engines: Engines) -> None:
    assert len(engines.pids) == 4
    assert not [pid for pid in engines.pids if alive(pid)]
