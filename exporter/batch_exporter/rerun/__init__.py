"""`batch-exporter rerun-check BATCH`: the evidence to read before re-running a failed batch, and a verdict.

Read-only, like the exporter: it runs the configured SELECTs (the run table, the records query, the
checks) and reads the tails of the configured logs. Nothing is written anywhere.

- evidence: what is gathered (attempts, checks) and the pure logic that picks a date's attempts
- gather: reading it through the batch's database and from its logs
- bounded: database calls with a deadline of the command's own (deadline_thread.py), so a hung server cannot hang it
- logs: matching lines from the tails of log files modified since the latest attempt started
- verdict: the rules, in the order they apply, and the verdict (exit 0 safe, 1 unsafe, 2 unknown)
- report, phrases: the text and JSON reports and the wording they share with the rules
- command: the flags and the run, for `batch-exporter rerun-check` and `python -m batch_exporter.rerun`
"""
from .bounded import BoundedDatabase
from .command import add_arguments, main, run
from .evidence import (
    MAX_ATTEMPTS_READ,
    Attempt,
    CheckResult,
    Evidence,
    date_key,
    parse_run,
    select_attempts,
    window_start,
)
from .gather import OpenDatabase, describe_database, gather
from .logs import LogEvidence, LogFile, LogLimits, LogLine, leading_timestamp, read_tail, scan_log
from .report import render_text, to_json
from .verdict import EXIT_CODES, Judgement, Result, RuleResult, Verdict, judge

__all__ = [
    "EXIT_CODES",
    "MAX_ATTEMPTS_READ",
    "Attempt",
    "BoundedDatabase",
    "CheckResult",
    "Evidence",
    "Judgement",
    "LogEvidence",
    "LogFile",
    "LogLimits",
    "LogLine",
    "OpenDatabase",
    "Result",
    "RuleResult",
    "Verdict",
    "add_arguments",
    "date_key",
    "describe_database",
    "gather",
    "judge",
    "leading_timestamp",
    "main",
    "parse_run",
    "read_tail",
    "render_text",
    "run",
    "scan_log",
    "select_attempts",
    "to_json",
    "window_start",
]
