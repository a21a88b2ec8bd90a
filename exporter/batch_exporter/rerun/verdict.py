"""The verdict: the rules below applied to gathered evidence, without I/O.

Rules, evaluated in this order; the verdict is UNSAFE (exit 1) when any rule says unsafe, otherwise
UNKNOWN (exit 2) when any says unknown, otherwise SAFE (exit 0):
1. The run table must be configured and readable and hold a run for the date; else UNKNOWN.
2. No run of the batch may be in progress or queued (a scheduler's queue will start it): two copies of
   a batch at once are never safe (a run stuck in the running state must be confirmed dead and
   corrected first; one marked running for longer than the
   batch's `max_duration` is reported as presumed dead). UNSAFE. A run whose status code is not mapped
   in `runs.status` and that has no end time may be running: UNKNOWN (UNSAFE past max_duration).
3. An idempotent batch (`idempotent: true`: "a re-run can never do harm") is SAFE once 1 and 2 pass;
   the rules below are still shown for it, as warnings.
4. Not idempotent: no attempt for the date may have succeeded already (a re-run repeats it). UNSAFE.
5. Not idempotent: no attempt may have left rows in a pending state (it died without rolling back).
   UNSAFE. The pending rows of a run still in progress are in progress, not left behind (rule 2 already
   says unsafe), unless it is presumed dead. Without a `records` query the rows cannot be seen, and past
   a hundred attempts not all of them are read: UNKNOWN.
6. Not idempotent: no failed attempt may have left rows in any other state (in `records.done_states`,
   when configured): the tool cannot know which of your states are harmless to redo (an APPROVED
   payment is not), so "changed data" means any row at all. Only an attempt that failed before writing,
   or rolled everything back, is a clean failure. UNSAFE; but where `records.rerun_unfinished` names a
   re-run that leaves done rows alone (Airflow's `tasks clear --only-failed`), the done rows are shown
   with that command instead.
7. Not idempotent: every consistency check must be within its bounds (UNSAFE) and readable (UNKNOWN).
Error lines in the logs never decide the verdict (a failed run always has some); they are there to be
read before anyone decides.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from .evidence import MAX_ATTEMPTS_READ, Evidence
from .phrases import ago, bounds, local_time, many, number, presumed_dead, rows, states, status_code

Verdict = Literal["safe", "unsafe", "unknown"]
Result = Literal["ok", "unsafe", "unknown", "warning", "info"]
EXIT_CODES: dict[Verdict, int] = {"safe": 0, "unsafe": 1, "unknown": 2}


def rules_text() -> str:
    """The rules as this module's docstring states them, for `rerun-check --help`."""
    doc = __doc__ or ""
    start = doc.find("Rules,")
    return doc[start:].strip() if start >= 0 else ""


@dataclass(frozen=True)
class RuleResult:
    rule: str
    result: Result
    message: str


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    rules: list[RuleResult]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def reasons(self) -> list[str]:
        wanted = {"safe": "ok", "unsafe": "unsafe", "unknown": "unknown"}[self.verdict]
        return [r.message for r in self.rules if r.result == wanted]


def judge(ev: Evidence) -> Judgement:
    """Apply the rules of the module docstring to gathered evidence."""
    rules = _Rules(ev)
    latest, day = ev.latest, ev.business_date or "?"
    if ev.run_table_error is not None:
        rules.add("run_table", "unknown", ev.run_table_error)
    elif latest is None:
        seen = ", ".join(f"{d} ({n})" for d, n in ev.recent_dates) or "none"
        rules.add("run_found", "unknown", f"no run of {ev.batch} found for business date {day} since "
                                          f"{rules.local(ev.window_start)}; recent dates (attempts): {seen}")
    else:
        rules.add("run_found", "ok", f"{many(ev.attempt_count, 'attempt')} for business date {day}, "
                                     f"latest run {latest.run_id}")
    if latest is None:  # nothing else can be judged without the runs
        return rules.judgement()

    running = [a for a in ev.attempts + ev.other_running if ev.in_progress(a) or a.row.status == "queued"]
    tz = ZoneInfo(ev.timezone)
    for a in running:
        started = f"started {rules.local(a.row.started_at)}, {ago(a.row.started_at, ev.now)}"
        if a.row.status == "queued":
            since = (f"queued {rules.local(a.row.queued_at)}, {ago(a.row.queued_at, ev.now)}"
                     if a.row.queued_at is not None else "queued")
            rules.add("nothing_running", "unsafe",
                      f"run {a.run_id} (business date {a.business_date(tz)}) is waiting to start ({since}): "
                      "the scheduler will run it, and a re-run beside it runs the work twice; wait for it, or "
                      "take it out of the queue first")
        elif ev.presumed_dead(a):
            rules.add("nothing_running", "unsafe",
                      f"run {a.run_id} (business date {a.business_date(tz)}) is presumed dead: "
                      f"{presumed_dead(a, ev)} ({started}); confirm the process is gone and correct its "
                      "status first")
        elif a.row.status == "running":
            rules.add("nothing_running", "unsafe",
                      f"run {a.run_id} (business date {a.business_date(tz)}) is still running: {started}; "
                      "wait for it, or confirm the process is gone and correct its status first")
        else:
            rules.add("nothing_running", "unknown",
                      f"run {a.run_id} (business date {a.business_date(tz)}) has status code "
                      f"{status_code(a.raw_status)}, which runs.status does not map, and no end time: it may "
                      f"still be running ({started}); find out, and map the code in runs.status")
    if not running and latest.row.status == "unknown" and latest.row.ended_at is None:
        # without max_duration it is not counted as in progress, but nothing says it has stopped either
        rules.add("nothing_running", "unknown",
                  f"run {latest.run_id} has status code {status_code(latest.raw_status)}, which runs.status "
                  "does not map, and no end time: it may still be running")
    elif not running:
        rules.add("nothing_running", "ok", f"no run of {ev.batch} is in progress")

    if ev.idempotent:
        rules.add("idempotent", "ok", "idempotent: true in the configuration (a re-run can never do harm): "
                                      "the rules below are warnings only")
    else:
        rules.add("idempotent", "info", "not idempotent (idempotent: false): a re-run repeats whatever "
                                        "earlier attempts did, so it is safe only after a clean failure")
    succeeded = [a for a in ev.attempts if a.row.status == "success"]
    for a in succeeded:
        rules.add("not_succeeded", rules.soft, f"run {a.run_id} already succeeded for {day} (ended "
                                               f"{rules.local(a.row.ended_at)}): a re-run does it all again")
    if not succeeded:
        rules.add("not_succeeded", "ok", f"no attempt for {day} succeeded")
    _judge_rows(ev, rules)
    _judge_checks(ev, rules)
    return rules.judgement()


class _Rules:
    """Collects rule results; `soft` is what a failed rule 4-7 means for this batch (rule 3)."""

    def __init__(self, ev: Evidence) -> None:
        self.results: list[RuleResult] = []
        self.timezone = ev.timezone
        self.soft: Result = "warning" if ev.idempotent else "unsafe"
        self.soft_unknown: Result = "warning" if ev.idempotent else "unknown"

    def add(self, rule: str, result: Result, message: str) -> None:
        self.results.append(RuleResult(rule, result, message))

    def local(self, moment: datetime | None) -> str:
        return local_time(moment, self.timezone)

    def judgement(self) -> Judgement:
        return Judgement(_verdict(self.results), self.results)


def _judge_rows(ev: Evidence, rules: _Rules) -> None:
    if ev.pending_states is None:
        rules.add("no_pending_rows", rules.soft_unknown,
                  "no records query is configured for this batch: rows left behind by the attempts cannot be "
                  "seen")
        return
    pending_set = set(ev.pending_states)
    unread = pending_found = in_progress_found = changed_found = partial_found = False
    for a in ev.attempts:
        if a.records_error is not None:
            unread = True
            rules.add("no_pending_rows", rules.soft_unknown,
                      f"rows of run {a.run_id} could not be read: {a.records_error}")
        if a.records is None:
            continue
        pending = {s: n for s, n in a.records.items() if s in pending_set and n}
        left = f"{rows(sum(pending.values()))} in pending states ({states(pending)})"
        if pending and ev.live(a):
            # rule 2 already makes a run in progress unsafe; its rows are not evidence of a crash
            in_progress_found = True
            still = "is still running" if a.row.status == "running" else "may still be running"
            rules.add("no_pending_rows", "info",
                      f"run {a.run_id} {still}: its {left} are in progress, not left behind")
        elif pending and ev.presumed_dead(a):
            pending_found = True
            rules.add("no_pending_rows", rules.soft,
                      f"run {a.run_id} is presumed dead ({presumed_dead(a, ev)}): its {left} were left "
                      "behind, not rolled back")
        elif pending and a.row.status == "unknown" and a.row.ended_at is None:
            pending_found = True
            rules.add("no_pending_rows", rules.soft,
                      f"run {a.run_id} has {left}, an unmapped status and no end time: it is still running, "
                      "or it stopped without rolling back")
        elif pending:
            pending_found = True
            rules.add("no_pending_rows", rules.soft,
                      f"run {a.run_id} left {left}: it stopped without rolling back")
        changed = {s: n for s, n in a.records.items() if n and (
            s in ev.done_states if ev.done_states is not None else s not in pending_set)}
        # a successful attempt changed data by design: rule 4 already speaks about it
        if changed and a.row.status != "success" and not ev.idempotent and ev.rerun_unfinished is not None:
            partial_found = True
            rules.add("no_data_changed", "info",
                      f"run {a.run_id} ({a.row.status}) did part of its work: {rows(sum(changed.values()))} "
                      f"reached {states(changed)}; re-run only the unfinished part, which leaves them alone: "
                      f"{ev.rerun_unfinished} (a full re-run would repeat them)")
        elif changed and a.row.status != "success" and not ev.idempotent:
            changed_found = True
            rules.add("no_data_changed", "unsafe",
                      f"run {a.run_id} ({a.row.status}) changed data: {rows(sum(changed.values()))} "
                      f"reached {states(changed)}; a re-run of a non-idempotent batch may repeat that work")
    if ev.attempts_not_read:
        unread = True
        rules.add("no_pending_rows", rules.soft_unknown,
                  f"rows of {many(ev.attempts_not_read, 'attempt')} were not read (at most {MAX_ATTEMPTS_READ} "
                  "are, the latest and those that did not succeed first): rows one of them left behind would "
                  "not be seen")
    if not (unread or pending_found or in_progress_found):
        rules.add("no_pending_rows", "ok", "no attempt left rows in pending states")
    if not (unread or changed_found or partial_found or ev.idempotent):
        rules.add("no_data_changed", "ok", "no failed attempt changed data (none wrote a row, or all were "
                                           "rolled back)")


def _judge_checks(ev: Evidence, rules: _Rules) -> None:
    if not ev.checks:
        rules.add("checks_pass", "info", "no consistency checks are configured")
        return
    for check in ev.checks:
        if check.error is not None:
            rules.add("checks_pass", rules.soft_unknown,
                      f"check {check.name} could not be run: {check.error}")
        elif check.ok is False:
            rules.add("checks_pass", rules.soft, f"check {check.name} = {number(check.value)}, outside "
                                                 f"{bounds(check)}")
    if all(check.ok for check in ev.checks):
        rules.add("checks_pass", "ok", f"all {len(ev.checks)} consistency checks are within their bounds")


def _verdict(rules: Sequence[RuleResult]) -> Verdict:
    results = {r.result for r in rules}
    if "unsafe" in results:
        return "unsafe"
    if "unknown" in results:
        return "unknown"
    return "safe"
