"""What a drill found, and how it is shown: a progress line while waiting, a timeline, a summary table."""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from .scenarios import Expected, Scenario


@dataclass
class AlertTimeline:
    """One expected alert through a live drill (epoch seconds; None: not seen)."""

    expected: Expected
    pending_at: float | None = None
    firing_at: float | None = None
    delivered_at: float | None = None
    receiver: str | None = None
    resolved_at: float | None = None
    for_seconds: float | None = None
    note: str = ""

    @property
    def delivered(self) -> bool:
        return self.delivered_at is not None


@dataclass
class ScenarioResult:
    scenario: Scenario
    injected_at: float
    alerts: list[AlertTimeline]
    restored_at: float | None = None
    others: set[str] = field(default_factory=set)  # alerts of the batch the drill did not expect that fired
    error: str = ""
    promtool: bool = False
    quiet_for: float | None = None  # a scenario that stays quiet: how long it was watched (seconds)

    @property
    def ok(self) -> bool:
        """Live: every expected alert delivered. promtool: every expected alert fired as the rules say.
        A scenario that stays quiet: no alert of the batch fired."""
        if self.scenario.stays_quiet:
            return not self.error and not self.others
        if self.promtool:
            return not self.error
        return not self.error and all(alert.delivered for alert in self.alerts)


def quiet_verdict(result: ScenarioResult) -> str:
    """What a scenario that stays quiet found, in one line."""
    if result.others:
        return "FIRED: " + ", ".join(sorted(result.others))
    watched = f" for {result.quiet_for:g}s" if result.quiet_for is not None and not result.promtool else ""
    s = result.scenario
    would = ", ".join(e.describe() for e in s.quiet)
    return f"no alert of the batch fired{watched}" + (f" ({would} kept quiet by {s.quiet_by or 'the drill'})"
                                                        if would else "")


def _clock(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-5]


def _after(at: float | None, since: float | None) -> str:
    if at is None or since is None:
        return "-"
    return f"+{at - since:.1f}s"


class Progress:
    """One status line while a drill waits: rewritten in place on a terminal, printed on change elsewhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._tty = self._stream.isatty()
        self._last = ""
        self._shown = False

    def update(self, status: str, elapsed: float) -> None:
        if self._tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            line = f"  {status}  ({elapsed:.0f}s)"[:width]
            self._stream.write("\r" + line + "\x1b[K")
            self._stream.flush()
            self._shown = True
        elif status != self._last:
            self._stream.write(f"  [{elapsed:5.1f}s] {status}\n")
            self._stream.flush()
        self._last = status

    def clear(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
        self._shown = False
        self._last = ""


def timeline(result: ScenarioResult) -> str:
    """The per-scenario report: when each expected alert went pending, fired, was delivered and resolved."""
    s = result.scenario
    lines = [f"{s.name}: {s.factor}", f"  injected   {_clock(result.injected_at)}  {s.injects}"]
    if s.stays_quiet:
        lines += [f"  quiet?     {quiet_verdict(result)}",
                  f"  restored   {_clock(result.restored_at)}"]
        if result.error:
            lines.append(f"  error: {result.error}")
        lines.append("  result: " + ("OK, no alert of the batch fired" if result.ok else "FAILED"))
        return "\n".join(lines)
    rows = [("alert", "receiver", "pending", "firing", "delivered", "resolved")]
    for alert in result.alerts:
        pending = _after(alert.pending_at, result.injected_at)
        if alert.pending_at is None and alert.for_seconds == 0:
            pending = "(for 0s)"
        rows.append((alert.expected.describe(), alert.receiver or "-", pending,
                     _after(alert.firing_at, result.injected_at),
                     _after(alert.delivered_at, result.injected_at),
                     _after(alert.resolved_at, result.restored_at)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
    lines.append(f"  restored   {_clock(result.restored_at)}  (pending/firing/delivered: after the injection;"
                 " resolved: after the restore)")
    for alert in result.alerts:
        if alert.note:
            lines.append(f"  note: {alert.expected.describe()}: {alert.note}")
    if result.others:
        lines.append(f"  also fired: {', '.join(sorted(result.others))}")
    if result.error:
        lines.append(f"  error: {result.error}")
    lines.append("  result: " + ("OK, every expected alert was delivered" if result.ok else "FAILED"))
    return "\n".join(lines)


def _quiet_row(result: ScenarioResult, promtool: bool) -> tuple[str, ...]:
    verdict = ("quiet" if result.ok else "FIRED: " + ", ".join(sorted(result.others)) if result.others
               else "ERROR")
    if promtool:
        return (result.scenario.name, "(none: stays quiet)", "-", f"{verdict} (promtool)")
    return (result.scenario.name, "(none: stays quiet)", "-", "-", "-", "-", "-", verdict)


def _verdict(result: ScenarioResult, alert: AlertTimeline) -> str:
    if result.promtool:
        return "fires (promtool)" if result.ok else "FAILED (promtool)"
    if result.error:
        return "ERROR"
    return "ok" if alert.delivered else "MISSING"


def summary(results: list[ScenarioResult]) -> str:
    """`drill all`: one row per expected alert."""
    promtool = any(r.promtool for r in results)
    rows: list[tuple[str, ...]] = [
        ("scenario", "alert", "shipped for", "result") if promtool else
        ("scenario", "alert", "pending", "firing", "delivered", "to", "resolved", "result")]
    for result in results:
        if result.scenario.stays_quiet:
            rows.append(_quiet_row(result, promtool))
            continue
        for i, alert in enumerate(result.alerts):
            name = result.scenario.name if i == 0 else ""
            if promtool:
                rows.append((name, alert.expected.describe(), f"{(alert.for_seconds or 0) / 60:g}m",
                             _verdict(result, alert)))
                continue
            rows.append((name, alert.expected.describe(), _after(alert.pending_at, result.injected_at),
                         _after(alert.firing_at, result.injected_at),
                         _after(alert.delivered_at, result.injected_at), alert.receiver or "-",
                         _after(alert.resolved_at, result.restored_at), _verdict(result, alert)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows]
    passed = sum(1 for r in results if r.ok)
    what = "raised every expected alert in promtool" if promtool else "delivered every expected alert"
    if any(r.scenario.stays_quiet for r in results):
        what += ", or stayed quiet where they should"
    out.append(f"{passed} of {len(results)} scenarios {what}")
    if not promtool:
        out.append("(pending/firing/delivered: seconds after the injection; resolved: after the restore)")
    return "\n".join(out)
