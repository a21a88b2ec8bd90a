"""Issue 15, item 1: the HA paging path of docs/ha.md, end to end on loopback.

Three Alertmanagers in one gossip cluster and two Prometheus replicas, both loaded with the shipped rules
and sending to all three, watch a static exporter (tests/ha_cluster.py). Each Alertmanager is started
with the command of docs/ha.md, and each Prometheus gets the `alerting` section of docs/ha.md, both
moved to loopback ports. The scenario, counted at the webhook:

1. the cluster has three peers, all ready, before any Prometheus starts; then four groups fire
   (Watchdog, two failed runs, a stale source) and each is notified exactly once;
2. SIGKILL of the Alertmanager that sent the last notification and of Prometheus a; a new failed run
   is notified exactly once, and nothing is "resolved";
3. both start again and the member rejoins: nothing is notified again;
4. a group born after the rejoin fires and resolves: one "firing", one "resolved".

The negative control plays steps 1-3 with the same members each on its own (no gossip): every
surviving member notifies, so the counts of steps 1-3 show duplicates, and the assertions above can
fail. Timings are shortened as the drills do (Overlay: 1 s scrape and evaluation, `for` 2 s,
group_wait 1 s) with group_interval 3 s, which must outlast the last member's wait (2 x 1 s
peer-timeout, docs/ha.md). Step 4 does not use a group that existed before the restart: the
restarted member's ticks are out of phase for those, and their "resolved" can be followed by a stale
"firing" (docs/ha.md, Limits measured).

The counts of each step are printed and written to notification-counts.json under the test's
temporary folder. The exporter's series are built from the clock when they are scraped (Prometheus
evaluates on the real time); test_the_fleet_fires_exactly_the_planned_alerts replays them at a fixed
instant through promtool, with the rules' real `for`.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ha_cluster import (
    AlertmanagerArgs,
    AlertmanagerSlot,
    ClusterView,
    Fleet,
    PagingPath,
    ReplicaConfig,
    Sent,
    StaticExporter,
    tally,
    without_gossip,
)
from process_tree import alive, children_of
from promstack import REPO_ROOT, Overlay, StackError, WebhookRecorder, alertmanager_config, wait_until

DOC = REPO_ROOT / "docs" / "ha.md"
MEMBERS = 3
# The test's gossip timings, in place of docs/ha.md's production values (as the Overlay shortens `for`).
TEST_GOSSIP = {"--cluster.peer-timeout": "1s", "--cluster.settle-timeout": "10s", "--cluster.gossip-interval": "50ms"}
PEER_TIMEOUT = 1.0
# BatchExporterAbsent keeps its 5m: at 2 s it fires whenever Prometheus evaluates before its first scrape.
OVERLAY = Overlay(group_wait="1s", group_interval="3s", shipped_for=("BatchExporterAbsent",))
# Long enough for the last member's copy of a notification to arrive, had it not been deduplicated.
QUIET = (MEMBERS - 1) * PEER_TIMEOUT + 3
REJOIN_WINDOW = 8.0  # after the restarted Prometheus fires again: the rejoined member's groups have flushed
WAIT = 60.0

CARD_AUTH, CLEARING, LEDGER, SETTLEMENT, PAYROLL = (
    "card-authorization", "clearing-upload", "ledger-export", "settlement-report", "payroll-export")
FAILED_FROM_THE_START = (CARD_AUTH, CLEARING)
STALE = LEDGER               # its run source stopped polling half an hour ago
FAILS_AFTER_THE_KILL = SETTLEMENT
BORN_AFTER_THE_REJOIN = PAYROLL
STEP1 = {
    "heartbeat Watchdog firing",
    f"pager BatchRunFailed {CARD_AUTH} firing",
    f"pager BatchRunFailed {CLEARING} firing",
    f"ticket BatchExporterSnapshotStale {LEDGER} firing",
}
STEP2 = f"pager BatchRunFailed {FAILS_AFTER_THE_KILL} firing"
STEP4 = {f"pager BatchRunFailed {BORN_AFTER_THE_REJOIN} firing": 1,
         f"pager BatchRunFailed {BORN_AFTER_THE_REJOIN} resolved": 1}
STEPS = {
    1: "both Prometheus, three Alertmanagers: four groups fire",
    2: "after SIGKILL of the last sender and of Prometheus a, a new failed run",
    3: "both started again, the member rejoined",
    4: "a group born after the rejoin fires, then resolves",
}


# --- docs/ha.md as the configuration -------------------------------------------------------------------

def doc_block(lang: str) -> str:
    """The one fenced block of docs/ha.md in `lang`."""
    blocks = re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
    if len(blocks) != 1:
        raise ValueError(f"{DOC.relative_to(REPO_ROOT)}: expected one ```{lang} block, found {len(blocks)}")
    return str(blocks[0])


def documented_replica_config(block: str | None = None) -> ReplicaConfig:
    """docs/ha.md's Prometheus settings for one replica: its replica label, the doc's alert relabelling,
    and every Alertmanager of the test in place of the doc's."""
    doc = yaml.safe_load(block if block is not None else doc_block("yaml"))
    where = DOC.relative_to(REPO_ROOT)
    try:
        labels = doc["global"]["external_labels"]
        alerting = doc["alerting"]
        [static] = alerting["alertmanagers"]
        [targets] = static["static_configs"]
        documented = targets["targets"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the yaml block needs global.external_labels.replica and one "
                         f"alerting.alertmanagers[].static_configs[].targets list ({exc!r})") from None
    if "replica" not in labels:
        raise ValueError(f"{where}: global.external_labels has no replica label")

    def config(replica: str, alertmanagers: Sequence[str]) -> dict[str, Any]:
        if len(documented) != len(alertmanagers):
            raise ValueError(f"{where}: lists {len(documented)} Alertmanagers, the test runs {len(alertmanagers)}")
        section = json.loads(json.dumps(alerting))  # a copy for each replica
        section["alertmanagers"][0]["static_configs"][0]["targets"] = list(alertmanagers)
        return {"global": {"external_labels": {**labels, "replica": replica}}, "alerting": section}

    return config


def documented_flags(block: str | None = None) -> list[tuple[str, str]]:
    """(flag, value) of docs/ha.md's Alertmanager command, in order."""
    words = shlex.split((block if block is not None else doc_block("sh")).replace("\\\n", " "))
    if not words or words[0] != "alertmanager":
        raise ValueError(f"{DOC.relative_to(REPO_ROOT)}: the sh block must be one alertmanager command")
    flags = []
    for word in words[1:]:
        name, equals, value = word.partition("=")
        if not name.startswith("--") or not equals:
            raise ValueError(f"{DOC.relative_to(REPO_ROOT)}: {word!r} is not a --flag=value")
        flags.append((name, value))
    return flags


# Where each documented flag points, for one member on loopback.
LOOPBACK = {
    "--config.file": lambda slot: str(slot.config_file),
    "--storage.path": lambda slot: str(slot.data_dir),
    "--web.listen-address": lambda slot: slot.web,
    "--web.external-url": lambda slot: f"http://{slot.web}",
    "--cluster.listen-address": lambda slot: slot.cluster,
}


def documented_alertmanager_args(block: str | None = None) -> AlertmanagerArgs:
    """docs/ha.md's command for each member: its own addresses and files, the other members as peers,
    and the test's shorter gossip timings."""
    flags = documented_flags(block)
    where = DOC.relative_to(REPO_ROOT)
    unknown = sorted({name for name, _ in flags} - set(LOOPBACK) - set(TEST_GOSSIP) - {"--cluster.peer"})
    if unknown:
        raise ValueError(f"{where}: the Alertmanager command sets {', '.join(unknown)}, which this test "
                         "cannot move to loopback; add them to LOOPBACK or TEST_GOSSIP")

    def args(slot: AlertmanagerSlot) -> list[str]:
        peers = [value for name, value in flags if name == "--cluster.peer"]
        if len(peers) != len(slot.peers):
            raise ValueError(f"{where}: names {len(peers)} peers; each of the test's members has {len(slot.peers)}")
        out = [f"{name}={LOOPBACK[name](slot)}" for name, _ in flags if name in LOOPBACK]
        out += [f"--cluster.peer={peer}" for peer in slot.peers]
        return out + [f"{name}={value}" for name, value in TEST_GOSSIP.items()]

    return args


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def resolving_routes(config: dict[str, Any]) -> list[tuple[str, float]]:
    """(receiver, group_interval in seconds) of every route whose receiver sends "resolved"."""
    resolves = {r["name"] for r in config["receivers"]
                if any(h.get("send_resolved", True) for h in r.get("webhook_configs", []))}
    root = config["route"]
    routes = [root, *root.get("routes", [])]
    return [(r.get("receiver", root["receiver"]), _seconds(r.get("group_interval", root.get("group_interval", "5m"))))
            for r in routes if r.get("receiver", root["receiver"]) in resolves]


# --- fast checks ---------------------------------------------------------------------------------------

def test_the_documented_prometheus_section_drops_the_replica_label_on_the_alert_path_only() -> None:
    config = documented_replica_config()("b", ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])
    assert config["global"]["external_labels"] == {"replica": "b"}
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert config["alerting"]["alertmanagers"] == [
        {"static_configs": [{"targets": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]}]}]
    with pytest.raises(ValueError, match=r"docs/ha.md: lists 3 Alertmanagers, the test runs 2"):
        documented_replica_config()("a", ["127.0.0.1:1", "127.0.0.1:2"])
    with pytest.raises(ValueError, match=r"docs/ha.md: the yaml block needs .*targets"):
        documented_replica_config("global: {external_labels: {replica: a}}\n")


def test_the_documented_command_becomes_each_member_s_loopback_command(tmp_path: Path) -> None:
    slot = AlertmanagerSlot(1, "127.0.0.1:9093", "127.0.0.1:9094", ("127.0.0.1:8001", "127.0.0.1:8002"),
                            tmp_path / "am.yml", tmp_path / "data")
    args = documented_alertmanager_args()(slot)
    assert args == [
        f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
        "--web.listen-address=127.0.0.1:9093", "--web.external-url=http://127.0.0.1:9093",
        "--cluster.listen-address=127.0.0.1:9094",
        "--cluster.peer=127.0.0.1:8001", "--cluster.peer=127.0.0.1:8002",
        "--cluster.peer-timeout=1s", "--cluster.settle-timeout=10s", "--cluster.gossip-interval=50ms",
    ]
    assert without_gossip(documented_alertmanager_args())(slot)[-1] == "--cluster.listen-address="
    assert not [a for a in without_gossip(documented_alertmanager_args())(slot)[:-1] if a.startswith("--cluster.")]
    with pytest.raises(ValueError, match=r"docs/ha.md: the Alertmanager command sets --cluster.probe-timeout"):
        documented_alertmanager_args("alertmanager --cluster.probe-timeout=1s\n")


def test_group_interval_outlasts_the_last_member_s_wait_in_the_doc_and_in_the_test() -> None:
    """docs/ha.md's rule: group_interval > (members - 1) x peer-timeout on every route that resolves."""
    flags = documented_flags()
    members = 1 + sum(1 for name, _ in flags if name == "--cluster.peer")
    peer_timeout = _seconds(dict(flags)["--cluster.peer-timeout"])
    assert members == MEMBERS
    shipped = yaml.safe_load((REPO_ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8"))
    routes = resolving_routes(shipped)
    assert {receiver for receiver, _ in routes} == {"pager", "ticket"}  # the heartbeat sends no "resolved"
    too_short = [(r, gi) for r, gi in routes if gi <= (members - 1) * peer_timeout]
    assert not too_short, f"group_interval within the last member's wait of {(members - 1) * peer_timeout:g}s"
    ours = resolving_routes(alertmanager_config(webhook_base="http://127.0.0.1:1", overlay=OVERLAY))
    assert ours and all(gi > (MEMBERS - 1) * PEER_TIMEOUT for _, gi in ours)
    assert _seconds(TEST_GOSSIP["--cluster.peer-timeout"]) == PEER_TIMEOUT


def test_the_fleet_fires_exactly_the_planned_alerts(tmp_path: Path) -> None:
    """The exporter's series at a fixed instant, replayed by promtool against the shipped rules with their
    real `for`: only Watchdog, the failed runs and the stale source fire."""
    instant = 7200.0  # promtool's clock starts at 0; two hours in, every timestamp is positive
    fleet = Fleet([CARD_AUTH, CLEARING, LEDGER, SETTLEMENT], lambda: instant, stale=[STALE])
    for batch in FAILED_FROM_THE_START:
        fleet.run_fails(batch)
    minutes = 130  # the series stay as built from minute 0 to 130; the stale source's rule came due at 110
    series = []
    for line in fleet.exposition().splitlines():
        if line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, labels = name_labels.rstrip("}").split("{")
        series.append({"series": f'{name}{{{labels},job="batch-exporter",instance="exp:10117"}}',
                       "values": f"{value}+0x{minutes}"})
    series.append({"series": 'up{job="batch-exporter",instance="exp:10117"}', "values": f"1+0x{minutes}"})
    expected = [{"labels": '{alertname="Watchdog"}', "value": 1},
                {"labels": f'{{alertname="BatchExporterSnapshotStale",batch="{STALE}"}}', "value": 1}]
    expected += [{"labels": f'{{alertname="BatchRunFailed",batch="{b}"}}', "value": 1} for b in FAILED_FROM_THE_START]
    unit = {"rule_files": [str(p) for p in sorted((REPO_ROOT / "alerts").glob("*.rules.yml"))],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [
                {"expr": 'count by (alertname, batch) (ALERTS{alertstate="firing"})', "eval_time": f"{minutes}m",
                 "exp_samples": expected}]}]}
    test_file = tmp_path / "fleet.test.yml"
    test_file.write_text(yaml.safe_dump(unit, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the scenario on real servers ----------------------------------------------------------------------

@dataclass
class Outcome:
    gossip: bool
    settled: list[ClusterView]       # what each member said once settled, before any Prometheus started
    sent_before_prometheus: int
    steps: dict[int, list[Sent]]
    victim: int                      # the Alertmanager killed in step 2
    pids: set[int]                   # every server process started
    seconds: float

    def counts(self) -> dict[int, dict[str, int]]:
        return {step: tally(sent) for step, sent in self.steps.items()}


def _since(path: PagingPath, start: int) -> list[Sent]:
    return path.sent()[start:]


def _wait_for(path: PagingPath, start: int, wanted: set[str], what: str) -> None:
    wait_until(lambda: wanted <= set(tally(_since(path, start))), timeout=WAIT, interval=0.1,
               what=f"{what}: {sorted(wanted)} (so far {tally(_since(path, start))})")


def play(workdir: Path, *, gossip: bool) -> Outcome:
    """Steps 1-3 (and 4 with gossip) on a fresh path; every server stopped before returning."""
    began = time.monotonic()
    fleet = Fleet([CARD_AUTH, CLEARING, LEDGER, SETTLEMENT, PAYROLL], time.time, stale=[STALE])
    for batch in FAILED_FROM_THE_START:
        fleet.run_fails(batch)
    args = documented_alertmanager_args()
    steps: dict[int, list[Sent]] = {}
    with (
        StaticExporter(fleet.exposition) as exporter,
        WebhookRecorder() as hook,
        PagingPath(workdir, exporter=exporter.address, recorder=hook, overlay=OVERLAY,
                   alertmanager_args=args if gossip else without_gossip(args),
                   replica_config=documented_replica_config(), alertmanagers=MEMBERS) as path,
    ):
        try:
            path.start_alertmanagers()
            settled = path.wait_settled(gossip=gossip)
            before = len(path.sent())
            path.start_prometheus()

            _wait_for(path, 0, STEP1, "step 1's groups")
            path.wait_quiet(QUIET)
            steps[1] = path.sent()
            mark = len(steps[1])

            victim = steps[1][-1].sender
            path.kill_alertmanager(victim)
            path.kill_prometheus("a")
            fleet.run_fails(FAILS_AFTER_THE_KILL)
            _wait_for(path, mark, {STEP2}, "step 2's new failure")
            path.wait_quiet(QUIET)
            steps[2] = _since(path, mark)
            mark += len(steps[2])

            path.restart_alertmanager(victim)
            path.restart_prometheus("a")
            path.wait_settled(gossip=gossip)
            path.wait_sending("a")
            time.sleep(REJOIN_WINDOW)
            path.wait_quiet(QUIET)
            steps[3] = _since(path, mark)
            mark += len(steps[3])

            if gossip:
                fleet.run_fails(BORN_AFTER_THE_REJOIN)
                _wait_for(path, mark, {f"pager BatchRunFailed {BORN_AFTER_THE_REJOIN} firing"}, "step 4's failure")
                path.wait_quiet(QUIET)
                fleet.run_succeeds(BORN_AFTER_THE_REJOIN)
                _wait_for(path, mark, {f"pager BatchRunFailed {BORN_AFTER_THE_REJOIN} resolved"}, "its resolution")
                path.wait_quiet(QUIET)
                steps[4] = _since(path, mark)
        except Exception as exc:
            raise AssertionError(f"{'with' if gossip else 'without'} gossip: {exc}\n{path.logs()}") from exc
    return Outcome(gossip, settled, before, steps, victim, path.pids(), time.monotonic() - began)


@dataclass
class Runs:
    gossip: Outcome
    alone: Outcome
    report: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    # The two scenarios run side by side: the module stays near a minute.
    with ThreadPoolExecutor(max_workers=2) as pool:
        gossip = pool.submit(play, tmp_path_factory.mktemp("ha-gossip"), gossip=True)
        alone = pool.submit(play, tmp_path_factory.mktemp("ha-alone"), gossip=False)
        outcomes = gossip.result(), alone.result()
    report = tmp_path_factory.mktemp("ha-paging") / "notification-counts.json"
    summary = {("with gossip" if o.gossip else "without gossip (negative control)"): {
        "seconds": round(o.seconds, 1), "alertmanager_killed": o.victim,
        "steps": {f"{step}. {STEPS[step]}": {"notifications": len(sent), "by_group": tally(sent)}
                  for step, sent in o.steps.items()},
    } for o in outcomes}
    report.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"HA paging notification counts ({report}):\n{json.dumps(summary, indent=2)}")
    return Runs(*outcomes, report)


def _resolved(sent: list[Sent]) -> list[Sent]:
    return [s for s in sent if s.status == "resolved" or "resolved" in s.alerts]


@pytest.mark.slow
def test_the_cluster_has_three_peers_before_anything_fires(runs: Runs) -> None:
    views = runs.gossip.settled
    assert len(views) == MEMBERS
    peers = {v.peers for v in views}
    assert len(peers) == 1 and len(next(iter(peers))) == MEMBERS, views
    assert {v.status for v in views} == {"ready"}
    assert runs.gossip.sent_before_prometheus == 0
    assert {v.status for v in runs.alone.settled} == {"disabled"}


@pytest.mark.slow
def test_each_group_and_status_is_notified_exactly_once(runs: Runs) -> None:
    counts = runs.gossip.counts()
    assert counts[1] == dict.fromkeys(sorted(STEP1), 1)
    assert counts[4] == STEP4


@pytest.mark.slow
def test_after_sigkill_of_the_last_sender_and_of_one_prometheus_the_next_alert_arrives_once(runs: Runs) -> None:
    sent = runs.gossip.steps[2]
    assert tally(sent) == {STEP2: 1}
    assert not _resolved(sent)
    assert sent[0].sender != runs.gossip.victim


@pytest.mark.slow
def test_after_both_come_back_and_rejoin_nothing_is_sent_again(runs: Runs) -> None:
    assert runs.gossip.steps[3] == []


@pytest.mark.slow
def test_without_gossip_the_same_members_send_duplicates(runs: Runs) -> None:
    """The negative control: the counts the assertions above would see without the cluster."""
    counts = runs.alone.counts()
    assert sorted(counts) == [1, 2, 3]
    assert counts[1] == dict.fromkeys(sorted(STEP1), MEMBERS)
    assert counts[2] == {STEP2: MEMBERS - 1}  # every surviving member
    # the restarted member sends every open group again
    assert counts[3] == dict.fromkeys(sorted({*STEP1, STEP2}), 1)
    assert not _resolved([s for sent in runs.alone.steps.values() for s in sent])


@pytest.mark.slow
def test_every_server_of_both_runs_is_reaped(runs: Runs) -> None:
    for outcome in (runs.gossip, runs.alone):
        # three Alertmanagers, two Prometheus, and the killed one of each started again
        assert len(outcome.pids) == MEMBERS + 2 + 2
        assert [pid for pid in outcome.pids if alive(pid)] == []
        assert not outcome.pids & children_of(os.getpid())


# --- failures leave nothing behind ---------------------------------------------------------------------

@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[Fleet, StaticExporter, WebhookRecorder]]:
    fleet = Fleet([CARD_AUTH], time.time)
    with StaticExporter(fleet.exposition) as exporter, WebhookRecorder() as hook:
        yield fleet, exporter, hook


@pytest.mark.slow
def test_a_test_that_fails_midway_leaves_no_server_running(
    tmp_path: Path, started: tuple[Fleet, StaticExporter, WebhookRecorder]
) -> None:
    _, exporter, hook = started
    path = PagingPath(tmp_path, exporter=exporter.address, recorder=hook, overlay=OVERLAY,
                      alertmanager_args=documented_alertmanager_args(),
                      replica_config=documented_replica_config(), alertmanagers=MEMBERS)
    with pytest.raises(RuntimeError, match="the test failed here"), path:
        path.start_alertmanagers()
        path.start_prometheus()
        path.kill_alertmanager(0)
        path.restart_alertmanager(0)
        running = children_of(os.getpid()) & path.pids()
        assert len(running) == MEMBERS + 2
        raise RuntimeError("the test failed here")
    assert len(path.pids()) == MEMBERS + 3
    assert [pid for pid in path.pids() if alive(pid)] == []


@pytest.mark.slow
def test_a_prometheus_that_refuses_its_config_is_named_and_nothing_is_left_running(
    tmp_path: Path, started: tuple[Fleet, StaticExporter, WebhookRecorder]
) -> None:
    _, exporter, hook = started
    documented = documented_replica_config()

    def broken(replica: str, alertmanagers: Sequence[str]) -> dict[str, Any]:
        config = documented(replica, alertmanagers)
        config["alerting"]["alert_relabel_configs"] = [{"action": "drop-the-label", "regex": "replica"}]
        return config

    path = PagingPath(tmp_path, exporter=exporter.address, recorder=hook, overlay=OVERLAY,
                      alertmanager_args=documented_alertmanager_args(), replica_config=broken,
                      alertmanagers=MEMBERS)
    refused = r"prometheus-a exited with \d+; the end of \S+/prometheus-a\.log:\n.*unknown relabel action"
    with pytest.raises(StackError, match=re.compile(refused, re.S)), path:
        path.start_alertmanagers()
        path.start_prometheus()
    assert len(path.pids()) == MEMBERS + 2
    assert [pid for pid in path.pids() if alive(pid)] == []
