"""`batch-exporter demo --stack`: the demo, plus a real Prometheus and Alertmanager watching it.

Prometheus gets the shipped rules and Alertmanager the shipped routing (copies, in a temporary folder
removed on exit). Their receivers are pointed at a small webhook receiver in this process, which prints
every notification, so a page shows up in the terminal. Ctrl-C or SIGTERM stops the exporter, the
simulator and both servers, in that order; during startup it stops whatever has started.

Its flags are defined in `practice/flags.py` (shared with `batch-exporter drill`).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .stack import (
    MissingBinaryError,
    Notification,
    Overlay,
    PromStack,
    ShippedFiles,
    StackBinaries,
    StackError,
    WebhookRecorder,
    free_port,
    sigterm_interrupts,
)

log = logging.getLogger(__name__)

# The demo plays a night every 3 minutes; shipped `for` durations of 5-15 minutes would outlast most of
# what it shows. These timings keep the rules' expressions and shorten only the waiting.
DEMO_OVERLAY = Overlay(scrape_interval="5s", scrape_timeout="5s", evaluation_interval="5s", alert_for="30s",
                       keep_firing_for="1m", resend_delay="5s", group_wait="5s", group_interval="30s",
                       repeat_interval="1h")
SHIPPED_TIMINGS = Overlay(scrape_interval="30s", scrape_timeout="10s", evaluation_interval="1m",
                          alert_for=None, keep_firing_for=None, resend_delay="1m", group_wait="30s",
                          group_interval="5m", repeat_interval="12h")
EXIT_INTERRUPTED = 130


def shipped_from_args(args: argparse.Namespace) -> ShippedFiles:
    return ShippedFiles.locate(rules_dir=args.rules_dir, prometheus_config=args.prometheus_config,
                               alertmanager_config=args.alertmanager_config)


def binaries_from_args(args: argparse.Namespace) -> StackBinaries:
    return StackBinaries.find(args.prometheus_bin, args.alertmanager_bin)


def _print_notification(notification: Notification) -> None:
    for alert in notification.payload.get("alerts", []):
        labels = alert.get("labels", {})
        extra = " ".join(f"{k}={v}" for k, v in sorted(labels.items())
                         if k not in ("alertname", "severity", "instance", "job"))
        print(f"[{notification.receiver}] {alert.get('status', '?').upper():8} {labels.get('alertname')} "
              f"({labels.get('severity', '-')}) {extra}", flush=True)


def _scrape_target(listen: str) -> tuple[str, str]:
    """(listen address to serve on, HOST:PORT for Prometheus); port 0 becomes a free port."""
    from ..web import parse_listen_address

    host, port = parse_listen_address(listen)
    port = port or free_port()
    target_host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if ":" in target_host:
        target_host = f"[{target_host}]"
    serve_host = f"[{host}]" if ":" in host else host
    return f"{serve_host}:{port}", f"{target_host}:{port}"


def run_demo_stack(args: argparse.Namespace) -> int:
    """The demo with Prometheus and Alertmanager; blocks until Ctrl-C (SIGINT) or SIGTERM."""
    from .demo import serve_demo

    if args.web_config is not None:
        print("--stack scrapes the demo over plain HTTP on loopback: leave out --web.config.file",
              file=sys.stderr)
        return 1
    try:
        binaries = binaries_from_args(args)
        shipped = shipped_from_args(args)
        listen, target = _scrape_target(args.listen)
    except MissingBinaryError as exc:
        print(f"demo --stack needs Prometheus and Alertmanager: {exc}\n"
              f"(or name them with --prometheus-bin / --alertmanager-bin; `batch-exporter demo` alone needs "
              f"neither)", file=sys.stderr)
        return 1
    except (StackError, ValueError) as exc:
        print(f"demo --stack: {exc}", file=sys.stderr)
        return 1

    @contextmanager
    def stack_running(folder: Path, config_path: Path) -> Iterator[None]:
        with _stack(binaries, shipped, target, args.stack_timings) as stack:
            _announce(folder, config_path, target, stack, args.stack_timings)
            yield

    # SIGTERM while the servers start (before the exporter takes the signal over) unwinds like Ctrl-C
    with sigterm_interrupts():
        try:
            return serve_demo(args.dir, interval=args.interval, listen=listen, web_config=None,
                              around=stack_running)
        except StackError as exc:
            print(f"demo --stack: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("demo --stack interrupted; what had started was stopped", file=sys.stderr)
            return EXIT_INTERRUPTED


@contextmanager
def _stack(binaries: StackBinaries, shipped: ShippedFiles, target: str, timings: str) -> Iterator[PromStack]:
    """Prometheus and Alertmanager watching `target` in a temporary folder; both stopped, the folder removed."""
    workdir = Path(tempfile.mkdtemp(prefix="batch-exporter-stack-"))
    try:
        with WebhookRecorder(_print_notification) as hook:
            stack = PromStack(workdir, exporter_targets=[target], webhook_base=hook.url,
                              overlay=DEMO_OVERLAY if timings == "demo" else SHIPPED_TIMINGS,
                              shipped=shipped, binaries=binaries)
            with stack:
                try:
                    yield stack
                finally:
                    print("stopping Prometheus and Alertmanager", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def alerts_page(prometheus_url: str) -> str:
    """The alerts page this Prometheus serves: /alerts in the React UI, /classic/alerts where only the
    classic one is built in (Debian's 2.42 package answers 404 at /alerts)."""
    for path in ("/alerts", "/classic/alerts"):
        try:
            with urllib.request.urlopen(prometheus_url + path, timeout=5) as answer:
                if answer.status == 200:
                    return prometheus_url + path
        except OSError:
            continue
    return prometheus_url + "/"


def _announce(folder: Path, config_path: Path, target: str, stack: PromStack, timings: str) -> None:
    overlay = stack.overlay
    print(f"demo data in {folder}; config {config_path}\n"
          f"  exporter      http://{target}/metrics\n"
          f"  Prometheus    {alerts_page(stack.prometheus_url)}   "
          f"(rules from {stack.shipped.rules[0].parent})\n"
          f"  Alertmanager  {stack.alertmanager_url}/#/alerts "
          f"(routing from {stack.shipped.alertmanager_config})\n"
          + (f"  timings: alert `for` {overlay.alert_for}, scrape and evaluation every "
             f"{overlay.scrape_interval} (--stack.timings=shipped for the shipped ones)\n"
             if timings == "demo" else "  timings: as shipped\n")
          + "  notifications to the pager and ticket receivers are printed below; Ctrl-C stops "
            "everything", flush=True)
