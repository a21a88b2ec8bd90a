"""Command-line flags of `demo --stack` and `drill`, kept apart from their machinery so that the
serving process, which builds the same parser, does not load Prometheus/Alertmanager handling."""
from __future__ import annotations

import argparse
from pathlib import Path

# the drill scenarios, in the order `drill all` runs them (drill/scenarios.py defines each one)
SCENARIO_NAMES = ("log-limit", "log-silent", "failed-run", "blind-rerun", "crash-no-rollback", "missed-run",
                  "db-down", "holiday", "deadline-miss", "fast-success")


def add_stack_flags(parser: argparse.ArgumentParser) -> None:
    """Where the Prometheus and Alertmanager binaries and the shipped rules and configs are."""
    group = parser.add_argument_group("Prometheus and Alertmanager")
    group.add_argument("--prometheus-bin", default=None,
                       help="Prometheus binary (default: prometheus on PATH)")
    group.add_argument("--alertmanager-bin", default=None,
                       help="Alertmanager binary (default: prometheus-alertmanager or alertmanager on PATH)")
    group.add_argument("--rules-dir", type=Path, default=None,
                       help="folder of *.rules.yml and alertmanager.yml (default: alerts/ of the checkout, else the "
                            "installed package's copy)")
    group.add_argument("--prometheus-config", type=Path, default=None,
                       help="Prometheus config to start from (default: deploy/prometheus/prometheus.yml of the "
                            "checkout, else the installed package's copy)")
    group.add_argument("--alertmanager-config", type=Path, default=None,
                       help="Alertmanager config (default: alertmanager.yml in the rules folder)")


def add_demo_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--stack` flags of the `demo` command (its --dir, --interval and serving flags stay the lead's)."""
    parser.add_argument("--stack", action="store_true",
                        help="also start Prometheus (shipped rules) and Alertmanager (shipped routing) "
                             "on loopback")
    parser.add_argument("--stack.timings", dest="stack_timings", choices=("demo", "shipped"), default="demo",
                        help="demo: `for` 30s and 5s scrapes to match the 3-minute nights (default); "
                             "shipped: the rules' own `for` and the shipped intervals")
    add_stack_flags(parser)


def add_drill_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `batch-exporter drill`."""
    parser.add_argument("scenario", choices=[*SCENARIO_NAMES, "all"],
                        help="the fault to practise: " + ", ".join(SCENARIO_NAMES) + "; or all of them in turn")
    parser.add_argument("--dir", type=Path, default=None,
                        help="demo folder to drill (made by `batch-exporter demo --dir`; a new or empty "
                             "folder gets a fresh demo); default: a fresh demo in a temporary folder")
    parser.add_argument("--i-know-this-is-not-the-demo", dest="not_demo", action="store_true",
                        help="drill a folder whose database is not the demo's by working on a copy of it "
                             "(the original is only read, never written)")
    parser.add_argument("--promtool-only", action="store_true",
                        help="skip Prometheus and Alertmanager: check the shipped rules with promtool only")
    parser.add_argument("--promtool-bin", default=None, help="promtool binary (default: promtool on PATH)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for an alert to arrive, and then to resolve (default 60)")
    parser.add_argument("--hold", action="store_true",
                        help="once the alerts have arrived, leave the fault in place until Enter is pressed, "
                             "to walk through the runbook with the alert firing")
    parser.add_argument("--keep", action="store_true",
                        help="keep the drill's scratch folder (configs, process logs, promtool tests)")
    add_stack_flags(parser)
