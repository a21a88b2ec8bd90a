"""The calendar's edge days on the shipped rules: alerts/tests/calendar.test.yml is generated from the
exporter's own schedule (tests/calendar_days.py) and run by promtool with the other unit tests
(tests/test_alert_rules.py); here, that the committed file is still what the exporter and the scenarios give."""
from __future__ import annotations

from pathlib import Path

import calendar_days

COMMITTED = Path(__file__).resolve().parents[1] / "alerts" / "tests" / "calendar.test.yml"


def test_committed_calendar_tests_are_the_generator_output() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == calendar_days.render(), (
        "alerts/tests/calendar.test.yml is stale: run `python tests/calendar_days.py > alerts/tests/calendar.test.yml`")


def test_every_scenario_checks_a_quiet_moment_and_a_page() -> None:
    for scenario in calendar_days.SCENARIOS:
        assert any(not check.firing for check in scenario.checks), scenario.title
        assert any(check.firing for check in scenario.checks), scenario.title
