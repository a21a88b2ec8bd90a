"""The command line of `batch-exporter rerun-check`: flags, one run, the exit code as the verdict."""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from ..config import ConfigError, load_config
from ..masking import mask_digits
from ..units import parse_size
from .gather import gather
from .logs import DEFAULT_LOG_BYTES, DEFAULT_LOG_LINES, LogLimits
from .report import render_text, to_json
from .verdict import EXIT_CODES, judge, rules_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rerun-check flags, for `batch-exporter rerun-check`."""
    parser.description = "Gather the evidence to read before re-running a batch, and a verdict."
    parser.epilog = rules_text()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("batch", metavar="BATCH", help="batch name, as in the configuration")
    parser.add_argument("-c", "--config.file", dest="config", required=True, type=Path,
                        help="configuration file (YAML)")
    parser.add_argument("--business-date", dest="business_date", metavar="D", default=None,
                        help="business date to check, e.g. 2026-11-26 (default: that of the latest run)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON for scripts")
    parser.add_argument("--log-read-limit", dest="log_read_limit", type=_size, default=DEFAULT_LOG_BYTES,
                        metavar="SIZE", help="read at most the last SIZE of each log file (default 8MiB)")
    parser.add_argument("--log-lines", dest="log_lines", type=int, default=DEFAULT_LOG_LINES, metavar="N",
                        help=f"matching lines shown per log (default {DEFAULT_LOG_LINES})")


def _size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return size


def run(args: argparse.Namespace) -> int:
    """Run the check described by parsed arguments; print the report; return 0, 1 or 2."""
    _tolerant_output()
    try:
        return _run(args)
    except Exception as exc:  # noqa: BLE001 - exit 1 would read as UNSAFE: a crash must be UNKNOWN
        detail = mask_digits(traceback.format_exc())
        return _fail(args, f"internal error ({type(exc).__name__}); no verdict could be reached", detail)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(args, f"configuration error:\n{exc}")
    if args.batch not in config.batches:
        known = ", ".join(sorted(config.batches))
        return _fail(args, f"no batch named {args.batch!r} in {args.config} (known: {known})")
    limits = LogLimits(read_bytes=args.log_read_limit, lines=max(0, args.log_lines))
    evidence = gather(config, args.batch, business_date=args.business_date, limits=limits)
    judgement = judge(evidence)
    text = json.dumps(to_json(evidence, judgement), indent=2, ensure_ascii=False) + "\n" if args.json \
        else render_text(evidence, judgement)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader left; the exit code still carries the verdict
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return judgement.exit_code


def _fail(args: argparse.Namespace, message: str, detail: str = "") -> int:
    """No evidence could be gathered at all: UNKNOWN, said on stderr (and as JSON on stdout with --json)."""
    if getattr(args, "json", False):
        print(json.dumps({"batch": getattr(args, "batch", None), "verdict": "unknown", "exit_code": 2,
                          "reasons": [message]}, indent=2, ensure_ascii=False))
    print(f"UNKNOWN: {message}", file=sys.stderr)
    if detail:
        print(detail, file=sys.stderr, end="")
    return EXIT_CODES["unknown"]


def _tolerant_output() -> None:
    # A console that cannot show a character (Japanese log text, ASCII locale) must not crash the report.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def main(argv: list[str] | None = None) -> int:
    """`python -m batch_exporter.rerun BATCH -c FILE ...`, the same as `batch-exporter rerun-check`."""
    parser = argparse.ArgumentParser(prog="batch-exporter rerun-check")
    add_arguments(parser)
    return run(parser.parse_args(argv))
