"""The alert pack's parameters (alerts/pack.yml): one set of values renders the rules, their vmalert
rendering, the PrometheusRule and the dashboards, the committed files are those of the defaults, and other
values reach all four. The vmalert rendering of any rule file (tests/test_vmalert.py runs it on vmalert)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "alerts" / "generate.py"
VMALERT_RULES = Path("alerts/vmalert/batch-exporter.rules.yml")
DEFAULT_BASE = "https://github.com/batch-exporter/batch-exporter/blob/main/alerts/runbooks"
DEFAULT_JOB = 'job="batch-exporter"'


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_the_committed_files_are_the_defaults_rendered() -> None:
    result = generate("--check")
    assert result.returncode == 0, result.stderr


def test_the_check_covers_the_vmalert_rendering(tmp_path: Path) -> None:
    # on a copy of what the generators read and write, so the checkout is never touched
    for folder in ("alerts", "deploy", "dashboards"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    stale = tmp_path / VMALERT_RULES
    stale.write_text(stale.read_text(encoding="utf-8").replace("increase_prometheus(", "increase("),
                     encoding="utf-8")
    result = subprocess.run([sys.executable, str(tmp_path / "alerts" / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"out of date, run python3 alerts/generate.py: {VMALERT_RULES}" in result.stderr


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pack")
    params = folder / "my-pack.yml"
    params.write_text(
        "job_selector: 'job=\"payments-batch\", env=\"prod\"'\n"
        "runbook_base_url: https://wiki.example.com/ops/batch/\n"
        "config_path: 'C:\\ProgramData\\batch-exporter\\config.yml'\n"
        "log_size_warning_ratio: 0.8\n"
        "log_size_critical_ratio: 0.95\n", encoding="utf-8")
    result = generate("--params", str(params), "--out", str(folder / "out"))
    assert result.returncode == 0, result.stderr
    return folder / "out"


def _alerts(rules: Path) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"] for r in g["rules"] if "alert" in r]


def test_other_values_reach_the_rules_and_promtool_accepts_them(custom: Path) -> None:
    rules = custom / "alerts" / "batch-exporter.rules.yml"
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = _alerts(rules)
    for alert in alerts:
        annotations = alert["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["runbook_url"] == f"https://wiki.example.com/ops/batch/{alert['alert']}.md"
    text = rules.read_text(encoding="utf-8")
    assert 'up{job="payments-batch", env="prod"}' in text
    assert "rerun-check -c C:\\ProgramData\\batch-exporter\\config.yml" in text
    exprs = {str(a["expr"]).strip() for a in alerts if a["alert"] == "BatchLogFileNearSizeLimit"}
    assert exprs == {"batch_log_path:batch_log_file_size_ratio:live >= 0.8",
                     "batch_log_path:batch_log_file_size_ratio:live >= 0.95"}


def test_other_values_reach_the_vmalert_rendering_and_vmalert_accepts_it(custom: Path) -> None:
    rules = custom / VMALERT_RULES
    checked = subprocess.run(["vmalert", "-dryRun", f"-rule={rules}"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    prometheus = {(a["alert"], str(a["expr"])) for a in _alerts(custom / "alerts" / "batch-exporter.rules.yml")}
    vmalert = {(a["alert"], str(a["expr"]).replace("increase_prometheus(", "increase(")) for a in _alerts(rules)}
    assert vmalert == prometheus
    assert all(a["annotations"]["runbook_url"].startswith("https://wiki.example.com/ops/batch/")  # type: ignore[index]
               for a in _alerts(rules))


def test_other_values_reach_the_prometheus_rule_and_the_dashboards(custom: Path) -> None:
    rules = yaml.safe_load((custom / "alerts" / "batch-exporter.rules.yml").read_text(encoding="utf-8"))
    prometheus_rule = yaml.safe_load((custom / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text())
    assert prometheus_rule["spec"]["groups"] == rules["groups"]
    overview = (custom / "dashboards" / "batch-overview.json").read_text(encoding="utf-8")
    detail = (custom / "dashboards" / "batch-detail.json").read_text(encoding="utf-8")
    json.loads(overview), json.loads(detail)
    assert "https://wiki.example.com/ops/batch/${__value.raw}.md" in overview
    assert "rerun-check -c C:\\\\ProgramData\\\\batch-exporter\\\\config.yml" in overview
    assert json.dumps('up{job="payments-batch", env="prod"}')[1:-1] in detail


def test_no_default_is_left_behind_in_a_custom_render(custom: Path) -> None:
    for path in custom.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert DEFAULT_BASE not in text, path
            assert DEFAULT_JOB not in text and json.dumps(DEFAULT_JOB)[1:-1] not in text, path
            assert "/etc/batch-exporter/config.yml" not in text, path


def test_the_repository_holds_no_copy_of_a_parameter_outside_the_pack() -> None:
    # the rendered files aside, a default written out again would not follow a change of alerts/pack.yml
    rendered = {REPO / "alerts" / "batch-exporter.rules.yml", REPO / "deploy" / "kubernetes" / "prometheusrule.yaml",
                *(REPO / "dashboards").glob("*.json")}
    for folder in ("alerts/src", "dashboards", "deploy/kubernetes"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path not in rendered and path.suffix in (".yml", ".yaml", ".py"):
                assert DEFAULT_BASE not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize(("content", "message"), [
    ("job: x\n", "job: unknown parameter"),
    ("log_size_warning_ratio: 1.5\n", "log_size_warning_ratio: expected a number between 0 and 1"),
    ("log_size_warning_ratio: 0.99\n", "log_size_warning_ratio (0.99) must be below log_size_critical_ratio"),
    ("job_selector: 'batch-exporter'\n", "job_selector: expected label matchers"),
    ("runbook_base_url: wiki/runbooks\n", "runbook_base_url: expected an http(s) URL"),
    ("config_path: '/etc/{{ x }}'\n", "config_path: backquotes, double quotes, braces"),
    ("- a list\n", "expected a mapping of parameters"),
    ('job_selector: "job=\\"x\\"\\n"\n', "job_selector: line breaks, tabs and other control characters"),
    ('runbook_base_url: "https://wiki.example.com/a\\n\\t"\n', "runbook_base_url: line breaks"),
])
def test_a_bad_parameter_file_names_the_file_and_the_key(tmp_path: Path, content: str, message: str) -> None:
    params = tmp_path / "bad.yml"
    params.write_text(content, encoding="utf-8")
    result = generate("--params", str(params), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{params}: " in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


# --- the vmalert rendering of any rule file -------------------------------------------------------------


@pytest.fixture(scope="module")
def pack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("batch_alert_pack_under_test", REPO / "alerts" / "pack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("expr", "expected"), [
    ("increase(x_total[5m]) > 0", "increase_prometheus(x_total[5m]) > 0"),
    ("sum by (job) (increase (x_total[5m]))", "sum by (job) (increase_prometheus (x_total[5m]))"),
    ("delta(g[1h]) + changes(g[1h])", "delta_prometheus(g[1h]) + changes_prometheus(g[1h])"),
    # names that are not calls of those functions stay as written
    ('x{path="/increase(1)", mode=\'delta(\'} > 0', 'x{path="/increase(1)", mode=\'delta(\'} > 0'),
    ('x{path=`increase(`}', 'x{path=`increase(`}'),
    ("my_increase(x) or increase_rate(x) or ns:increase(x)", "my_increase(x) or increase_rate(x) or ns:increase(x)"),
    ("x{increase=\"1\"} and on (increase) y", "x{increase=\"1\"} and on (increase) y"),
    ("rate(x[5m])  # then increase(x[5m])\n> 0", "rate(x[5m])  # then increase(x[5m])\n> 0"),
    ('x{a="\\"increase(\\""} + increase(y[1m])', 'x{a="\\"increase(\\""} + increase_prometheus(y[1m])'),
])
def test_metricsql_renames_only_the_function_calls(pack: ModuleType, expr: str, expected: str) -> None:
    assert pack.metricsql(expr, "f") == expected


def test_an_unclosed_string_is_an_error_naming_the_rule_and_line(pack: ModuleType) -> None:
    with pytest.raises(pack.PackError, match=r"^f: g: R: expr line 2: a string opened with \" is not closed"):
        pack.metricsql('up\nand x{a="b}', "f: g: R")


def _prose(comments: str) -> str:
    """A header's comment lines as one line of text."""
    return " ".join(word for line in comments.splitlines() if line.startswith("#") for word in line[1:].split())


SOURCE = """\
groups:
  - name: someone.elses
    interval: 30s
    rules:
      - record: job:x:increase5m
        expr: sum by (job) (increase(x_total{path="increase(1)"}[5m]))
      - alert: NewAlert
        expr: |
          job:x:increase5m > 0
          or changes(y[10m]) > 2
        for: 5m
        keep_firing_for: 10m
        labels:
          severity: critical
        annotations:
          description: "{{ $value | humanize }} since increase(...) began"
"""


def test_a_new_rule_is_rendered_for_vmalert_whatever_it_holds(pack: ModuleType) -> None:
    text = pack.vmalert_rules(SOURCE, "alerts/new.rules.yml")
    rendered = yaml.safe_load(text)
    original = yaml.safe_load(SOURCE)
    record, alert = original["groups"][0]["rules"]
    record["expr"] = 'sum by (job) (increase_prometheus(x_total{path="increase(1)"}[5m]))'
    alert["expr"] = "job:x:increase5m > 0\nor changes_prometheus(y[10m]) > 2\n"
    del alert["keep_firing_for"]
    assert rendered == original
    header = text.split("groups:", 1)[0]
    assert all(line.startswith("#") for line in header.splitlines())
    assert "lose their hold and resolve as soon as their condition ends: NewAlert (critical) 10m." in _prose(header)
    assert "Rules changed: job:x:increase5m, NewAlert." in _prose(header)


def test_a_rule_file_without_a_hold_or_counter_is_rendered_unchanged(pack: ModuleType) -> None:
    source = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n"
    text = pack.vmalert_rules(source, "alerts/plain.rules.yml")
    assert yaml.safe_load(text) == yaml.safe_load(source)
    assert "No rule here has one." in _prose(text) and "No rule here calls them." in _prose(text)


@pytest.mark.parametrize(("source", "message"), [
    ("- just a list\n", "alerts/x.rules.yml: expected a mapping with a 'groups' list"),
    ("groups:\n  - name: g\n", "alerts/x.rules.yml: groups[0]: expected a mapping with a 'rules' list"),
    ("groups:\n  - name: g\n    rules: [5]\n", "alerts/x.rules.yml: group g: rules[0]: expected a mapping"),
    ("groups:\n  - name: g\n    rules:\n      - alert: A\n",
     "alerts/x.rules.yml: group g: A: expected an expression in 'expr', got None"),
    ('groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n'
     '          d: \'{{ with query "increase(x[5m])" }}{{ . }}{{ end }}\'\n',
     "alerts/x.rules.yml: group g: A: annotations.d: a template query calls increase/delta/changes()"),
])
def test_a_rule_file_vmalert_cannot_be_given_is_refused_naming_the_place(pack: ModuleType, source: str,
                                                                        message: str) -> None:
    with pytest.raises(pack.PackError) as refused:
        pack.vmalert_rules(source, "alerts/x.rules.yml")
    assert str(refused.value).startswith(message), refused.value
