"""Grafana dashboards: generated JSON is committed and current, and every panel is well formed."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from types import ModuleType
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
import yaml

import calendar_days
from batch_exporter.metrics import BY_NAME, exposed_names
from batch_exporter.snapshot import SampleBuilder
from promql_names import (
    BUILTIN_METRICS,
    RATE_INTERVAL_STAND_IN,
    TARGET_LABELS,
    grafana_to_promql,
    parse,
    range_functions,
    selectors,
)
from promstack import PromStack, wait_until

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = ROOT / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "alerts" / "batch-exporter.rules.yml"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("batch_dashboards_generate", DASHBOARDS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
FILES = sorted(generate.DASHBOARDS)
BOARDS = {name: json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8")) for name in FILES}
RECORDED = {
    rule["record"]
    for group in yaml.safe_load(RULES.read_text())["groups"]
    for rule in group["rules"]
    if "record" in rule
}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _all_exprs() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every panel query and annotation query."""
    found = [
        (name, p["title"], t["expr"])
        for name, board in BOARDS.items()
        for p in _panels(board)
        for t in p["targets"]
    ]
    found += [
        (name, a["name"], a["expr"])
        for name, board in BOARDS.items()
        for a in board["annotations"]["list"]
        if "expr" in a
    ]
    return found


def test_committed_json_is_the_generator_output() -> None:
    assert {p.name for p in DASHBOARDS_DIR.glob("*.json")} == set(FILES)
    for name, build in generate.DASHBOARDS.items():
        assert (DASHBOARDS_DIR / name).read_text(encoding="utf-8") == generate.render(build), (
            f"{name} is stale: run python dashboards/generate.py"
        )
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("name", FILES)
def test_dashboard_has_variables_annotation_and_current_schema(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] >= 39
    assert board["uid"] == name.removesuffix(".json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    batch = variables["batch"]
    assert batch["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    metric = re.fullmatch(r"label_values\((\w+), batch\)", batch["definition"])
    assert metric and "batch" in BY_NAME[metric.group(1)].labels
    alerts = [a for a in board["annotations"]["list"] if "ALERTS" in a.get("expr", "")]
    assert len(alerts) == 1 and alerts[0]["enable"]


def test_overview_selects_many_batches_and_detail_one() -> None:
    batch = {
        name: next(v for v in b["templating"]["list"] if v["name"] == "batch") for name, b in BOARDS.items()
    }
    assert batch["batch-overview.json"]["multi"] and batch["batch-overview.json"]["includeAll"]
    assert not batch["batch-detail.json"]["multi"]


@pytest.mark.parametrize("name", FILES)
def test_every_panel_has_a_unit_the_datasource_variable_and_a_place(name: str) -> None:
    board = BOARDS[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for item in board["panels"]:
        pos = item["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        area = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"{item['title']} overlaps another panel"
        cells |= area
    for item in _panels(board):
        assert item["fieldConfig"]["defaults"].get("unit"), f"{item['title']} has no unit"
        assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert item["targets"] and item["description"]
        for query in item["targets"]:
            assert query["datasource"] == item["datasource"]


# Windows that mean a span of time, not a sampling step (none today).
FIXED_WINDOWS: set[tuple[str, timedelta]] = set()


@pytest.mark.parametrize(("name", "title", "expr"), _all_exprs())
def test_queries_parse_and_name_only_exported_metrics(name: str, title: str, expr: str) -> None:
    assert "$batch" in expr or "${batch:regex}" in expr, "every query follows the batch variable"
    promql = grafana_to_promql(expr)
    parse(promql)
    for selector in selectors(promql):
        assert selector.metric in exposed_names() | RECORDED | BUILTIN_METRICS, selector.metric
        spec = BY_NAME.get(selector.metric)
        if spec is not None:
            assert {label for label, _, _ in selector.matchers} <= set(spec.labels) | TARGET_LABELS
    for function, window in range_functions(promql):
        if function in ("rate", "irate", "increase") and (function, window) not in FIXED_WINDOWS:
            assert window == RATE_INTERVAL_STAND_IN, f"{function} must use $__rate_interval"


def test_may_be_empty_names_real_panels() -> None:
    titles = {p["title"] for board in BOARDS.values() for p in _panels(board)}
    assert set(generate.MAY_BE_EMPTY) <= titles


def test_panel_queries_and_render_query_give_plain_promql() -> None:
    queries = list(generate.panel_queries())
    assert len(queries) == sum(len(p["targets"]) for b in BOARDS.values() for p in _panels(b))
    for query in queries:
        rendered = generate.render_query(query.expr, batch="card-authorization")
        # `$1` is label_replace's own back-reference, for Prometheus, not a Grafana variable.
        assert "$" not in rendered.replace('$1", "batch"', "")
        parse(rendered)


def test_runbooks_name_panels_that_exist() -> None:
    titles = {board["title"]: {p["title"] for p in _panels(board)} for board in BOARDS.values()}
    referenced = 0
    for runbook in (ROOT / "alerts" / "runbooks").glob("*.md"):
        for board, panels in re.findall(
            r"\*\*(Batch \w+)\*\* → ((?:\*[^*]+\*(?: and )?)+)", runbook.read_text()
        ):
            for title in re.findall(r"\*([^*]+)\*", panels):
                referenced += 1
                assert title in titles[board], f"{runbook.name}: no panel {title!r} in {board}"
    assert referenced > 5


# --- "Is it safe to re-run?": the overview's batch table ------------------------------------------


def _batches_table() -> dict[str, Any]:
    (table,) = [p for p in _panels(BOARDS["batch-overview.json"]) if p["title"] == "Batches"]
    return table


def _organize(table: dict[str, Any]) -> dict[str, Any]:
    (step,) = [t for t in table.get("transformations", []) if t["id"] == "organize"]
    return step["options"]


def _column_names(table: dict[str, Any]) -> dict[str, str]:
    """Name of each query's value column before and after the rename, by refId.

    Grafana calls it `Value` for a table of one query, `Value #<refId>` for several.
    """
    renamed = _organize(table).get("renameByName", {}) if table.get("transformations") else {}
    single = len(table["targets"]) == 1
    found = {}
    for query in table["targets"]:
        field = "Value" if single else f"Value #{query['refId']}"
        found[query["refId"]] = (field, renamed.get(field, field))
    return found


def _field_config(table: dict[str, Any], name: str) -> dict[str, Any]:
    """The panel defaults with the properties of every byName override of `name` on top."""
    config = dict(table["fieldConfig"]["defaults"])
    for item in table["fieldConfig"]["overrides"]:
        if item["matcher"] == {"id": "byName", "options": name}:
            config |= {prop["id"]: prop["value"] for prop in item["properties"]}
    return config


def test_overview_puts_the_batch_least_safe_to_re_run_first() -> None:
    table = _batches_table()
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize", "sortBy"]
    names = {ref: shown for ref, (_, shown) in _column_names(table).items()}
    severity = generate.RERUN_SAFETY
    (ref,) = [ref for ref, name in names.items() if name == severity]
    expr = next(t["expr"] for t in table["targets"] if t["refId"] == ref)
    assert expr == generate.rerun_safety_expr('batch=~"$batch"')
    # The sort runs after the rename (it finds the column by its new name), largest severity first.
    assert table["transformations"][2]["options"]["sort"] == [{"field": severity, "desc": True}]
    assert table["options"]["sortBy"] == [{"displayName": severity, "desc": True}]
    assert list(_organize(table)["indexByName"])[:2] == ["batch", f"Value #{ref}"]
    # Every severity a case can produce reads as text, and the worst cases are the unsafe ones.
    (mapping,) = _field_config(table, severity)["mappings"]
    produced = {case.severity for case in generate.rerun_cases("")} | {0}
    assert {int(value) for value in mapping["options"]} == produced == set(generate.RERUN_READINGS)
    worst = max(produced)
    assert mapping["options"][str(worst)]["text"].startswith(f"{worst} NO")
    worst_cases = [case for case in generate.rerun_cases("") if case.severity == worst]
    assert {c.runbook for c in worst_cases} == {"BatchRunLeftPendingRecords", "BatchCheckFailed"}
    assert all("batch_run_idempotent" in c.when for c in worst_cases)


def test_overview_shows_what_a_re_run_decision_needs_per_batch() -> None:
    table = _batches_table()
    names = _column_names(table)
    exprs = {names[t["refId"]][1]: t["expr"] for t in table["targets"]}
    wanted = {
        "Idempotent": "batch_run_idempotent",
        "Attempts": "batch_run_attempts",
        "Left pending": "batch_run_left_pending_records",
        "Failed checks": "batch_check_ok",
        "Status": "batch:batch_run_last_status:code",
    }
    for column, metric in wanted.items():
        assert metric in {s.metric for s in selectors(grafana_to_promql(exprs[column]))}, column
    excluded = _organize(table)["excludeByName"]
    shown = set(_organize(table)["renameByName"].values())
    assert {"Runbook", generate.RERUN_CHECK_COLUMN} <= shown
    assert not {"runbook", "rerun_check", "instance", "batch"} & {k for k, v in excluded.items() if v}
    assert f"{generate.RERUN_CHECK} BATCH" in table["description"]
    assert generate.RERUN_CHECK == "batch-exporter rerun-check -c /etc/batch-exporter/config.yml"


def test_runbook_links_are_well_formed_and_lead_to_shipped_runbooks() -> None:
    table = _batches_table()
    (link,) = _field_config(table, "Runbook")["links"]
    assert link["url"] == f"{generate.RUNBOOK_BASE}/${{__value.raw}}.md" and link["targetBlank"]
    url = urlparse(generate.RUNBOOK_BASE)
    assert url.scheme == "https" and url.netloc and not generate.RUNBOOK_BASE.endswith("/")
    for case in generate.rerun_cases(""):
        if case.runbook:
            assert (ROOT / "alerts" / "runbooks" / f"{case.runbook}.md").is_file(), case.runbook
    # The rules use the same base: both come from the pack's parameters (alerts/pack.yml), and
    # tests/test_alert_pack.py renders both with another base.
    urls = [rule["annotations"]["runbook_url"] for g in yaml.safe_load(RULES.read_text())["groups"]
            for rule in g["rules"] if "alert" in rule and "runbook_url" in rule.get("annotations", {})]
    assert urls and all(u.startswith(f"{generate.RUNBOOK_BASE}/") for u in urls)
    source = (DASHBOARDS_DIR / "generate.py").read_text(encoding="utf-8")
    assert url.netloc not in source, "the runbook base belongs in alerts/pack.yml"
    (detail,) = _field_config(table, "batch")["links"]
    assert detail["url"].startswith(f"/d/{generate.DETAIL_UID}/") and "${__value.raw}" in detail["url"]


COUNT_UNITS = {"locale", "short"}


@pytest.mark.parametrize("name", FILES)
def test_numbers_read_as_numbers_not_scientific_notation(name: str) -> None:
    for item in _panels(BOARDS[name]):
        defaults = item["fieldConfig"]["defaults"]
        if item["type"] == "table":
            excluded = _organize(item).get("excludeByName", {}) if item.get("transformations") else {}
            columns = [shown for field, shown in _column_names(item).values() if not excluded.get(field)]
            configs = {column: _field_config(item, column) for column in columns}
        else:
            configs = {item["title"]: defaults}
        for column, config in configs.items():
            where = f"{item['title']} / {column}"
            assert config.get("unit") and config["unit"] != "sci", where
            # "none" prints raw numbers: only for coded states that value mappings turn into words.
            assert config["unit"] != "none" or config.get("mappings"), where
            if name == "batch-overview.json":
                assert isinstance(config.get("decimals"), int) and config["decimals"] >= 0, where


def test_overview_columns_have_units_a_person_reads() -> None:
    table = _batches_table()
    units = {shown: _field_config(table, shown) for _, shown in _column_names(table).values()}
    for count in ("Attempts", "Left pending", "Failed checks"):
        assert units[count]["unit"] in COUNT_UNITS and units[count]["decimals"] == 0, count
    assert units["Last success"]["unit"].startswith("dateTime")
    for duration in ("Last duration", "Max duration"):
        assert units[duration]["unit"] in {"dtdurations", "dthms", "dtdhms"}, duration


# Batches at one fixed moment of promtool's own clock: (batch, instance) -> its series, and the
# severity and runbook the overview must give it. Same batch name on two exporters on purpose.
RERUN_TIMELINE: dict[tuple[str, str], tuple[dict[str, Any], int, str]] = {
    ("card-authorization", "prod:9469"): (
        {"idempotent": 0, "attempts": 2, "status": "failed", "left_pending": 1234567}, 4,
        "BatchRunLeftPendingRecords"),
    ("card-authorization", "staging:9469"): ({"idempotent": 0, "left_pending": 0, "checks": [1]}, 0, ""),
    ("settlement", "prod:9469"): ({"idempotent": 0, "checks": [1, 0]}, 4, "BatchCheckFailed"),
    ("refunds", "prod:9469"): (
        {"idempotent": 0, "attempts": 2, "running": 1, "status": "running"}, 3, "BatchRerunOfNonIdempotentBatch"),
    ("statements", "prod:9469"): ({"idempotent": 1, "attempts": 2, "running": 1, "status": "running"}, 1, ""),
    ("ledger", "prod:9469"): (
        {"idempotent": 1, "attempts": 3, "status": "failed", "left_pending": 5}, 2, "BatchRunLeftPendingRecords"),
    ("clearing", "prod:9469"): (
        {"idempotent": 0, "running": 1, "presumed_dead": 1, "status": "running", "left_pending": 0}, 2,
        "BatchRunTooLong"),
    ("payouts", "prod:9469"): (
        {"idempotent": 0, "status": "failed", "left_pending": 0, "checks": [1]}, 2, "BatchRunFailed"),
    ("fx-rates", "prod:9469"): ({"idempotent": 1, "status": "unknown"}, 2, "BatchRunFailed"),
    ("reports", "prod:9469"): ({"idempotent": 1}, 0, ""),
    ("new-batch", "prod:9469"): ({"idempotent": 0, "never_ran": True}, 0, ""),
}


def _timeline_series(batch: str, instance: str, facts: dict[str, Any]) -> list[dict[str, str]]:
    base = f'batch="{batch}",instance="{instance}",job="batch-exporter"'
    series = {"batch_run_idempotent": facts["idempotent"]}
    if not facts.get("never_ran"):
        series |= {
            "batch_run_attempts": facts.get("attempts", 1),
            "batch_run_running": facts.get("running", 0),
            "batch_run_presumed_dead": facts.get("presumed_dead", 0),
        }
        status = facts.get("status", "success")
        for name in ("success", "failed", "running", "unknown"):
            series[f'batch_run_last_status{{status="{name}",'] = int(name == status)
    if "left_pending" in facts:
        series["batch_run_left_pending_records"] = facts["left_pending"]
    for index, ok in enumerate(facts.get("checks", [])):
        series[f'batch_check_ok{{check="c{index}",'] = ok
    return [
        {"series": f"{name}{base}}}" if name.endswith(",") else f"{name}{{{base}}}", "values": f"{value}x10"}
        for name, value in series.items()
    ]


def test_rerun_safety_severity_per_batch_on_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = [g for g in groups if all("record" in rule for rule in g["rules"])]
    (tmp_path / "records.yml").write_text(yaml.safe_dump({"groups": records}))
    expected = [
        {
            "labels": "{" + ",".join(
                f'{key}="{value}"'
                for key, value in {
                    "batch": batch,
                    "instance": instance,
                    "job": "batch-exporter",
                    "rerun_check": f"{generate.RERUN_CHECK} {batch}",
                    **({"runbook": runbook} if runbook else {}),
                }.items()
            ) + "}",
            "value": severity,
        }
        for (batch, instance), (_, severity, runbook) in RERUN_TIMELINE.items()
    ]
    test = {
        "rule_files": ["records.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    s for (batch, instance), (facts, _, _) in RERUN_TIMELINE.items()
                    for s in _timeline_series(batch, instance, facts)
                ],
                "promql_expr_test": [
                    {
                        "expr": generate.render_query(generate.rerun_safety_expr('batch=~"$batch"')),
                        "eval_time": "5m",
                        "exp_samples": expected,
                    }
                ],
            }
        ],
    }
    (tmp_path / "rerun.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", "rerun.test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- "Since last success" on a business calendar's edge days ------------------------------------------
# The overview judges a success as the schedule alerts do: the scenarios of the calendar's promtool tests
# (tests/calendar_days.py: Golden Week, the year-end closure, a month ending on a Sunday, both DST changes
# in Berlin) and a long weekend, with the exporter's own schedule series. A tile is red exactly when a
# schedule alert fires for its batch, and green otherwise, however old the success.

# Marine Day, Monday 20 July 2026: Saturday to Monday closed in Japan; the weekend before is a plain one
LONG_WEEKEND_NIGHTS = calendar_days._nights(
    "02:05", "2026-07-09", "2026-07-10", "2026-07-13", "2026-07-14", "2026-07-15", "2026-07-16", "2026-07-17",
    "2026-07-21")
LONG_WEEKEND = calendar_days.Scenario(
    "A long weekend (Asia/Tokyo): Marine Day, Monday 20 July 2026",
    "Asia/Tokyo",
    (
        calendar_days.Batch("lw-ok", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}', LONG_WEEKEND_NIGHTS),
        calendar_days.Batch("lw-broken", '{cron: "0 2 * * *", calendar: jp, finish_by: "06:00"}',
                            LONG_WEEKEND_NIGHTS, broken=frozenset({"2026-07-21"})),
    ),
    (
        calendar_days.Check("2026-07-13 01:55", frozenset(), "Monday after a plain weekend, before its run: "
                            "Friday's success is 71 hours old"),
        calendar_days.Check("2026-07-20 12:00", frozenset(), "Marine Day: no run expected"),
        calendar_days.Check("2026-07-21 01:55", frozenset(), "Tuesday before its run: Friday's success is 4 days old"),
        calendar_days.Check("2026-07-21 02:30", frozenset({("BatchRunMissed", "lw-broken")}),
                            "the first business day's run did not start"),
        calendar_days.Check("2026-07-21 06:10", frozenset({("BatchRunMissed", "lw-broken"),
                                                           ("BatchNoRecentSuccess", "lw-broken"),
                                                           ("BatchFinishDeadlineMissed", "lw-broken")}),
                            "and missed its deadline"),
    ),
)
STALENESS_SCENARIOS = (*calendar_days.SCENARIOS, LONG_WEEKEND)


def _since_last_success() -> dict[str, Any]:
    (found,) = [p for p in _panels(BOARDS["batch-overview.json"]) if p["title"] == "Since last success"]
    return found


def _tile_colour(item: dict[str, Any], labels: dict[str, str], value: float) -> str:
    """The colour Grafana gives a stat tile: its display name (the legend) picks the overrides (a regex
    not written /like this/ must match the whole name), whose thresholds (else the panel's) read the value."""
    (query,) = item["targets"]
    name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), query["legendFormat"])
    steps = item["fieldConfig"]["defaults"]["thresholds"]["steps"]
    for rule in item["fieldConfig"]["overrides"]:
        matcher = rule["matcher"]
        if (matcher["id"] == "byRegexp" and re.fullmatch(matcher["options"], name)) or \
                (matcher["id"] == "byName" and matcher["options"] == name):
            steps = next((p["value"]["steps"] for p in rule["properties"] if p["id"] == "thresholds"), steps)
    colour = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            colour = step["color"]
    return colour


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def _promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    document = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "overview.test.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", "overview.test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_since_last_success_follows_the_calendar_on_promtool(tmp_path: Path) -> None:
    item = _since_last_success()
    (query,) = item["targets"]
    expr = generate.render_query(query["expr"])
    tests = []
    colours = []
    for scenario in STALENESS_SCENARIOS:
        tz = ZoneInfo(scenario.timezone)
        for check in scenario.checks:
            inputs, successes = calendar_days.check_inputs(scenario, check)
            end = datetime.strptime(check.at, "%Y-%m-%d %H:%M").replace(tzinfo=tz).timestamp()
            paged = {batch for _, batch in check.firing}
            tiles = []
            for batch, success in successes.items():
                labels = {"batch": batch, **calendar_days.INSTANCE,
                          "staleness": "success overdue" if batch in paged else "on schedule"}
                tiles.append({"labels": _labels(labels), "value": end - success})
                colours.append((f"{scenario.title} {check.at} {batch}", _tile_colour(item, labels, end - success),
                                "red" if batch in paged else "green"))
            tests.append({
                "interval": "1m",
                "name": f"{scenario.title}: {check.at} {scenario.timezone}, {check.why}",
                "input_series": inputs,
                "promql_expr_test": [
                    {"expr": calendar_days.firing_expr(), "eval_time": f"{calendar_days.WINDOW // 60}m",
                     "exp_samples": calendar_days.firing_samples(check)},
                    {"expr": expr, "eval_time": f"{calendar_days.WINDOW // 60}m", "exp_samples": tiles},
                ],
            })
    assert [c for c in colours if c[1] != c[2]] == []
    assert {c[2] for c in colours} == {"red", "green"}
    assert query["instant"] is True  # one tile per batch as it is now, not one per reading it had in the range
    _promtool(tmp_path, tests)


def test_since_last_success_without_a_schedule_or_while_paused(tmp_path: Path) -> None:
    item = _since_last_success()
    base = {"instance": "e:1", "job": "batch-exporter"}

    def series(batch: str, **values: float) -> list[dict[str, str]]:
        return [{"series": f"{name}{_labels({'batch': batch, **base})}", "values": f"{value:.0f}x10"}
                for name, value in values.items()]

    hour = 3600
    # promtool's clock starts at 0: timestamps are negative, read at 10 minutes
    inputs = [
        *series("adhoc", batch_run_last_success_timestamp_seconds=-50 * hour),  # no schedule at all
        *series("recent", batch_run_last_success_timestamp_seconds=-2 * hour),
        *series("paused", batch_run_last_success_timestamp_seconds=-72 * hour, batch_schedule_paused=1,
                batch_schedule_grace_seconds=900),
    ]
    expected = {("adhoc", "no schedule", 50 * hour + 600, "red"), ("recent", "no schedule", 2 * hour + 600, "green"),
                ("paused", "scheduler paused", 72 * hour + 600, "orange")}
    tiles = []
    for batch, staleness, value, colour in expected:
        labels = {"batch": batch, **base, "staleness": staleness}
        assert _tile_colour(item, labels, value) == colour, batch
        tiles.append({"labels": _labels(labels), "value": value})
    _promtool(tmp_path, [{"interval": "1m", "input_series": inputs, "promql_expr_test": [
        {"expr": generate.render_query(item["targets"][0]["expr"]), "eval_time": "10m", "exp_samples": tiles}]}])


def test_grafana_provisioning_files() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "batch-exporter.yml").read_text())
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "batch-exporter.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


# --- Every panel query against a real Prometheus -------------------------------------------------
# A static exposition of one healthy batch, built with the contract's own SampleBuilder, stands in
# for the exporter (the end-to-end suite repeats this against the real one).


def _healthy_exposition(now: float, batch: str = "card-authorization") -> str:
    out = SampleBuilder()
    b = {"batch": batch}
    for name, value in [
        ("batch_run_last_start_timestamp_seconds", now - 3600),
        ("batch_run_last_end_timestamp_seconds", now - 1800),
        ("batch_run_last_success_timestamp_seconds", now - 1800),
        ("batch_run_last_duration_seconds", 1800),
        ("batch_run_key_work_seconds", 1800),
        ("batch_run_running", 0),
        ("batch_run_queued", 0),
        ("batch_run_running_seconds", 0),
        ("batch_run_attempts", 1),
        ("batch_run_pending_records", 0),
        ("batch_run_left_pending_records", 0),
        ("batch_run_presumed_dead", 0),
        ("batch_run_idempotent", 0),
        ("batch_run_max_duration_seconds", 5400),
        ("batch_run_lookback_seconds", 14 * 86400),
        ("batch_schedule_last_expected_timestamp_seconds", now - 3700),
        ("batch_schedule_next_expected_timestamp_seconds", now - 3700 + 86400),
        ("batch_schedule_grace_seconds", 900),
        ("batch_schedule_watched_since_timestamp_seconds", now - 30 * 86400),
        ("batch_schedule_finish_deadline_timestamp_seconds", now - 3700 + 5 * 3600),
        ("batch_run_usual_duration_runs", 12),
        ("batch_run_usual_duration_min_runs", 5),
    ]:
        out.add(name, value, **b)
    for status in ("success", "failed", "running", "queued", "unknown"):
        out.add("batch_run_last_status", 1 if status == "success" else 0, status=status, **b)
        out.add("batch_runs", 13 if status == "success" else 0, status=status, **b)
    out.add("batch_run_last_status_code", 1, code="0", **b)
    out.add("batch_run_business_date_info", 1, business_date="2026-12-02", **b)
    out.add("batch_run_records", 1200, state="AUTHORIZED", **b)
    out.add("batch_run_usual_duration_seconds", 1700, quantile="0.5", **b)
    out.add("batch_run_usual_duration_seconds", 2000, quantile="0.9", **b)
    out.add("batch_schedule_last_skipped_timestamp_seconds", now - 3700 - 86400, date="2026-11-29",
            reason="weekend", holiday="", **b)
    out.add("batch_check_value", 0, check="double_authorized", **b)
    out.add("batch_check_ok", 1, check="double_authorized", **b)
    log = {"log": "sdk", **b}
    path = {"path": "/var/log/sdk/auth.log", **log}
    out.add("batch_log_file_size_bytes", 2**30, **path)
    out.add("batch_log_file_modified_timestamp_seconds", now - 1800, **path)
    out.add("batch_log_file_size_limit_bytes", 4 * 2**30, **log)
    out.add("batch_log_files", 1, **log)
    out.add("batch_log_file_series_dropped", 0, **log)
    for name, value in [
        ("batch_log_lines_total", 50000),
        ("batch_log_rotations_total", 0),
        ("batch_log_truncations_total", 0),
        ("batch_log_oversized_lines_total", 0),
        ("batch_log_read_bytes_total", 2**30),
        ("batch_log_unread_bytes", 0),
    ]:
        out.add(name, value, **log)
    out.add("batch_log_matches_total", 0, pattern="error", **log)
    out.add("batch_log_last_match_timestamp_seconds", now - 86400 * 3, pattern="error", **log)
    out.add("batch_run_latest_log_matches", 0, pattern="error", **log)
    for source in (
        f"runs:{batch}",
        f"checks:{batch}",
        f"config:{batch}",
        f"logfiles:{batch}/sdk",
        f"logscan:{batch}/sdk",
    ):
        out.add("batch_exporter_source_up", 1, source=source)
        out.add("batch_exporter_source_last_success_timestamp_seconds", now - 5, source=source)
        out.add("batch_exporter_source_poll_duration_seconds", 0.02, source=source)
    out.add("batch_exporter_build_info", 1, version="0.1.0")
    out.add("batch_exporter_series", 120)
    out.add("batch_exporter_series_limit", 200_000)
    for source in (f"runs:{batch}", f"logscan:{batch}/sdk"):
        out.add("batch_exporter_series_dropped", 0, source=source)
    lines = []
    for sample in out.build("fake").samples:
        labels = ",".join(f'{key}="{value}"' for key, value in sample.labels)
        lines.append(f"{sample.name}{{{labels}}} {sample.value!r}")
    return "\n".join(lines) + "\n"


# Series a healthy exporter does not expose (an error counter appears with its first error).
# batch_schedule_paused comes with a schedule query only (the stand-in batch has a cron schedule),
# batch_run_earlier_key_attempts only while an earlier key is re-run, the fleet series with a fleet only
ABSENT_WHEN_HEALTHY = {"batch_exporter_source_errors_total", "batch_schedule_paused", "batch_run_earlier_key_attempts",
                       "batch_exporter_fleet_jobs", "batch_exporter_fleet_shard"}


def test_the_stand_in_exposition_covers_every_metric_of_the_contract() -> None:
    # A metric added to the contract but not here would leave its panels without data in the test below.
    exposed = {line.split("{")[0] for line in _healthy_exposition(0.0).splitlines()}
    assert exposed_names() - exposed == ABSENT_WHEN_HEALTHY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    body = _healthy_exposition(time.time()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        with PromStack(
            tmp_path_factory.mktemp("dashboards"), exporter_targets=[f"127.0.0.1:{server.server_address[1]}"]
        ) as stack:
            yield stack
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_every_panel_query_returns_data_from_a_real_prometheus(live: PromStack) -> None:
    queries = [q for q in generate.panel_queries() if q.panel not in generate.MAY_BE_EMPTY]

    def missing() -> list[str]:
        return [
            f"{q.dashboard}/{q.panel}/{q.ref}"
            for q in queries
            if not live.query(generate.render_query(q.expr, batch="card-authorization", rate_interval="10s"))
        ]

    try:
        wait_until(lambda: not missing(), timeout=30, what="data for every panel query")
    except TimeoutError:
        pytest.fail(f"panel queries without data: {missing()}\n{live.logs()}")


@pytest.mark.slow
def test_a_healthy_batch_raises_no_alert(live: PromStack) -> None:
    wait_until(lambda: live.query("batch:batch_run_last_status:code"), timeout=30, what="recorded status")
    started = max(g["lastEvaluation"] for g in live.rule_groups())
    wait_until(
        lambda: all(g["lastEvaluation"] > started for g in live.rule_groups()),
        timeout=15,
        what="a full rule evaluation after the data arrived",
    )
    assert live.query('ALERTS{batch=~".+"}') == []
    # The Watchdog heartbeat fires by design, all the time; nothing else may.
    assert [a for a in live.prometheus_alerts() if a["labels"]["alertname"] != "Watchdog"] == []
