"""The alert pack's parameters (alerts/pack.yml): one set of values renders the rules, the PrometheusRule
and the dashboards, the committed files are those of the defaults, and other values reach all three."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "alerts" / "generate.py"
DEFAULT_BASE = "https://github.com/batch-exporter/batch-exporter/blob/main/alerts/runbooks"
DEFAULT_JOB = 'job="batch-exporter"'


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_the_committed_files_are_the_defaults_rendered() -> None:
    result = generate("--check")
    assert result.returncode == 0, result.stderr


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
