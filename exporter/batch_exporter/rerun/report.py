"""The rerun-check report: text for a person at 3 a.m., JSON with stable keys for scripts."""
from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..units import format_duration
from .evidence import Attempt, Evidence
from .phrases import bounds, count, local_time, many, masked_code, number, status_code
from .verdict import Judgement

_HEADLINES = {
    "safe": "SAFE to re-run",
    "unsafe": "UNSAFE: do not re-run",
    "unknown": "UNKNOWN: evidence is missing, do not re-run blindly",
}
_RESULT_WORDS = {"ok": "ok", "unsafe": "UNSAFE", "unknown": "UNKNOWN", "warning": "warning", "info": "info"}
_ATTEMPT_HEADER = ["RUN", "STATUS", "STARTED", "ENDED", "DURATION", "ROWS", "PENDING"]


def render_text(ev: Evidence, j: Judgement) -> str:
    """The report for a person at 3 a.m.: verdict first and last, then each kind of evidence."""
    tz = ev.timezone
    partial = partial_rerun(ev, j)
    out = [_title(ev, j)]
    out += [f"  - {reason}" for reason in j.reasons]
    if partial is not None:
        out.append(f"  - re-run only the unfinished part, with: {partial}")
    out += [f"  ! {r.message} (not blocking: idempotent)" for r in j.rules if r.result == "warning"]
    out.append("")
    out.append(f"Attempts for business date {ev.business_date or '?'} (times in {tz})")
    if ev.business_date_note is not None:
        out.append(f"  note: {ev.business_date_note}")
    if ev.run_table_error is not None:
        out.append("  not available (see above)")
    elif not ev.attempts:
        out.append("  none found")
    else:
        rows = [_attempt_cells(a, ev) for a in ev.attempts]
        out += _table(_ATTEMPT_HEADER, rows, {4, 5, 6})
    if ev.other_running:
        out.append("  Also in progress (other business dates):")
        rows = [_attempt_cells(a, ev) for a in ev.other_running]
        out += _table(_ATTEMPT_HEADER, rows, {4, 5, 6}, indent="    ")
    out.append("")
    out += _render_records(ev)
    out.append("")
    out += _render_checks(ev)
    out.append("")
    out.append("Idempotent: " + ("yes (idempotent: true): a re-run is declared harmless" if ev.idempotent
                                 else "no (idempotent: false): a re-run repeats what earlier attempts did"))
    out.append("")
    out += _render_logs(ev)
    out.append("")
    out.append("Rules applied (see `rerun-check --help`)")
    out += _table(["RESULT", "RULE", "DETAIL"],
                  [[_RESULT_WORDS[r.result], r.rule, r.message] for r in j.rules], set())
    out.append("")
    out.append(_title(ev, j))
    if partial is not None:
        out.append(f"  - re-run only the unfinished part, with: {partial}")
    return "\n".join(out) + "\n"


def partial_rerun(ev: Evidence, j: Judgement) -> str | None:
    """The command that re-runs only what a failed attempt left unfinished, when the verdict rests on it
    (records.rerun_unfinished, and an attempt whose done rows it leaves alone)."""
    if ev.rerun_unfinished is None or j.verdict == "unsafe":
        return None
    relied = any(r.rule == "no_data_changed" and r.result == "info" for r in j.rules)
    return ev.rerun_unfinished if relied else None


def _title(ev: Evidence, j: Judgement) -> str:
    when = f"business date {ev.business_date}" if ev.business_date else "business date unknown"
    return f"{_HEADLINES[j.verdict]}: {ev.batch}, {when} (exit {j.exit_code})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int],
           indent: str = "  ") -> list[str]:
    """Aligned columns; `right` holds the indexes of right-aligned (numeric) columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _attempt_cells(a: Attempt, ev: Evidence) -> list[str]:
    duration = a.duration(ev.now)
    if a.records is not None:
        rows = count(sum(a.records.values()))
        pending_set = set(ev.pending_states or ())
        pending = count(sum(n for s, n in a.records.items() if s in pending_set))
    else:
        rows = pending = "?" if a.records_error else "-"
    status = f"{a.row.status} ({status_code(a.raw_status, quoted=False)})"
    if ev.presumed_dead(a):
        status += ", presumed dead"
    started, ended = local_time(a.row.started_at, ev.timezone), local_time(a.row.ended_at, ev.timezone)
    return [a.run_id, status, started, ended, "-" if duration is None else format_duration(round(duration)),
            rows, pending]


def _render_records(ev: Evidence) -> list[str]:
    latest = ev.latest
    if ev.pending_states is None:
        return ["Rows of the latest attempt: no records query configured"]
    states = ", ".join(ev.pending_states) or "none configured"
    if latest is None:
        return [f"Rows of the latest attempt (pending states: {states}): no attempt found"]
    out = [f"Rows of the latest attempt, run {latest.run_id} (pending states: {states})"]
    if ev.live(latest):
        out.append("  the run is still in progress: its rows in pending states are in progress, not left behind")
    elif ev.presumed_dead(latest):
        out.append("  the run is presumed dead: its rows in pending states were left behind")
    if latest.records_error is not None:
        out.append(f"  not available: {latest.records_error}")
    elif latest.records is None:
        out.append("  not read")
    elif not latest.records:
        out.append("  no rows")
    else:
        ordered = sorted(latest.records.items(), key=lambda i: (-i[1], i[0]))
        pending = set(ev.pending_states)
        out += _table(["STATE", "ROWS", ""], [[s, count(n), "pending" if s in pending else ""]
                                             for s, n in ordered], {1})
    return out


def _render_checks(ev: Evidence) -> list[str]:
    if not ev.checks:
        return ["Consistency checks: none configured"]
    rows = []
    for c in ev.checks:
        result = "ERROR: " + c.error if c.error is not None else ("ok" if c.ok else "FAILED")
        rows.append([c.name, number(c.value), bounds(c), result])
    return ["Consistency checks", *_table(["CHECK", "VALUE", "BOUNDS", "RESULT"], rows, {1})]


def _render_logs(ev: Evidence) -> list[str]:
    if not ev.logs:
        return ["Logs: none configured"]
    since = local_time(ev.log_since, ev.timezone)
    out = [f"Log lines matching the configured patterns, in files modified since {since} "
           f"({ev.log_since_reason}; masked, newest last)"]
    for log in ev.logs:
        files = f"{many(len(log.files), 'file')} read"
        if log.older_files:
            files += f", {log.older_files} not modified since (not read)"
        if log.skipped_files:
            files += f", {log.skipped_files} more modified since but not read (newest {len(log.files)} only)"
        counts = ", ".join(f"{p} {n}" for p, n in log.by_pattern.items() if n)
        summary = f"{many(log.matching_lines, 'matching line')} ({counts})" if log.matching_lines \
            else "no matching line"
        out.append(f"  {log.name}: {log.path}")
        out.append(f"    {summary}; {files}")
        for f in log.files:
            if f.truncated:
                out.append(f"    {os.path.basename(f.path)}: only its last {_mib(f.read_bytes)} of "
                           f"{_mib(f.size)} were read")
        for problem in log.problems:
            out.append(f"    ! {problem}")
        if log.old_lines:
            out.append(f"    {many(log.old_lines, 'matching line')} stamped over a day before the start "
                       "were left out")
        if log.lines_not_shown:
            out.append(f"    ... {many(log.lines_not_shown, 'earlier matching line')} not shown")
        for line in log.lines:
            out.append(f"    {line.file} [{','.join(line.patterns)}] {line.text}")
    return out


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def to_json(ev: Evidence, j: Judgement) -> dict[str, Any]:
    """The report as plain data with stable keys (timestamps ISO-8601 UTC)."""
    return {
        "batch": ev.batch,
        "business_date": ev.business_date,
        "business_date_note": ev.business_date_note,
        "verdict": j.verdict,
        "exit_code": j.exit_code,
        "reasons": j.reasons,
        "rerun_only_with": partial_rerun(ev, j),
        "rules": [{"rule": r.rule, "result": r.result, "message": r.message} for r in j.rules],
        "idempotent": ev.idempotent,
        "timezone": ev.timezone,
        "checked_at": _iso(ev.now),
        "window_start": _iso(ev.window_start),
        "run_table_error": ev.run_table_error,
        "attempts": [_attempt_json(a, ev) for a in ev.attempts],
        "other_running": [_attempt_json(a, ev) for a in ev.other_running],
        "latest_run_id": ev.latest.run_id if ev.latest else None,
        "pending_states": ev.pending_states,
        "checks": [{"name": c.name, "value": _json_number(c.value), "min": c.config.min,
                    "max": c.config.max, "ok": c.ok, "error": c.error} for c in ev.checks],
        "logs_since": _iso(ev.log_since),
        "logs": [{
            "name": log.name,
            "path": log.path,
            "files": [{"path": f.path, "size_bytes": f.size, "modified_at": _iso(f.modified),
                       "read_bytes": f.read_bytes, "truncated": f.truncated} for f in log.files],
            "older_files": log.older_files,
            "skipped_files": log.skipped_files,
            "matching_lines": log.matching_lines,
            "old_lines": log.old_lines,
            "by_pattern": log.by_pattern,
            "lines": [{"file": line.file, "patterns": list(line.patterns), "text": line.text}
                      for line in log.lines],
            "lines_not_shown": log.lines_not_shown,
            "problems": log.problems,
        } for log in ev.logs],
    }


def _attempt_json(a: Attempt, ev: Evidence) -> dict[str, Any]:
    pending_set = set(ev.pending_states or ())
    return {
        "run_id": a.run_id,
        "business_date": a.business_date(ZoneInfo(ev.timezone)),
        "status": a.row.status,
        "presumed_dead": ev.presumed_dead(a),
        "status_code": masked_code(a.raw_status),
        "started_at": _iso(a.row.started_at),
        "ended_at": _iso(a.row.ended_at),
        "duration_seconds": a.duration(ev.now),
        "records": None if a.records is None else {s: _json_number(n) for s, n in a.records.items()},
        "pending_records": None if a.records is None else _json_number(
            sum(n for s, n in a.records.items() if s in pending_set)),
        "records_error": a.records_error,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value == int(value) else value
