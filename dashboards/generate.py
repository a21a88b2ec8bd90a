#!/usr/bin/env python3
"""Builds the Grafana dashboards of batch-exporter as plain dicts and writes them as JSON.

    python dashboards/generate.py          # rewrite dashboards/*.json
    python dashboards/generate.py --check  # exit 1 if the committed JSON differs from this file

Edit this file, not the JSON. Plain dicts keep the generator dependency-free; the JSON model is
Grafana's (schemaVersion 39: Grafana 11 and later import it as it is).
Besides writing files, the module lets tests run every panel query against a real Prometheus:
`panel_queries()` lists them, `render_query()` fills in Grafana's variables, and `MAY_BE_EMPTY`
says which panels may legitimately return nothing, and why.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
TAG = "batch-exporter"
OVERVIEW_UID = "batch-overview"
DETAIL_UID = "batch-detail"
DS = {"type": "prometheus", "uid": "${datasource}"}
# Source names are KIND:BATCH or KIND:BATCH/LOG (see alerts/README.md).
SOURCE_OF_BATCH = 'source=~"[^:]+:${batch:regex}(/.*)?"'


def _load_pack() -> ModuleType:
    name = "batch_alert_pack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "alerts" / "pack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The alert pack's parameters (alerts/pack.yml), shared with the rules: the runbook base of every
# runbook_url, the rerun-check command line, the selector of the exporter's scrape job.
RUNBOOK_BASE = ""
RERUN_CHECK = ""
JOB_SELECTOR = ""


def configure(params: Any) -> None:
    """Render with these pack parameters (alerts/generate.py --params); the defaults are alerts/pack.yml."""
    global RUNBOOK_BASE, RERUN_CHECK, JOB_SELECTOR
    RUNBOOK_BASE, RERUN_CHECK, JOB_SELECTOR = params.runbook_base_url, params.rerun_check, params.job_selector


configure(_load_pack().load_pack())

# Panels whose queries may return no series on a healthy system, with the reason (also shown in
# the panel's description). Every other panel query returns data once the exporter has polled.
MAY_BE_EMPTY = {
    "Time to limit": "Only files that grew during the last hour have a time to their limit.",
    "Firing alerts": "Empty while no alert fires.",
    "Poll errors": "A source's error counter appears with its first failed poll.",
    "Pending records": "Only batches with a `records` query export pending records.",
    "Checks": "Only batches with `checks` in the configuration have checks.",
    "Check status": "Only batches with `checks` in the configuration have checks.",
    "Records of the latest run by state": "Only batches with a `records` query export records.",
    "Latest start the calendar skipped": "Only schedules with a business calendar skip starts.",
    "Finish deadline": "Only schedules with finish_by have a deadline; the projected end shows while the "
                       "expected run is due or in progress and its usual duration is known.",
    "Success contradicted by": "Empty while nothing contradicts the latest run's success.",
    "Usual duration": "The usual duration is exported once runs.min_history successful runs are in the lookback "
                      "window.",
}

STATUS_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "success", "color": "green", "index": 0},
            "1": {"text": "running", "color": "blue", "index": 1},
            "2": {"text": "unknown", "color": "orange", "index": 2},
            "3": {"text": "failed", "color": "red", "index": 3},
            "4": {"text": "queued", "color": "purple", "index": 4},
        },
    }
]
UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]
OK_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "FAILED", "color": "red", "index": 0},
            "1": {"text": "ok", "color": "green", "index": 1},
        },
    }
]


IDEMPOTENT_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "no", "color": "orange", "index": 0},
            "1": {"text": "yes", "color": "green", "index": 1},
        },
    }
]


@dataclass(frozen=True)
class RerunCase:
    """One answer to "is it safe to re-run this batch?", as a PromQL condition over its batches.

    `when` selects the series (labels batch, instance, job) of the batches in this case; `runbook`
    names the runbook to open, empty when nothing is wrong.
    """

    severity: int
    runbook: str
    when: str


# What each severity reads as in the overview; higher is worse, and the table puts it first.
RERUN_READINGS: dict[int, tuple[str, str]] = {
    4: ("NO: not idempotent, rows left pending or a check fails", "dark-red"),
    3: ("NO: not idempotent, already re-run", "red"),
    2: ("NOT YET: run rerun-check (failed, dead or rows left)", "orange"),
    1: ("WAIT: a run is in progress", "blue"),
    0: ("no re-run needed", "green"),
}
RERUN_MAPPINGS = [
    {
        "type": "value",
        "options": {
            str(severity): {"text": f"{severity} {text}", "color": color, "index": index}
            for index, (severity, (text, color)) in enumerate(sorted(RERUN_READINGS.items(), reverse=True))
        },
    }
]
_ON = "on (batch, instance, job)"


def rerun_cases(sel: str) -> list[RerunCase]:
    """The cases worst first; a batch takes the first that matches (`or` keeps its left side).

    Unknown idempotence counts as not idempotent, as in the alert rules. A re-run of a batch that is
    not idempotent repeats what earlier attempts did: rows they left pending or checks they broke
    make it unsafe outright. Anything else that went wrong is for `rerun-check` to judge.
    """
    unsafe = f"unless {_ON} batch_run_idempotent{{{sel}}} == 1"
    failed_checks = f"count without (check) (batch_check_ok{{{sel}}} == 0)"
    return [
        RerunCase(4, "BatchRunLeftPendingRecords", f"batch_run_left_pending_records{{{sel}}} > 0 {unsafe}"),
        RerunCase(4, "BatchCheckFailed", f"{failed_checks} {unsafe}"),
        RerunCase(3, "BatchRerunOfNonIdempotentBatch", f"batch_run_attempts{{{sel}}} > 1 {unsafe}"),
        RerunCase(2, "BatchRunLeftPendingRecords", f"batch_run_left_pending_records{{{sel}}} > 0"),
        RerunCase(2, "BatchCheckFailed", failed_checks),
        RerunCase(2, "BatchRunTooLong", f"batch_run_presumed_dead{{{sel}}} > 0"),
        RerunCase(2, "BatchRunFailed", f"batch:batch_run_last_status:code{{{sel}}} >= 2"),
        RerunCase(1, "", f"batch_run_running{{{sel}}} > 0"),
    ]


def rerun_safety_expr(sel: str) -> str:
    """Severity per batch (0 to 4) with its runbook and its rerun-check command line as labels."""
    terms = []
    for case in rerun_cases(sel):
        value = f"({case.when}) * 0 + {case.severity}"
        terms.append(f'label_replace({value}, "runbook", "{case.runbook}", "", "")' if case.runbook else value)
    # batch_run_idempotent exists for every configured batch: the rest read 0.
    terms.append(f"batch_run_idempotent{{{sel}}} * 0")
    chain = f"\nor {_ON}\n".join(terms)
    return f'label_replace(\n{chain}\n, "rerun_check", "{RERUN_CHECK} $1", "batch", "(.+)")'


def thresholds(*steps: tuple[float, str], base: str = "green") -> dict[str, Any]:
    """Absolute thresholds: `base` below the first step, then each (value, colour)."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in steps],
    }


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False) -> dict[str, Any]:
    """A Prometheus query of a panel; instant queries come back as a table."""
    result: dict[str, Any] = {"datasource": DS, "editorMode": "code", "expr": expr, "refId": ref}
    if instant:
        result.update(format="table", instant=True, range=False)
    else:
        result.update(legendFormat=legend or "__auto", range=True, instant=False)
    return result


def instant_series(expr: str, legend: str) -> dict[str, Any]:
    """An instant query whose series keep their legend: a stat panel shows one tile per series as it is now,
    not one per label set the series had over the time range."""
    return dict(target(expr, legend), range=False, instant=True)


def override(name: str, *properties: tuple[str, Any], regex: bool = False) -> dict[str, Any]:
    """Field override by display name (or regex over it)."""
    return {
        "matcher": {"id": "byRegexp" if regex else "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom, 24 columns wide."""

    def __init__(self) -> None:
        self._id = 0
        self._x = 0
        self._y = 0
        self._row_height = 0

    def next_id(self) -> int:
        self._id += 1
        return self._id

    def place(self, width: int, height: int) -> dict[str, int]:
        if self._x + width > 24:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        position = {"h": height, "w": width, "x": self._x, "y": self._y}
        self._x += width
        self._row_height = max(self._row_height, height)
        return position

    def row(self, title: str) -> dict[str, Any]:
        if self._x:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        panel = {
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            "id": self.next_id(),
            "panels": [],
            "title": title,
            "type": "row",
        }
        self._y += 1
        return panel


def panel(
    layout: Layout,
    kind: str,
    title: str,
    description: str,
    targets: Sequence[dict[str, Any]],
    *,
    unit: str,
    decimals: int | None = None,
    width: int = 8,
    height: int = 8,
    mappings: list[dict[str, Any]] | None = None,
    steps: dict[str, Any] | None = None,
    overrides: Sequence[dict[str, Any]] = (),
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    transformations: Sequence[dict[str, Any]] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    """One panel; every panel states its unit (and `decimals` where Grafana would guess them)."""
    if title in MAY_BE_EMPTY:
        description = f"{description} {MAY_BE_EMPTY[title]}"
    defaults: dict[str, Any] = {
        "unit": unit,
        "mappings": mappings or [],
        "thresholds": steps or thresholds(),
        "color": {"mode": "thresholds"},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if kind == "timeseries":
        defaults["color"] = {"mode": "palette-classic"}
    if custom is not None:
        defaults["custom"] = custom
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    result: dict[str, Any] = {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "gridPos": layout.place(width, height),
        "id": layout.next_id(),
        "options": options or {},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "title": title,
        "type": kind,
    }
    if transformations:
        result["transformations"] = list(transformations)
    return result


def timeseries_options() -> dict[str, Any]:
    return {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["lastNotNull"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def stat_options(text_mode: str = "value_and_name") -> dict[str, Any]:
    return {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": text_mode,
    }


def state_timeline_options() -> dict[str, Any]:
    return {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }


def datasource_variable() -> dict[str, Any]:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def batch_variable(multi: bool) -> dict[str, Any]:
    # batch_run_idempotent is exported for every configured batch, whether it has run or not.
    query = "label_values(batch_run_idempotent, batch)"
    return {
        "current": {},
        "datasource": DS,
        "definition": query,
        "hide": 0,
        "includeAll": multi,
        "label": "Batch",
        "multi": multi,
        "name": "batch",
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
        **({"allValue": ".+"} if multi else {}),
    }


def alert_annotations() -> dict[str, Any]:
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": DS,
                "enable": True,
                "hide": False,
                "iconColor": "red",
                "name": "Alerts",
                "expr": 'ALERTS{alertstate="firing", batch=~"$batch"}',
                "step": "60s",
                "titleFormat": "{{alertname}}",
                "textFormat": "{{severity}} · batch {{batch}}",
                "tagKeys": "severity,batch",
                "useValueForTime": False,
            },
        ]
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]], batch_multi: bool
) -> dict[str, Any]:
    return {
        "annotations": alert_annotations(),
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "Batch dashboards",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [datasource_variable(), batch_variable(batch_multi)]},
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def firing_alerts(layout: Layout, width: int) -> dict[str, Any]:
    return panel(
        layout,
        "table",
        "Firing alerts",
        "Alerts firing now for the selected batches.",
        [target('ALERTS{alertstate="firing", batch=~"$batch"}', instant=True)],
        unit="none",
        decimals=0,
        width=width,
        height=7,
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "Value": True, "__name__": True, "alertstate": True},
                    "indexByName": {"severity": 0, "alertname": 1, "batch": 2},
                },
            }
        ],
        options={"showHeader": True, "cellHeight": "sm"},
        overrides=[
            override(
                "severity",
                ("custom.cellOptions", {"type": "color-text"}),
                (
                    "mappings",
                    [
                        {
                            "type": "value",
                            "options": {
                                "critical": {"color": "red", "index": 0},
                                "warning": {"color": "orange", "index": 1},
                                "info": {"color": "blue", "index": 2},
                            },
                        }
                    ],
                ),
            )
        ],
    )


@dataclass(frozen=True)
class Column:
    """A value column of the overview's batch table: one instant query, shown as `name`."""

    name: str
    expr: str
    unit: str
    decimals: int
    properties: tuple[tuple[str, Any], ...] = ()


RERUN_SAFETY = "Re-run safety"
RERUN_CHECK_COLUMN = "Before any re-run, run"


def red_from(limit: float) -> tuple[tuple[str, Any], ...]:
    """Cell properties: red text from `limit` up."""
    return (("thresholds", thresholds((limit, "red"))), ("custom.cellOptions", {"type": "color-text"}))


def batch_columns(sel: str) -> list[Column]:
    """Worst-first reading, then what it is made of, then the latest run."""
    return [
        Column(RERUN_SAFETY, rerun_safety_expr(sel), "none", 0,
               (("mappings", RERUN_MAPPINGS), ("custom.cellOptions", {"type": "color-background"}))),
        Column("Idempotent", f"batch_run_idempotent{{{sel}}}", "none", 0,
               (("mappings", IDEMPOTENT_MAPPINGS), ("custom.cellOptions", {"type": "color-text"}))),
        Column("Attempts", f"batch_run_attempts{{{sel}}}", "locale", 0, red_from(2)),
        Column("Left pending", f"batch_run_left_pending_records{{{sel}}}", "locale", 0, red_from(1)),
        Column("Failed checks", f"sum without (check) (1 - batch_check_ok{{{sel}}})", "locale", 0, red_from(1)),
        Column("Status", f"batch:batch_run_last_status:code{{{sel}}}", "none", 0,
               (("mappings", STATUS_MAPPINGS), ("custom.cellOptions", {"type": "color-background"}))),
        Column("Last success", f"batch_run_last_success_timestamp_seconds{{{sel}}} * 1000", "dateTimeAsIso", 0),
        Column("Last duration", f"batch_run_last_duration_seconds{{{sel}}}", "dtdurations", 1),
        Column("Max duration", f"batch_run_max_duration_seconds{{{sel}}}", "dtdurations", 1),
    ]


def batches_table(layout: Layout, sel: str) -> dict[str, Any]:
    """One row per batch and exporter, the batch least safe to re-run first."""
    columns = batch_columns(sel)
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    detail_link = (
        f"/d/{DETAIL_UID}/{DETAIL_UID}?var-batch=${{__value.raw}}&${{datasource:queryparam}}"
        "&${__url_time_range}"
    )
    runbook_link = {"title": "Runbook ${__value.raw}", "url": f"{RUNBOOK_BASE}/${{__value.raw}}.md",
                    "targetBlank": True}
    # Renamed in a transformation, not by a displayName override: overrides apply after the
    # transformations, and the sort below must find the severity column by its name.
    rename = {f"Value #{ref}": column.name for ref, column in zip(refs, columns, strict=True)}
    rename |= {"runbook": "Runbook", "rerun_check": RERUN_CHECK_COLUMN}
    order = ["batch", *rename, "instance"]
    overrides = [
        override("batch", ("links", [{"title": "Batch detail", "url": detail_link}])),
        override("Runbook", ("links", [runbook_link])),
    ]
    overrides += [
        override(column.name, ("unit", column.unit), ("decimals", column.decimals), *column.properties)
        for column in columns
    ]
    reading = "; ".join(f"{severity} {text}" for severity, (text, _) in sorted(RERUN_READINGS.items(),
                                                                               reverse=True))
    return panel(
        layout,
        "table",
        "Batches",
        "Is it safe to re-run? One row per batch, worst first by the re-run safety severity: "
        f"{reading}. A batch that is not idempotent (or not configured either way) and has rows left "
        "pending or a failed check is the worst case: a re-run repeats what its earlier attempts did. "
        "Then idempotence, attempts for the latest business date (more than 1 is a re-run), rows left "
        "pending, failed checks, the latest run. Runbook opens the runbook of the case; before any "
        f"re-run, run `{RERUN_CHECK} BATCH` (column '{RERUN_CHECK_COLUMN}' gives it per batch). "
        "Click a batch for its detail.",
        [target(column.expr, instant=True) for column in columns],
        unit="none",
        decimals=0,
        width=24,
        height=9,
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "job": True},
                    "indexByName": {name: index for index, name in enumerate(order)},
                    "renameByName": rename,
                },
            },
            {"id": "sortBy", "options": {"fields": {}, "sort": [{"field": RERUN_SAFETY, "desc": True}]}},
        ],
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "sortBy": [{"displayName": RERUN_SAFETY, "desc": True}],
        },
        overrides=overrides,
    )


# How the overview reads the time since a batch's latest success: (label value, colour) by case, judged
# as the schedule alerts judge it (without their `for:`), so that what the alerts leave quiet (the days a
# business calendar skips, a paused job) is not red either. Worst first: a batch takes the first that holds.
STALENESS_COLOURS: dict[str, str] = {"success overdue": "red", "scheduler paused": "orange", "on schedule": "green"}
# A batch without a schedule has no expected start: the time since its success is all there is to judge.
NO_SCHEDULE_STEPS = ((86400 + 3600, "orange"), (2 * 86400, "red"))


def success_overdue(sel: str) -> str:
    """Batches whose latest expected run should by now have started (grace) or succeeded (max_duration,
    finish_by) and has not: the conditions of BatchRunMissed, BatchNoRecentSuccess and
    BatchFinishDeadlineMissed for a batch that has succeeded before, with the same recorded deadlines.
    The expected starts skip the days a business calendar removes, so these hold on none of them."""
    since_expected = (f"batch_schedule_last_expected_timestamp_seconds{{{sel}}}"
                      f" - {_ON} batch_schedule_grace_seconds{{{sel}}}")
    no_success = f"(batch_run_last_success_timestamp_seconds{{{sel}}} != 0) < {_ON} ({since_expected})"
    no_start = f"(batch_run_last_start_timestamp_seconds{{{sel}}} != 0) < {_ON} ({since_expected})"
    late = [
        f"(time() > batch:batch_run_start_deadline_timestamp_seconds{{{sel}}} and {_ON} {no_start})",
        f"(time() > batch:batch_run_success_deadline_timestamp_seconds{{{sel}}})",
        f"(time() > batch_schedule_finish_deadline_timestamp_seconds{{{sel}}})",
    ]
    return f"({no_success})\nand {_ON}\n(\n  " + f"\n  or {_ON}\n  ".join(late) + "\n)"


def staleness_expr(sel: str) -> str:
    """Seconds since each batch's latest success, labelled `staleness` with how the schedule reads it:
    'success overdue', 'scheduler paused', 'on schedule', or 'no schedule' for a batch without one."""
    since = f"time() - batch_run_last_success_timestamp_seconds{{{sel}}}"
    cases = {
        "success overdue": success_overdue(sel),
        "scheduler paused": f"batch_schedule_paused{{{sel}}} == 1",
        "on schedule": f"batch_schedule_grace_seconds{{{sel}}}",
    }
    assert list(cases) == list(STALENESS_COLOURS)
    terms = [f'label_replace(\n{since}\nand {_ON}\n({when}),\n"staleness", "{reading}", "", "")'
             for reading, when in cases.items()]
    terms.append(f'label_replace({since}, "staleness", "no schedule", "", "")')
    return f"\nor {_ON}\n".join(terms)


def overview() -> dict[str, Any]:
    """All batches at a glance."""
    layout = Layout()
    sel = 'batch=~"$batch"'
    panels = [
        layout.row("Batches"),
        batches_table(layout, sel),
        panel(
            layout,
            "bargauge",
            "Duration vs max",
            "The current run's duration (or the latest finished run's) as a share of the batch's "
            "max_duration; 100 % is where BatchRunTooLong fires.",
            [
                target(
                    f"(batch_run_running_seconds{{{sel}}} > 0 or batch_run_last_duration_seconds{{{sel}}})"
                    f" / (batch_run_max_duration_seconds{{{sel}}} > 0)",
                    "{{batch}}",
                )
            ],
            unit="percentunit",
            decimals=0,
            minimum=0,
            maximum=1.5,
            steps=thresholds((0.8, "orange"), (1, "red")),
            options={
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        panel(
            layout,
            "stat",
            "Since last success",
            "Time since the latest successful run ended, judged against the schedule as the alerts judge it. "
            f"{STALENESS_COLOURS['success overdue'].capitalize()} (success overdue): the latest expected start "
            "is past its grace with no run started since, or past its max_duration or its finish_by with no "
            "success since (BatchRunMissed, BatchNoRecentSuccess, BatchFinishDeadlineMissed). Days a business "
            "calendar skips expect no run: a success from before a long weekend or Golden Week stays "
            f"{STALENESS_COLOURS['on schedule']} (on schedule) until the next business day's run is due. "
            f"{STALENESS_COLOURS['scheduler paused'].capitalize()} (scheduler paused): the scheduler has the job "
            f"paused. A batch without a schedule has no expected start: {NO_SCHEDULE_STEPS[0][1]} after 25 h, "
            f"{NO_SCHEDULE_STEPS[1][1]} after 48 h (no schedule).",
            [instant_series(staleness_expr(sel), "{{batch}}: {{staleness}}")],
            unit="dtdurations",
            decimals=1,
            steps=thresholds(*NO_SCHEDULE_STEPS),
            overrides=[
                override(f".*: {reading}", ("thresholds", thresholds(base=colour)), regex=True)
                for reading, colour in STALENESS_COLOURS.items()
            ],
            options=stat_options(),
        ),
        panel(
            layout,
            "bargauge",
            "Attempts",
            "Runs started for the latest business date. More than one is a re-run.",
            [target(f"batch_run_attempts{{{sel}}}", "{{batch}}")],
            unit="locale",
            decimals=0,
            minimum=0,
            steps=thresholds((2, "red")),
            options={
                "displayMode": "basic",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        layout.row("History"),
        panel(
            layout,
            "state-timeline",
            "Latest run status",
            "Status of each batch's latest run over time.",
            [target(f"batch:batch_run_last_status:code{{{sel}}}", "{{batch}}")],
            unit="none",
            decimals=0,
            mappings=STATUS_MAPPINGS,
            width=12,
            options=state_timeline_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Runs in the lookback window",
            "Runs per status over each batch's lookback window.",
            [target(f"sum by (status) (batch_runs{{{sel}}})", "{{status}}")],
            unit="locale",
            decimals=0,
            width=12,
            custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal", "group": "A"}},
            options=timeseries_options(),
        ),
        panel(
            layout,
            "stat",
            "Left pending",
            "Rows still in a pending state that belong to an attempt of the latest business date that is "
            "no longer in progress (ended, or marked running past max_duration: presumed dead): left "
            "without being finished or rolled back.",
            [target(f"batch_run_left_pending_records{{{sel}}}", "{{batch}}")],
            unit="locale",
            decimals=0,
            steps=thresholds((1, "red")),
            options=stat_options(),
        ),
        panel(
            layout,
            "table",
            "Checks",
            "Consistency checks: value and whether it is within its bounds.",
            [
                target(f"batch_check_value{{{sel}}}", instant=True),
                target(f"batch_check_ok{{{sel}}}", instant=True),
            ],
            # A check may return an amount as well as a count: up to 2 decimals, none for whole numbers.
            unit="locale",
            decimals=2,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "job": True, "instance": True},
                        "renameByName": {"Value #A": "value", "Value #B": "status"},
                    },
                },
            ],
            overrides=[
                override(
                    "status",
                    ("unit", "none"),
                    ("decimals", 0),
                    ("mappings", OK_MAPPINGS),
                    ("custom.cellOptions", {"type": "color-background"}),
                )
            ],
            options={"showHeader": True, "cellHeight": "sm"},
        ),
        firing_alerts(layout, 8),
    ]
    return dashboard(
        OVERVIEW_UID,
        "Batch overview",
        "Every batch watched by batch-exporter: status, last success, duration, re-runs, "
        "pending records and checks.",
        panels,
        batch_multi=True,
    )


def detail() -> dict[str, Any]:
    """One batch: runs, logs and the exporter's health for it."""
    layout = Layout()
    sel = 'batch=~"$batch"'
    dashed = ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
    panels = [
        layout.row("Runs"),
        panel(
            layout,
            "state-timeline",
            "Run timeline",
            "Status of the latest run over time.",
            [target(f"batch:batch_run_last_status:code{{{sel}}}", "status")],
            unit="none",
            mappings=STATUS_MAPPINGS,
            width=16,
            height=5,
            options=state_timeline_options(),
        ),
        panel(
            layout,
            "stat",
            "Schedule",
            "When the schedule last expected a start and expects the next (a business calendar leaves out "
            "the days it closes) and the grace allowed.",
            [
                target(f"batch_schedule_last_expected_timestamp_seconds{{{sel}}} * 1000", "last expected"),
                target(f"batch_schedule_next_expected_timestamp_seconds{{{sel}}} * 1000", "next expected"),
                target(f"batch_schedule_grace_seconds{{{sel}}}", "grace"),
            ],
            unit="dateTimeFromNow",
            width=8,
            height=5,
            steps=thresholds(base="blue"),
            overrides=[override("grace", ("unit", "dtdurations"), ("decimals", 1))],
            options=stat_options("value_and_name"),
        ),
        panel(
            layout,
            "timeseries",
            "Duration vs max",
            "The run in progress and the latest finished run against max_duration.",
            [
                target(f"batch_run_running_seconds{{{sel}}}", "current run"),
                target(f"batch_run_last_duration_seconds{{{sel}}}", "latest finished run"),
                target(f"batch_run_max_duration_seconds{{{sel}}}", "max duration"),
            ],
            unit="s",
            width=12,
            overrides=[override("max duration", dashed, ("color", {"mode": "fixed", "fixedColor": "red"}))],
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Attempts",
            "Runs started for the latest business date; more than 1 is a re-run.",
            [
                target(f"batch_run_attempts{{{sel}}}", "attempts"),
                target(f"batch_run_running{{{sel}}}", "in progress"),
            ],
            unit="locale",
            decimals=0,
            width=6,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Pending records",
            "Rows in a pending state over every attempt of the latest business date; 'left behind' counts "
            "those of attempts no longer in progress (ended, or presumed dead past max_duration).",
            [target(f"batch_run_pending_records{{{sel}}}", "pending"),
             target(f"batch_run_left_pending_records{{{sel}}}", "left behind", ref="B")],
            unit="locale",
            decimals=0,
            width=6,
            steps=thresholds((1, "red")),
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Records of the latest run by state",
            "Rows of the latest run by their state.",
            [target(f"batch_run_records{{{sel}}}", "{{state}}")],
            unit="locale",
            decimals=0,
            width=8,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Checks",
            "Values of the consistency queries.",
            [target(f"batch_check_value{{{sel}}}", "{{check}}")],
            unit="locale",
            decimals=2,
            width=8,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "state-timeline",
            "Check status",
            "Whether each check is within its bounds.",
            [target(f"batch_check_ok{{{sel}}}", "{{check}}")],
            unit="none",
            mappings=OK_MAPPINGS,
            width=8,
            options=state_timeline_options(),
        ),
        panel(
            layout,
            "stat",
            "Latest start the calendar skipped",
            "The latest start the cron gave and the business calendar left out, with its local date and why "
            "(weekend, holiday and its name, closed, not-picked).",
            [target(f"batch_schedule_last_skipped_timestamp_seconds{{{sel}}} * 1000",
                    "{{date}} {{reason}} {{holiday}}")],
            unit="dateTimeFromNow",
            width=8,
            height=4,
            steps=thresholds(base="blue"),
            options=stat_options("value_and_name"),
        ),
        panel(
            layout,
            "stat",
            "Finish deadline",
            "When the latest expected run's work must have succeeded (schedule.finish_by), and when it is "
            "projected to end at its usual pace (as BatchFinishDeadlineAtRisk reads it).",
            [
                target(f"batch_schedule_finish_deadline_timestamp_seconds{{{sel}}} * 1000", "finish by"),
                target(f"batch:batch_run_projected_end_timestamp_seconds{{{sel}}} * 1000", "projected end",
                       ref="B"),
            ],
            unit="dateTimeFromNow",
            width=8,
            height=4,
            steps=thresholds(base="blue"),
            options=stat_options("value_and_name"),
        ),
        panel(
            layout,
            "stat",
            "Success contradicted by",
            "Evidence against the latest run's recorded success: error lines its logs gained while it ran "
            "(log:LOG/PATTERN, the line count) or a check out of its bounds (check:CHECK, its value).",
            [target(f"batch:batch_run_success_contradicted{{{sel}}}", "{{evidence}}")],
            unit="locale",
            decimals=0,
            width=8,
            height=4,
            steps=thresholds((0, "red"), base="green"),
            options=stat_options("value_and_name"),
        ),
        panel(
            layout,
            "timeseries",
            "Usual duration",
            "How long a successful run usually takes (median and 0.9 quantile of the successful runs in the "
            "lookback window, the latest run key's left out) against the latest finished run: "
            "BatchRunFarLongerThanUsual and BatchRunSuspiciouslyFast compare with it.",
            [
                target(f"batch_run_usual_duration_seconds{{{sel}}}", "usual (quantile {{quantile}})"),
                target(f"batch_run_last_duration_seconds{{{sel}}}", "latest finished run", ref="B"),
            ],
            unit="s",
            width=24,
            height=6,
            overrides=[override("^usual .*", ("custom.lineStyle", {"fill": "dot", "dash": [0, 10]}), regex=True)],
            options=timeseries_options(),
        ),
        layout.row("Logs"),
        panel(
            layout,
            "timeseries",
            "Log size vs limit",
            "Size of each log file, its configured limit (dashed) and where another day like the last "
            "would take the live file (dotted): its size plus what it grew since the same time yesterday, "
            "as BatchLogFileWillHitLimit reads it.",
            [
                target(f"batch_log_file_size_bytes{{{sel}}}", "{{log}} {{path}}"),
                target(f"batch_log_file_size_limit_bytes{{{sel}}}", "{{log}} limit"),
                target(
                    f"batch_log_path:batch_log_file_size_bytes:live{{{sel}}} + (("
                    f"batch_log_path:batch_log_file_size_bytes:live{{{sel}}} - "
                    f"batch_log_file_size_bytes{{{sel}}} offset 1d) > 0 "
                    f"or batch_log_path:batch_log_file_size_bytes:live{{{sel}}} * 0)",
                    "{{log}} {{path}} after a day like the last",
                ),
            ],
            unit="bytes",
            width=12,
            height=9,
            overrides=[
                override(".* limit$", dashed, ("color", {"mode": "fixed", "fixedColor": "red"}), regex=True),
                override(".* after a day like the last$", ("custom.lineStyle", {"fill": "dot", "dash": [0, 10]}),
                         regex=True),
            ],
            options=timeseries_options(),
        ),
        panel(
            layout,
            "stat",
            "Time to limit",
            "Time until each growing file reaches its limit at the last hour's growth rate.",
            [target(f"batch_log_path:batch_log_file_seconds_to_limit:deriv1h{{{sel}}}", "{{log}} {{path}}")],
            unit="dtdurations",
            decimals=1,
            width=6,
            height=9,
            steps=thresholds((4 * 3600, "green"), base="red"),
            options=stat_options(),
        ),
        panel(
            layout,
            "bargauge",
            "Share of limit used",
            "Each file's size as a share of its log's limit.",
            [target(f"batch_log_path:batch_log_file_size_ratio{{{sel}}}", "{{log}} {{path}}")],
            unit="percentunit",
            width=6,
            height=9,
            minimum=0,
            maximum=1,
            steps=thresholds((0.9, "orange"), (0.98, "red")),
            options={
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        panel(
            layout,
            "timeseries",
            "Error lines per second",
            "Lines matching each pattern, per second.",
            [target(f"rate(batch_log_matches_total{{{sel}}}[$__rate_interval])", "{{log}} {{pattern}}")],
            unit="suffix: lines/s",
            width=8,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Lines read per second",
            "Lines read from each log, per second.",
            [target(f"rate(batch_log_lines_total{{{sel}}}[$__rate_interval])", "{{log}}")],
            unit="suffix: lines/s",
            width=8,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "stat",
            "Last write",
            "Time since each log was last written (newest file of the log).",
            [
                target(
                    f"time() - max without (path) (batch_log_file_modified_timestamp_seconds{{{sel}}})",
                    "{{log}}",
                )
            ],
            unit="dtdurations",
            decimals=1,
            width=8,
            steps=thresholds((900, "orange")),
            options=stat_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Scan lag",
            "Bytes written to each log but not read by the exporter yet.",
            [target(f"batch_log_unread_bytes{{{sel}}}", "{{log}}")],
            unit="bytes",
            width=8,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Rotations, truncations, oversized lines",
            "Events seen by the log scanner in each interval.",
            [
                target(
                    f"increase(batch_log_rotations_total{{{sel}}}[$__rate_interval])", "{{log}} rotations"
                ),
                target(
                    f"increase(batch_log_truncations_total{{{sel}}}[$__rate_interval])", "{{log}} truncations"
                ),
                target(
                    f"increase(batch_log_oversized_lines_total{{{sel}}}[$__rate_interval])",
                    "{{log}} oversized lines",
                ),
            ],
            unit="locale",
            decimals=0,
            width=8,
            custom={"drawStyle": "bars", "fillOpacity": 60},
            options=timeseries_options(),
        ),
        panel(
            layout,
            "stat",
            "Files",
            "Files matching each log's path or glob, and those not exported per path.",
            [
                target(f"batch_log_files{{{sel}}}", "{{log}} files"),
                target(f"batch_log_file_series_dropped{{{sel}}}", "{{log}} not exported"),
            ],
            unit="locale",
            decimals=0,
            width=8,
            steps=thresholds(base="blue"),
            options=stat_options(),
        ),
        layout.row("Exporter health"),
        panel(
            layout,
            "state-timeline",
            "Source up",
            "Whether each of the batch's sources polled successfully.",
            [target(f"batch_exporter_source_up{{{SOURCE_OF_BATCH}}}", "{{source}}")],
            unit="none",
            mappings=UP_MAPPINGS,
            width=12,
            options=state_timeline_options(),
        ),
        panel(
            layout,
            "stat",
            "Scrape",
            "Whether Prometheus can scrape the exporter that serves this batch.",
            [
                target(
                    f"up{{{JOB_SELECTOR}}} and on (instance, job) "
                    f"max_over_time(batch_run_idempotent{{{sel}}}[1h])",
                    "{{instance}}",
                )
            ],
            unit="none",
            mappings=UP_MAPPINGS,
            width=4,
            options=stat_options("value"),
        ),
        panel(
            layout,
            "stat",
            "Snapshot age",
            "Time since each source last completed a poll.",
            [
                target(
                    f"time() - batch_exporter_source_last_success_timestamp_seconds{{{SOURCE_OF_BATCH}}}",
                    "{{source}}",
                )
            ],
            unit="dtdurations",
            decimals=1,
            width=8,
            steps=thresholds((900, "orange")),
            options=stat_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Poll duration",
            "Duration of each source's latest poll.",
            [target(f"batch_exporter_source_poll_duration_seconds{{{SOURCE_OF_BATCH}}}", "{{source}}")],
            unit="s",
            width=12,
            options=timeseries_options(),
        ),
        panel(
            layout,
            "timeseries",
            "Poll errors",
            "Failed polls per second by source and reason.",
            [
                target(
                    f"rate(batch_exporter_source_errors_total{{{SOURCE_OF_BATCH}}}[$__rate_interval])",
                    "{{source}} {{reason}}",
                )
            ],
            unit="suffix: errors/s",
            width=12,
            options=timeseries_options(),
        ),
        firing_alerts(layout, 24),
    ]
    return dashboard(
        DETAIL_UID,
        "Batch detail",
        "One batch: run timeline, duration against its maximum, records, checks, log size "
        "against its limit with the time-to-limit projection, error lines and the "
        "exporter's health for it.",
        panels,
        batch_multi=False,
    )


DASHBOARDS = {f"{OVERVIEW_UID}.json": overview, f"{DETAIL_UID}.json": detail}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool


def panel_queries() -> Iterator[PanelQuery]:
    """Every query of every panel of every dashboard (variables not yet filled in)."""
    for build in DASHBOARDS.values():
        board = build()
        for item in board["panels"]:
            for query in item.get("targets", []):
                yield PanelQuery(
                    board["uid"], item["title"], query["refId"], query["expr"], bool(query.get("instant"))
                )


def render_query(expr: str, *, batch: str = ".+", rate_interval: str = "1m") -> str:
    """`expr` with Grafana's variables filled in, ready for Prometheus's HTTP API.

    `batch` is a regex (the multi-value form); `${batch:regex}` gets it as is.
    """
    expr = expr.replace("$__rate_interval", rate_interval)
    expr = expr.replace("${batch:regex}", batch)
    return re.sub(r"\$batch\b", batch, expr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the committed JSON instead of writing"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date, run python dashboards/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
