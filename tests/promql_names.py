"""What a PromQL expression refers to, read with a real PromQL parser (promql-parser).

Used by the rule and dashboard tests to prove that every metric they name is one the exporter
exports (or a recording rule output, or a Prometheus built-in).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import promql_parser

# Series Prometheus itself creates: scrape health and the alert state of rules.
BUILTIN_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
# Labels Prometheus attaches at scrape time, on top of the exporter's own.
TARGET_LABELS = frozenset({"instance", "job"})
# What `$__rate_interval` stands for while parsing, so that tests can find where it was used.
RATE_INTERVAL_STAND_IN = timedelta(seconds=3333)

_GRAFANA_VARIABLES = (
    (re.compile(r"\$__rate_interval\b|\$\{__rate_interval\}"), "3333s"),
    (re.compile(r"\$__(interval|range)\b|\$\{__(interval|range)\}"), "5m"),
    (re.compile(r"\$\{(\w+)(:\w+)?\}|\$(\w+)"), "grafana_variable"),
)


@dataclass(frozen=True)
class Selector:
    """One vector selector: its metric name and its label matchers (name, operator, value)."""

    metric: str | None
    matchers: tuple[tuple[str, str, str], ...]


def _children(node: object) -> Iterator[object]:
    for attribute in ("expr", "param", "lhs", "rhs", "vector_selector"):
        child = getattr(node, attribute, None)
        if isinstance(child, promql_parser.Expr):
            yield child
    if isinstance(node, promql_parser.Call):
        yield from node.args


def walk(node: object) -> Iterator[object]:
    """Every node of the expression tree, depth first."""
    yield node
    for child in _children(node):
        yield from walk(child)


def parse(expr: str) -> object:
    """Parse PromQL; raises ValueError with the parser's message when it is not valid."""
    return promql_parser.parse(expr)


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's template variables by values the parser accepts."""
    for pattern, value in _GRAFANA_VARIABLES:
        expr = pattern.sub(value, expr)
    return expr


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in `expr`, with `__name__` matchers folded into the metric name."""
    found: list[Selector] = []
    for node in walk(parse(expr)):
        if not isinstance(node, promql_parser.VectorSelector):
            continue
        matchers = tuple((m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers)
        name = node.name or next((value for label, _, value in matchers if label == "__name__"), None)
        found.append(Selector(name, tuple(m for m in matchers if m[0] != "__name__")))
    return found


def metric_names(expr: str) -> set[str]:
    """Names of every metric `expr` selects."""
    return {s.metric for s in selectors(expr) if s.metric}


def range_functions(expr: str) -> list[tuple[str, timedelta]]:
    """(function name, range) for every function applied to a range vector selector."""
    found: list[tuple[str, timedelta]] = []
    for node in walk(parse(expr)):
        if isinstance(node, promql_parser.Call):
            for arg in node.args:
                if isinstance(arg, promql_parser.MatrixSelector):
                    found.append((node.func.name, arg.range))
    return found
