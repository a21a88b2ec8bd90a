"""The alert pack's parameters (alerts/pack.yml), read and checked; used by alerts/generate.py and
dashboards/generate.py, which render the rules, the PrometheusRule and the dashboards from them. Also
the rendering of a rule file for vmalert (`vmalert_rules`), which alerts/generate.py writes beside it."""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).resolve().parent / "pack.yml"
# one or more matchers as Prometheus writes them inside braces: name op "value"
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"{_MATCHER}(,{_MATCHER})*,?\s*")


class PackError(ValueError):
    """A parameter file that cannot be used: the message names the file and the key."""


@dataclass(frozen=True)
class Pack:
    job_selector: str
    runbook_base_url: str
    config_path: str
    log_size_warning_ratio: float
    log_size_critical_ratio: float

    def runbook(self, alertname: str) -> str:
        return f"{self.runbook_base_url}/{alertname}.md"

    @property
    def rerun_check(self) -> str:
        return f"batch-exporter rerun-check -c {self.config_path}"


def load_pack(path: Path | None = None) -> Pack:
    """The defaults of alerts/pack.yml, with the keys of `path` (if given) laid over them."""
    values = _read(DEFAULTS_FILE)
    if path is not None:
        values.update(_read(path))
        source = path
    else:
        source = DEFAULTS_FILE
    return _checked(values, source)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PackError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    known = {f.name for f in fields(Pack)}
    for key in data:
        if key not in known:
            raise PackError(f"{path}: {key}: unknown parameter (known: {', '.join(sorted(known))})")
    return dict(data)


def _checked(values: dict[str, Any], path: Path) -> Pack:
    def text(key: str) -> str:
        value = values[key]
        if not isinstance(value, str) or not value.strip():
            raise PackError(f"{path}: {key}: expected a non-empty string, got {value!r}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise PackError(f"{path}: {key}: line breaks, tabs and other control characters are not allowed, "
                            f"got {value!r}")
        return value.strip()

    def ratio(key: str) -> float:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise PackError(f"{path}: {key}: expected a number between 0 and 1 (exclusive), got {value!r}")
        return float(value)

    selector = text("job_selector")
    if not _SELECTOR.fullmatch(selector):
        raise PackError(f"{path}: job_selector: expected label matchers as inside up{{...}}, such as "
                        f'job="batch-exporter", got {selector!r}')
    base = text("runbook_base_url").rstrip("/")
    if not re.match(r"https?://[^\s/]+", base) or any(c in base for c in " \"'{}<>"):
        raise PackError(f"{path}: runbook_base_url: expected an http(s) URL without spaces, quotes or "
                        f"braces, got {base!r}")
    config_path = text("config_path")
    if any(c in config_path for c in "`\"{}\n"):
        raise PackError(f"{path}: config_path: backquotes, double quotes, braces and line breaks are not "
                        f"allowed (it is shown inside alert templates), got {config_path!r}")
    warning, critical = ratio("log_size_warning_ratio"), ratio("log_size_critical_ratio")
    if warning >= critical:
        raise PackError(f"{path}: log_size_warning_ratio ({warning}) must be below log_size_critical_ratio "
                        f"({critical})")
    return Pack(job_selector=selector, runbook_base_url=base, config_path=config_path,
                log_size_warning_ratio=warning, log_size_critical_ratio=critical)


def substitutions(pack: Pack) -> dict[str, str]:
    """The [[name]] placeholders of alerts/src/ and their text."""
    return {
        "job_selector": pack.job_selector,
        "runbook_base_url": pack.runbook_base_url,
        "config_path": pack.config_path,
        "log_size_warning_ratio": f"{pack.log_size_warning_ratio:g}",
        "log_size_critical_ratio": f"{pack.log_size_critical_ratio:g}",
    }


_PLACEHOLDER = re.compile(r"\[\[([a-z_]+)\]\]")


def fill(template: str, pack: Pack, source: str) -> str:
    """`template` with every [[name]] replaced; an unknown name is an error naming its line."""
    values = substitutions(pack)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            line = template.count("\n", 0, match.start()) + 1
            raise PackError(f"{source}:{line}: unknown placeholder [[{name}]]")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)


# --- the rendering for vmalert (VictoriaMetrics) ------------------------------------------------------

# Rule fields vmalert 1.79 (Debian 12's) refuses, and with them the whole file: keep_firing_for came in 1.92.
VMALERT_UNKNOWN_FIELDS = ("keep_firing_for",)
# MetricsQL's plain forms count a series first seen inside the window from 0 (a counter found at 3 has
# "increased" by 3); the *_prometheus forms, all in 1.79, compute what Prometheus does.
METRICSQL_FUNCTIONS = {
    "increase": "increase_prometheus",
    "delta": "delta_prometheus",
    "changes": "changes_prometheus",
}
# PromQL text as tokens: string literals, comments and identifiers whole, anything else a character at a time
_PROMQL_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`|#[^\n]*|[A-Za-z_:][A-Za-z0-9_:]*|.',
                           re.DOTALL)
_TEMPLATE_ACTION = re.compile(r"{{.*?}}", re.DOTALL)


def metricsql(expr: str, where: str) -> str:
    """`expr` with each call of a METRICSQL_FUNCTIONS function renamed; names inside strings, comments,
    label matchers and longer identifiers (my_increase) are left alone."""
    parts = []
    for match in _PROMQL_TOKEN.finditer(expr):
        token = match.group()
        if token in ('"', "'", "`"):
            line = expr.count("\n", 0, match.start()) + 1
            raise PackError(f"{where}: expr line {line}: a string opened with {token} is not closed on its line")
        if token in METRICSQL_FUNCTIONS and expr[match.end():].lstrip().startswith("("):
            token = METRICSQL_FUNCTIONS[token]
        parts.append(token)
    return "".join(parts)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as `|` blocks, long lines (descriptions) folded, lists indented: as
    alerts/src/ writes them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > 100 and " " in value else None  # > : descriptions
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def vmalert_rules(text: str, source: str) -> str:
    """The rule file `text` (Prometheus's, named `source`) for vmalert 1.79: without keep_firing_for and
    with METRICSQL_FUNCTIONS renamed in every expression, under a header naming what changed."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise PackError(f"{source}: expected a mapping with a 'groups' list")
    dropped: list[str] = []
    renamed: list[str] = []
    for group_index, group in enumerate(data["groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
            raise PackError(f"{source}: groups[{group_index}]: expected a mapping with a 'rules' list")
        for rule_index, rule in enumerate(group["rules"]):
            if not isinstance(rule, dict):
                raise PackError(f"{source}: group {group.get('name')}: rules[{rule_index}]: expected a mapping")
            name = str(rule.get("alert") or rule.get("record"))
            labels = rule["labels"] if isinstance(rule.get("labels"), dict) else {}
            tier = f" ({labels['severity']})" if "severity" in labels else ""
            where = f"{source}: group {group.get('name')}: {name}"
            expr = rule.get("expr")
            if isinstance(expr, bool) or not isinstance(expr, str | int | float):  # `expr: 1` is a number
                raise PackError(f"{where}: expected an expression in 'expr', got {expr!r}")
            if isinstance(expr, str):
                rule["expr"] = metricsql(expr, where)
                if rule["expr"] != expr and name not in renamed:
                    renamed.append(name)
            _refuse_template_queries(rule, where)
            for key in VMALERT_UNKNOWN_FIELDS:
                if key in rule:
                    dropped.append(f"{name}{tier} {rule.pop(key)}")
    body = yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=110)
    if yaml.safe_load(body) != data:  # the dumper's styles must not change a value
        raise PackError(f"{source}: the vmalert rendering does not read back as written")
    return _vmalert_header(source, dropped, renamed) + body


def _refuse_template_queries(rule: dict[str, Any], where: str) -> None:
    """A template's `query` runs on VictoriaMetrics too; its PromQL is inside a template string, which
    this rendering does not rewrite, so one that would need it is refused rather than left to differ."""
    for field in ("labels", "annotations"):
        for key, value in (rule.get(field) or {}).items():
            for action in _TEMPLATE_ACTION.findall(str(value)):
                if re.search(r"\bquery\b", action) and any(
                        re.search(rf"(?<![\w:]){name}\s*\(", action) for name in METRICSQL_FUNCTIONS):
                    raise PackError(f"{where}: {field}.{key}: a template query calls "
                                    f"{'/'.join(METRICSQL_FUNCTIONS)}(), which MetricsQL computes differently; "
                                    f"the vmalert rendering cannot rewrite it inside a template")


def _vmalert_header(source: str, dropped: list[str], renamed: list[str]) -> str:
    def wrapped(text: str, hanging: str = "#   ") -> str:
        return "\n".join(textwrap.wrap(text, 104, initial_indent="# ", subsequent_indent=hanging,
                                       break_on_hyphens=False, break_long_words=False)) + "\n"

    calls = ", ".join(f"{old}() -> {new}()" for old, new in METRICSQL_FUNCTIONS.items())
    return (
        wrapped(f"For vmalert (VictoriaMetrics; tested with 1.79, Debian 12's): the rules of {source} with two "
                "changes, without which vmalert refuses the file or fires differently. docs/victoriametrics.md "
                "tells how to run it and what else differs; the comments of that file explain each rule.", "# ")
        + wrapped("1. No keep_firing_for (vmalert knows it from 1.92 on, and refuses the whole file before). "
                  + (f"These alerts lose their hold and resolve as soon as their condition ends: {', '.join(dropped)}. "
                     "So when an exporter dies, its batch alerts resolve as their series run out (within a scrape "
                     "or two, or after last_over_time's 2 minutes), before BatchExporterDown (for 2m) fires: the "
                     "pager hears \"resolved\" first, for a failure nobody fixed." if dropped
                     else "No rule here has one."))
        + wrapped(f"2. {calls}: MetricsQL's plain forms count a series first seen inside the window from 0, "
                  "so an exporter's first start, reading a log's old error lines, would look like new errors. "
                  + (f"Rules changed: {', '.join(renamed)}." if renamed else "No rule here calls them."))
    )
