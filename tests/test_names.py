"""Names say what a thing is, and lists that must agree are kept equal by a test, not by memory."""
from __future__ import annotations

import argparse
import ast
import random
from datetime import date
from pathlib import Path

from batch_exporter.poller import ScheduledSource, WorkerPool
from batch_exporter.practice.demo import SCHEMA
from batch_exporter.practice.demo_sim import AuthRun, DemoPaths, DemoWriter, RunStatus, open_writer_connection, play
from batch_exporter.practice.drill.scenarios import SCENARIOS
from batch_exporter.practice.flags import SCENARIO_NAMES, add_drill_arguments
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.errors import join_problems

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "exporter" / "batch_exporter"


def test_drill_command_offers_every_scenario_in_the_order_all_runs_them() -> None:
    # practice/flags.py keeps its own copy so that the serving process need not import the drill machinery
    assert tuple(scenario.name for scenario in SCENARIOS) == SCENARIO_NAMES
    parser = argparse.ArgumentParser()
    add_drill_arguments(parser)
    (scenario,) = [action for action in parser._actions if action.dest == "scenario"]
    assert scenario.choices == [*SCENARIO_NAMES, "all"]


def test_run_status_names_the_codes_the_demo_stores() -> None:
    assert {status.name: status.value for status in RunStatus} == {
        "RUNNING": "R", "COMPLETED": "C", "FAILED": "E", "ABENDED": "A"}


def test_an_abended_run_is_stored_with_code_a(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path)
    conn = open_writer_connection(paths.database)
    try:
        conn.executescript(SCHEMA)
        run = AuthRun(date(2026, 11, 26), 1, 1_795_000_000.0, 600.0, RunStatus.ABENDED, random.Random(1),
                      fail_step=3)
        play(DemoWriter(paths, conn), run.steps())
        assert conn.execute("SELECT exec_status, exit_code FROM job_execution").fetchall() == [("A", 137)]
    finally:
        conn.close()


def test_join_problems_shows_the_first_three_and_counts_the_rest() -> None:
    assert join_problems(["a", "b"]) == "a; b"
    assert join_problems(["a", "b", "c", "d", "e"]) == "a; b; c (and 2 more)"


class _Nothing:
    name = "runs:x"

    def poll(self) -> Snapshot:
        raise AssertionError("not polled here")


def test_a_database_source_names_its_worker_pool() -> None:
    pool = WorkerPool("db", 1)
    try:
        assert ScheduledSource(_Nothing(), 30, 5, database_pool=pool).database_pool is pool
    finally:
        pool.close()


def _module_constants(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper() and t.id != "__all__"]
    return names


def test_every_module_constant_is_read_by_the_package_or_its_tests() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}
    tests = [ast.parse(path.read_text(encoding="utf-8")) for path in TESTS.rglob("*.py")]
    read: set[str] = set()
    for tree in [*trees.values(), *tests]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                read.add(node.id)
            elif isinstance(node, ast.Attribute):
                read.add(node.attr)
            elif isinstance(node, ast.alias):
                read.add(node.name)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                read.add(node.value)  # a name listed in __all__
    unread = [f"{path.relative_to(PACKAGE)}: {name}"
              for path, tree in trees.items() for name in _module_constants(tree) if name not in read]
    assert unread == []
