"""`batch-exporter drill SCENARIO|all`: practise the incident on the demo batch, and time the alerts.

Exit codes: 0 every expected alert arrived; 1 one did not; 2 refused (not the demo); 3 cannot run
(binaries, shipped files or the demo folder missing, a file or the database failing: printed as
`drill: <what failed>`, never a traceback); 130 interrupted (Ctrl-C, SIGTERM), the demo restored.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TextIO

from ..demo import NotADemoError
from ..demo_sim import TOKYO
from ..demo_stack import binaries_from_args, shipped_from_args
from ..stack import (
    INSTALL_HINT,
    MissingBinaryError,
    Overlay,
    PromStack,
    ShippedFiles,
    StackBinaries,
    StackError,
    WebhookRecorder,
    find_binary,
    sigterm_interrupts,
)
from .live import LiveDrill
from .promtool import PromtoolDrill, promtool_report
from .report import Progress, ScenarioResult, summary, timeline
from .scenarios import BY_NAME, SCENARIOS, Scenario
from .target import TargetError, open_target
from .world import BATCH, GRACE, MAX_DURATION, POLL_INTERVAL, DrillWorld

DRILL_OVERLAY = Overlay()  # for 2s, keep_firing_for 2s, 1s scrapes, evaluations and Alertmanager groups

EXIT_OK, EXIT_MISSED, EXIT_REFUSED, EXIT_CANNOT_RUN = 0, 1, 2, 3
# what makes a drill unable to run or finish: reported in one line, exit 3
CANNOT_RUN = (StackError, TargetError, OSError, sqlite3.Error)


@contextmanager
def _exporter_log(path: Path) -> Iterator[None]:
    """The in-process exporter's log goes to a file: its warnings (a cut database) are the drill's doing."""
    loggers = [logging.getLogger(name) for name in ("batch_exporter", "apscheduler")]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    propagate = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, before in zip(loggers, propagate, strict=False):
            logger.propagate = before
            logger.removeHandler(handler)
        handler.close()


def run_drill(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the named scenario (or all); print timelines and, for several, a table; return the exit code.

    The scratch folder (configs, process and exporter logs, promtool tests) is removed afterwards,
    unless --keep is given or the drill failed.
    """
    out = out or sys.stdout
    scenarios = list(SCENARIOS) if args.scenario == "all" else [BY_NAME[args.scenario]]
    scratch = Path(tempfile.mkdtemp(prefix="batch-exporter-drill-"))
    code = EXIT_CANNOT_RUN
    try:
        # SIGTERM ends a drill like Ctrl-C does: through the `finally` that restores the demo
        with sigterm_interrupts(), _exporter_log(scratch / "exporter.log"):
            code = _run(args, scenarios, scratch, out)
        return code
    except KeyboardInterrupt:
        print("\ndrill interrupted; the demo was restored", file=out, flush=True)
        code = 130
        return code
    except CANNOT_RUN as exc:
        print(f"drill: {_what_failed(exc)}", file=sys.stderr)
        code = EXIT_CANNOT_RUN
        return code
    finally:
        if args.keep or code in (EXIT_MISSED, EXIT_CANNOT_RUN):
            print(f"scratch folder kept: {scratch} (exporter.log, stack/*.log, drill.yml)", file=out)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def _what_failed(exc: Exception) -> str:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return f"{exc}: is `batch-exporter demo` running on this folder? Stop it, then drill again"
    if isinstance(exc, sqlite3.Error):
        return f"the demo database: {exc}"
    return str(exc)


def _tools(args: argparse.Namespace, out: TextIO) -> tuple[StackBinaries | None, str | None, int]:
    """(Prometheus and Alertmanager for a live drill, else promtool's path; exit code if neither can run)."""
    if not args.promtool_only:
        try:
            return binaries_from_args(args), None, EXIT_OK
        except MissingBinaryError as exc:
            print(f"Prometheus/Alertmanager not available: {exc}", file=out)
    try:
        promtool = find_binary(["promtool"], args.promtool_bin)
    except MissingBinaryError:
        print("promtool is missing too, so the drill cannot evaluate the alert rules at all.\n"
              f"Install them on Debian/Ubuntu with: {INSTALL_HINT}  (promtool comes with the prometheus "
              "package; elsewhere download Prometheus from https://prometheus.io/download/ and put "
              "prometheus and promtool on PATH, or name them with --prometheus-bin / --promtool-bin)",
              file=sys.stderr)
        return None, None, EXIT_CANNOT_RUN
    print("Evaluating the shipped rules with promtool on series recorded from the faulted demo instead: "
          "the rules are checked with their real `for`, but alert routing and delivery are not.", file=out)
    return None, promtool, EXIT_OK


def _run(args: argparse.Namespace, scenarios: list[Scenario], scratch: Path, out: TextIO) -> int:
    """The drill; CANNOT_RUN errors propagate to `run_drill` (after the demo is restored)."""
    binaries, promtool, code = _tools(args, out)
    if code:
        return code
    shipped = shipped_from_args(args)
    try:
        target = open_target(args.dir, scratch, allow_copy=args.not_demo)
    except NotADemoError as exc:
        print(f"drill refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    where = f"a copy of {target.origin} (the original is only read)" if target.copied else str(target.origin)
    print(f"drilling the demo batch in {where}", file=out, flush=True)
    world = DrillWorld(target, scratch)
    results: list[ScenarioResult] = []
    try:
        world.prepare()
        if binaries is not None:
            _live(args, world, shipped, binaries, scenarios, scratch, out, results)
        else:
            assert promtool is not None
            _promtool(world, shipped, promtool, scenarios, scratch, out, results)
    finally:
        world.close()
        if target.copied:
            print(f"the copy was drilled and restored; {target.origin} was only read", file=out)
        elif target.created and args.dir is None:
            print("the demo made for this drill was restored; it lives in the drill's temporary folder",
                  file=out)
        else:
            print(f"demo restored: {target.paths.folder} (database and logs as found)", file=out, flush=True)
    if len(results) > 1:
        print("\n" + summary(results), file=out)
    return EXIT_OK if results and all(r.ok for r in results) else EXIT_MISSED


def _timings(world: DrillWorld) -> str:
    start = datetime.fromtimestamp(world.schedule_at, TOKYO).strftime("%H:%M")
    overlay = DRILL_OVERLAY
    return (f"Drill timings: the shipped rules with every `for` and keep_firing_for at {overlay.alert_for}, "
            f"Prometheus scraping and evaluating every {overlay.evaluation_interval}, Alertmanager "
            f"grouping after {overlay.group_wait}; the exporter polls every {POLL_INTERVAL} and expects "
            f"tonight's run daily at {start} Tokyo time (grace {GRACE}, max_duration {MAX_DURATION}). "
            "Rule expressions and their windows are as shipped. Each scenario takes seconds to a minute.")


def _live(args: argparse.Namespace, world: DrillWorld, shipped: ShippedFiles, binaries: StackBinaries,
          scenarios: list[Scenario], scratch: Path, out: TextIO, results: list[ScenarioResult]) -> None:
    with WebhookRecorder() as hook:
        address = world.start_exporter(serve=True)
        assert address is not None
        stack = PromStack(scratch / "stack", exporter_targets=[address], webhook_base=hook.url,
                          overlay=DRILL_OVERLAY, shipped=shipped, binaries=binaries)
        print("starting Prometheus (shipped rules) and Alertmanager (shipped routing) on loopback",
              file=out, flush=True)
        with stack:
            print(_timings(world), file=out)
            print(f"  exporter http://{address}/metrics  Prometheus {stack.prometheus_url}/alerts  "
                  f"Alertmanager {stack.alertmanager_url}", file=out)
            print("waiting for the first scrape and rule evaluation", file=out, flush=True)
            drill = LiveDrill(world, stack, hook, Progress(out), timeout=args.timeout,
                              hold=_hold_prompt(stack, world, out) if args.hold else None)
            already = drill.wait_ready()
            if already:
                print(f"  already active before the drill: {', '.join(already)}", file=out)
            for scenario in scenarios:
                print(file=out, flush=True)
                result = drill.run(scenario)
                results.append(result)
                print(timeline(result), file=out, flush=True)


def _hold_prompt(stack: PromStack, world: DrillWorld, out: TextIO) -> Callable[[ScenarioResult], None]:
    def hold(result: ScenarioResult) -> None:
        arrived = ("no alert of the batch fired. Look" if result.scenario.stays_quiet
                   else "its alerts have arrived. Look at them\n ")
        print(f"\n{result.scenario.name}: the fault is in place and {arrived}"
              f" in Prometheus {stack.prometheus_url}/alerts and Alertmanager {stack.alertmanager_url},\n"
              f"  follow the runbook, and run the runbook's checks against the drill's demo, e.g.\n"
              f"  batch-exporter rerun-check -c {world.config_path} {BATCH}\n"
              "Press Enter to restore the demo.", file=out, flush=True)
        with suppress(EOFError):
            input()
    return hold


def _promtool(world: DrillWorld, shipped: ShippedFiles, promtool: str, scenarios: list[Scenario],
              scratch: Path, out: TextIO, results: list[ScenarioResult]) -> None:
    world.start_exporter(serve=False)
    drill = PromtoolDrill(world, shipped.rules, promtool, scratch)
    for scenario in scenarios:
        print(file=out, flush=True)
        result = drill.run(scenario)
        results.append(result)
        print(promtool_report(result, drill.outcomes[scenario.name], shipped.rules), file=out, flush=True)
