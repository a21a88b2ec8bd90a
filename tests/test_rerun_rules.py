"""Re-runs of an earlier run key on the shipped rules: alerts/tests/reruns.test.yml is generated from the
exporter's own sources (tests/rerun_days.py) and run by promtool with the other unit tests
(tests/test_alert_rules.py); here, that the committed file is still what the exporter and the scenarios
give, and that the scenarios tell an exporter that counts every run as the expected start's from this one."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import rerun_days
from batch_exporter.sources.runs import RunsSource

ALERTS = Path(__file__).resolve().parents[1] / "alerts"
COMMITTED = ALERTS / "tests" / "reruns.test.yml"


def test_committed_rerun_tests_are_the_generator_output() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == rerun_days.render(), (
        "alerts/tests/reruns.test.yml is stale: run `python tests/rerun_days.py > alerts/tests/reruns.test.yml`")


def test_every_scenario_checks_a_quiet_moment_and_a_page() -> None:
    for scenario in rerun_days.SCENARIOS:
        assert any(not check.firing for check in scenario.checks), scenario.title
        assert any(check.firing for check in scenario.checks), scenario.title


class _Blind(RunsSource):
    """The runs source as it was before it knew the schedule: every run counts as the latest expected start's."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.pop("expected", None)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def test_the_scenarios_fail_an_exporter_that_takes_a_rerun_for_the_expected_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rerun_days, "RunsSource", _Blind)
    blind = tmp_path / "tests" / "blind.test.yml"
    blind.parent.mkdir()
    blind.write_text(rerun_days.render().replace("../batch-exporter.rules.yml",
                                                 str(ALERTS / "batch-exporter.rules.yml")), encoding="utf-8")
    result = subprocess.run(["promtool", "test", "rules", str(blind)], check=False, capture_output=True, text=True,
                            timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # the night whose run never started pages with this exporter, not with the blind one
    assert 'exp: {alertname="BatchRunMissed", batch="masked"}' in output
    assert 'batch="slot-masked"' in output and 'batch="ny-fall"' in output
