"""Drills: inject each failure of the incident into the demo batch and time the alerts it raises.

`batch-exporter drill SCENARIO|all` (see `cli.py`). The pieces: `target` (the only writer: a recognised
demo folder, snapshots and restores), `world` (the demo in a known healthy state and an exporter over
it), `scenarios` (the faults and their undo), `live` (against real Prometheus and Alertmanager),
`promtool` (the fallback without them), `report` (progress line, timelines, table).
"""
from .cli import run_drill
from .scenarios import BY_NAME, SCENARIOS, Expected, Scenario

__all__ = ["BY_NAME", "SCENARIOS", "Expected", "Scenario", "run_drill"]
