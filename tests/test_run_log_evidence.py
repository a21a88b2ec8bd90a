"""Log evidence about the latest run: the log scan's timeline of when matches were read, and the
source that counts those read while the latest run was in progress; in-process, then as a process."""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_exporter.app import build_sources
from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.runsummary import LatestRun, RunRow
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources import run_log_evidence
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.logscan import TIMELINE_ENTRIES, TIMELINE_SECONDS, LogScanSource, MatchTimeline
from batch_exporter.sources.run_log_evidence import END_PRECISION, RunLogEvidenceSource, WatchedLog
from exporter_process import running_exporter, value

T0 = 1_790_000_000.0  # a fixed instant (2026-09-21); every time below is relative to it


@dataclass
class LogCfg:
    path: str
    patterns: dict[str, str] = field(default_factory=lambda: {"error": "ERROR", "warn": "WARN"})
    encoding: str = "utf-8"
    max_line_bytes: int = 1024 * 1024
    size_limit: int = 4 * 1024**3
    max_path_series: int = 20


class Clock:
    def __init__(self, at: float = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def append(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def evidence(snapshot: Snapshot) -> dict[tuple[str, str], float]:
    return {(dict(s.labels)["log"], dict(s.labels)["pattern"]): s.value for s in snapshot.samples}


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, tz=UTC)


# --- the timeline ----------------------------------------------------------------------------------


def test_the_timeline_counts_reads_after_the_start_up_to_the_end_inclusive() -> None:
    timeline = MatchTimeline()
    timeline.record(T0 + 10, {"error": 2})
    timeline.record(T0 + 20, {"error": 3, "warn": 1})
    timeline.record(T0 + 30, {})
    assert timeline.between("error", T0 + 10, T0 + 20) == 3  # (start, end]
    assert timeline.between("error", T0, T0 + 30) == 5
    assert timeline.between("warn", T0 + 20, T0 + 30) == 0
    assert timeline.between("never-seen", T0, T0 + 30) == 0
    assert timeline.read_until == T0 + 30  # a poll without matches still says how far it read


def test_the_timeline_drops_entries_older_than_48_hours_and_past_its_length() -> None:
    timeline = MatchTimeline()
    timeline.record(T0, {"error": 1})
    timeline.record(T0 + TIMELINE_SECONDS, {"warn": 1})
    assert timeline.between("error", T0 - 1, T0 + 1) == 1  # exactly 48 hours old: kept
    timeline.record(T0 + TIMELINE_SECONDS + 1, {})
    assert timeline.between("error", T0 - 1, T0 + 1) == 0  # older: dropped, even without new matches
    short = MatchTimeline()
    for poll in range(TIMELINE_ENTRIES + 10):
        short.record(T0 + poll, {"error": 1})
    assert short.between("error", T0 - 1, T0 + TIMELINE_ENTRIES + 10) == TIMELINE_ENTRIES  # the oldest 10 went
    assert short.between("error", T0 - 1, T0 + 9) == 0


def test_a_timeline_copy_keeps_the_named_patterns_and_is_independent() -> None:
    timeline = MatchTimeline()
    timeline.record(T0 + 1, {"error": 1, "warn": 2})
    twin = timeline.copy(["error"])
    timeline.record(T0 + 2, {"error": 5})
    assert (twin.between("error", T0, T0 + 9), twin.between("warn", T0, T0 + 9)) == (1, 0)
    assert twin.read_until == T0 + 1


def test_the_timeline_knows_which_poll_first_began_after_a_moment() -> None:
    timeline = MatchTimeline()
    assert timeline.first_read_after(T0) is None
    timeline.record(T0 + 12, {}, began=T0 + 10)
    timeline.record(T0 + 25, {"error": 1}, began=T0 + 20)
    assert timeline.first_read_after(T0 + 10) == T0 + 12  # began exactly then: it read what came before
    assert timeline.first_read_after(T0 + 11) == T0 + 25  # began during the poll before: the next one
    assert timeline.first_read_after(T0 + 21) is None  # no poll has begun since
    assert timeline.copy(["error"]).first_read_after(T0 + 11) == T0 + 25


# --- what the log scan puts into it ----------------------------------------------------------------


def test_the_first_read_of_a_file_without_state_is_no_evidence(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR written at an unknown time\n")
    clock = Clock(T0 + 10)
    scan = LogScanSource("b", "app", LogCfg(str(log)), None, clock=clock)
    scan.poll()
    assert scan.matches_between("error", T0, T0 + 10) == 0
    assert scan.read_until == T0 + 10
    append(log, "t2 ERROR fresh")
    clock.at = T0 + 20
    scan.poll()
    assert scan.matches_between("error", T0, T0 + 20) == 1


def test_lines_written_while_the_exporter_was_down_are_no_evidence_after_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 INFO start\n")
    clock = Clock(T0 + 10)
    state = tmp_path / "state"
    LogScanSource("b", "app", LogCfg(str(log)), state, clock=clock).poll()
    append(log, "t2 ERROR while down", "t3 ERROR while down")
    clock.at = T0 + 500
    restarted = LogScanSource("b", "app", LogCfg(str(log)), state, clock=clock)
    totals = {dict(s.labels)["pattern"]: s.value for s in restarted.poll().samples
              if s.name == "batch_log_matches_total"}
    assert totals["error"] == 2  # counted in the totals, once
    assert restarted.matches_between("error", T0, T0 + 500) == 0  # but when they were written is unknown
    append(log, "t4 ERROR after the restart")
    clock.at = T0 + 510
    restarted.poll()
    assert restarted.matches_between("error", T0, T0 + 510) == 1


def test_a_failed_first_listing_leaves_the_backlog_to_the_next_read(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.log").write_text("t1 ERROR old\n")
    clock = Clock(T0 + 10)
    scan = LogScanSource("b", "app", LogCfg(str(tmp_path / "*.log")), None, clock=clock)

    def refuse(path: str) -> None:  # the tests run as root: directory modes cannot refuse a listing
        raise PermissionError(13, "Permission denied", path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", refuse)
        with pytest.raises(SourceError):
            scan.poll()
    clock.at = T0 + 20
    scan.poll()
    assert scan.matches_between("error", T0, T0 + 20) == 0  # still the backlog


def test_a_reloaded_source_counts_its_first_read_and_keeps_the_timeline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 INFO start\n")
    clock = Clock(T0 + 10)
    old = LogScanSource("b", "app", LogCfg(str(log)), tmp_path / "state", clock=clock)
    old.poll()
    append(log, "t2 ERROR before the reload")
    clock.at = T0 + 20
    old.poll()
    append(log, "t3 ERROR between the old source's last read and the new one's first")
    handover = old.retire()
    assert handover is not None
    clock.at = T0 + 30
    new = LogScanSource("b", "app", LogCfg(str(log)), tmp_path / "state", clock=clock, handover=handover)
    new.poll()
    assert new.matches_between("error", T0 + 20, T0 + 30) == 1  # only fresh bytes: the first read counts
    assert new.matches_between("error", T0, T0 + 30) == 2  # and what the old source read carries on
    old.resume()  # the copy is its own: a failed reload's old source reads on into its timeline alone
    clock.at = T0 + 40
    old.poll()
    assert old.matches_between("error", T0, T0 + 40) == 2
    assert new.matches_between("error", T0, T0 + 40) == 2


def test_a_handover_for_another_path_is_a_fresh_start_whose_first_read_is_a_backlog(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("t1 INFO a\n")
    second.write_text("t1 ERROR old lines of the newly configured file\n")
    clock = Clock(T0 + 10)
    old = LogScanSource("b", "app", LogCfg(str(first)), None, clock=clock)
    old.poll()
    handover = old.retire()
    clock.at = T0 + 20
    new = LogScanSource("b", "app", LogCfg(str(second)), None, clock=clock, handover=handover)
    new.poll()
    assert new.matches_between("error", T0, T0 + 20) == 0


# --- the evidence source ---------------------------------------------------------------------------


class Run:
    """The runs source's latest run, and the end of the run before it, as the test sets them."""

    def __init__(self) -> None:
        self.row: RunRow | None = None
        self.previous_end: datetime | None = None

    def __call__(self) -> LatestRun | None:
        return LatestRun(self.row, self.previous_end) if self.row is not None else None


def world(tmp_path: Path, interval: float = 10.0) -> tuple[Path, Clock, LogScanSource, Run, RunLogEvidenceSource]:
    log = tmp_path / "app.log"
    log.write_text("t0 ERROR long ago\n")
    clock = Clock(T0)
    scan = LogScanSource("b", "app", LogCfg(str(log)), None, clock=clock)
    scan.poll()  # the backlog
    latest = Run()
    source = RunLogEvidenceSource("b", latest, [WatchedLog("app", scan, interval)], clock=clock)
    return log, clock, scan, latest, source


def poll_at(clock: Clock, seconds: float, scan: LogScanSource, log: Path, *lines: str) -> None:
    append(log, *lines)
    clock.at = T0 + seconds
    scan.poll()


def test_matches_read_while_the_run_was_in_progress_count_and_no_others(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    poll_at(clock, 10, scan, log, "t1 ERROR before the start", "t1 WARN before the start")
    latest.row = RunRow("7", "2026-09-21", "running", at(15), None)
    poll_at(clock, 20, scan, log, "t2 ERROR in the run", "t2 ERROR in the run")
    assert evidence(source.poll()) == {("app", "error"): 2, ("app", "warn"): 0}  # while it runs: up to now
    poll_at(clock, 30, scan, log, "t3 WARN in the run")
    latest.row = RunRow("7", "2026-09-21", "success", at(15), at(32))
    poll_at(clock, 40, scan, log, "t4 ERROR written just before the end, read after it")
    poll_at(clock, 50, scan, log, "t5 ERROR of whatever came next")  # past the end + one log interval
    assert evidence(source.poll()) == {("app", "error"): 3, ("app", "warn"): 1}


def test_lines_written_before_the_end_count_however_late_a_busy_machine_reads_them(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path, interval=1.0)
    latest.row = RunRow("7", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    append(log, "t2 ERROR written just before the end")
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(11))
    assert evidence(source.poll())[("app", "error")] == 1  # no poll since the end: still open
    poll_at(clock, 40, scan, log)  # the log poll ran 29 s late, far past the end + one interval
    poll_at(clock, 41, scan, log, "t3 ERROR after the end, read by the poll after that")
    assert evidence(source.poll())[("app", "error")] == 2
    for second in range(42, 42 + 300):  # more polls than the log scan remembers: the window stays shut
        poll_at(clock, second, scan, log, f"t{second} ERROR long after")
    assert evidence(source.poll())[("app", "error")] == 2


def test_an_end_the_table_cut_to_the_second_still_covers_the_lines_of_that_second(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path, interval=0.5)
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(11))  # ended at T0+11.6, kept as T0+11
    poll_at(clock, 11.8, scan, log, "t1 ERROR written at T0+11.5, as the run finished")
    poll_at(clock, 12.5, scan, log)  # began a second after the recorded end: the window shuts with it
    poll_at(clock, 13, scan, log, "t2 ERROR of the next thing")
    assert evidence(source.poll())[("app", "error")] == 1


def test_nothing_is_exported_without_a_latest_run_with_a_start(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    poll_at(clock, 10, scan, log, "t1 ERROR")
    assert evidence(source.poll()) == {}
    latest.row = RunRow("7", None, "queued", None, None, queued_at=at(5))
    assert evidence(source.poll()) == {}
    latest.row = RunRow("7", None, "unknown", at(5), None)  # an unmapped status, no end: may still run
    assert evidence(source.poll()) == {("app", "error"): 1, ("app", "warn"): 0}


@pytest.mark.parametrize("status", ["success", "failed"])
def test_a_finished_run_without_an_end_ends_when_first_seen_finished(tmp_path: Path, status: str) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", None, "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    assert evidence(source.poll())[("app", "error")] == 1
    latest.row = RunRow("7", None, status, at(5), None)  # a table that keeps no end
    poll_at(clock, 20, scan, log, "t2 ERROR written just before the run was seen finished")
    assert evidence(source.poll())[("app", "error")] == 2  # its end: now (T0+20), its window: up to T0+30
    poll_at(clock, 28, scan, log, "t3 ERROR read within one log interval")
    poll_at(clock, 40, scan, log, "t4 ERROR of whatever came next")
    assert evidence(source.poll())[("app", "error")] == 3  # the first sighting stays its end


def test_the_first_sightings_of_runs_without_an_end_are_bounded(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_log_evidence, "SEEN_FINISHED_RUNS", 1)
    log, clock, scan, latest, source = world(tmp_path)
    poll_at(clock, 10, scan, log)
    latest.row = RunRow("7", None, "success", at(5), None)
    assert evidence(source.poll())[("app", "error")] == 0  # seen finished at T0+10
    latest.row = RunRow("8", None, "success", at(6), None)
    source.poll()  # run 8's sighting pushes run 7's out
    poll_at(clock, 50, scan, log, "t1 ERROR long after run 7 was first seen finished")
    latest.row = RunRow("7", None, "success", at(5), None)
    assert evidence(source.poll())[("app", "error")] == 1  # forgotten: seen finished again now


def test_a_retry_starting_right_after_a_failed_run_is_not_blamed_for_its_last_lines(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "run1 working")
    append(log, "run1 ERROR db deadlock", "run1 ERROR giving up")  # run 1 ends at T0+18
    latest.row = RunRow("2", "2026-09-21", "running", at(19), None)  # its retry starts 1 s later
    latest.previous_end = at(18)
    poll_at(clock, 20, scan, log)  # run 1's errors are read after the retry's start
    assert evidence(source.poll())[("app", "error")] == 0
    poll_at(clock, 27, scan, log, "run2 ERROR within the first log interval after run 1's end: not counted")
    poll_at(clock, 30, scan, log, "run2 ERROR read later: counted")
    latest.row = RunRow("2", "2026-09-21", "success", at(19), at(35))
    poll_at(clock, 50, scan, log)
    assert evidence(source.poll())[("app", "error")] == 1


def test_a_run_that_ended_long_before_the_latest_start_does_not_move_its_window(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("2", "2026-09-21", "running", at(5), None)
    latest.previous_end = at(-3600)
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    assert evidence(source.poll())[("app", "error")] == 1


def test_counts_of_a_run_longer_than_the_timeline_never_go_down(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR early in a long run")
    seen = []
    for hour in range(1, 51):
        poll_at(clock, hour * 3600, scan, log, "progress")
        seen.append(evidence(source.poll())[("app", "error")])
    assert scan.matches_between("error", T0, T0 + 11) == 0  # the timeline has let go of the early error
    assert seen == [1] * 50
    poll_at(clock, 50 * 3600 + 1, scan, log, "t2 ERROR late")
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(50 * 3600 + 5))
    poll_at(clock, 50 * 3600 + 30, scan, log)
    assert evidence(source.poll())[("app", "error")] == 2


def test_reads_after_an_end_seen_late_are_taken_back(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    poll_at(clock, 35, scan, log)  # the run ended at T0+30; this poll began after that
    poll_at(clock, 60, scan, log, "t2 ERROR of the next thing; the runs source has not seen the end yet")
    assert evidence(source.poll())[("app", "error")] == 2
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(30))
    assert evidence(source.poll())[("app", "error")] == 1


def test_a_late_poll_that_may_have_read_lines_of_the_run_counts_them(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    poll_at(clock, 60, scan, log, "t2 ERROR written at some time between T0+10 and T0+60")
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(30))
    assert evidence(source.poll())[("app", "error")] == 2  # it may be the run's: evidence, not hidden


def test_a_finished_runs_counts_stay_once_read_past_even_when_the_timeline_forgets(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", "2026-09-21", "success", at(5), at(25))
    poll_at(clock, 10, scan, log, "t1 ERROR in the run")
    poll_at(clock, 30, scan, log)  # inside end + interval: not final yet
    poll_at(clock, 34, scan, log, "t2 ERROR just before the end")
    assert evidence(source.poll())[("app", "error")] == 2
    poll_at(clock, 40, scan, log)  # read past the window: final
    assert evidence(source.poll())[("app", "error")] == 2
    poll_at(clock, 9 * 86400, scan, log, "t3 ERROR a week later")  # a weekly batch: the timeline has let go
    assert scan.matches_between("error", T0, T0 + 40) == 0
    assert evidence(source.poll())[("app", "error")] == 2
    latest.row = RunRow("8", "2026-09-30", "running", at(9 * 86400 - 5), None)  # the next run: counted anew
    assert evidence(source.poll())[("app", "error")] == 1


def test_a_log_rotated_during_the_run_still_counts(tmp_path: Path) -> None:
    log, clock, scan, latest, source = world(tmp_path)
    latest.row = RunRow("7", "2026-09-21", "running", at(5), None)
    poll_at(clock, 10, scan, log, "t1 ERROR before the rotation")
    append(log, "t2 ERROR written to the file just before it is renamed")
    log.rename(tmp_path / "app.log.1")
    log.write_text("t3 ERROR in the new file\n")
    clock.at = T0 + 20
    scan.poll()
    with (tmp_path / "app.log.1").open("a") as f:  # the writer has not reopened yet
        f.write("t4 ERROR still into the renamed file\n")
    clock.at = T0 + 30
    scan.poll()
    assert evidence(source.poll())[("app", "error")] == 4


def test_concurrent_polls_and_evidence_reads_lose_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    ticks = iter(range(1, 10**6))
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            return T0 + next(ticks)

    scan = LogScanSource("b", "app", LogCfg(str(log)), None, clock=clock)
    scan.poll()
    latest = Run()
    latest.row = RunRow("7", None, "running", at(0), None)
    source = RunLogEvidenceSource("b", latest, [WatchedLog("app", scan, 1.0)], clock=lambda: T0 + 10**7)
    failures: list[BaseException] = []
    done = threading.Event()

    def writer_and_scanner() -> None:
        try:
            for n in range(200):
                append(log, f"t{n} ERROR number {n}")
                scan.poll()
        except BaseException as exc:  # noqa: BLE001 -- reported below
            failures.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            previous = 0.0
            while not done.is_set():
                count = evidence(source.poll())[("app", "error")]
                assert count >= previous  # never goes back while the run is in progress
                previous = count
        except BaseException as exc:  # noqa: BLE001 -- reported below
            failures.append(exc)

    threads = [threading.Thread(target=writer_and_scanner), *(threading.Thread(target=reader) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert evidence(source.poll())[("app", "error")] == 200


# --- wiring ----------------------------------------------------------------------------------------


def test_a_batch_with_runs_and_logs_gets_an_evidence_source_after_them(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    sqlite3.connect(db).close()
    text = f"""
global: {{state_dir: {tmp_path / "state"}}}
databases: {{l: {{sqlite: {db}}}}}
batches:
  both:
    database: l
    poll_interval: 45s
    runs: {{table: batch_run, status: {{success: [OK], failed: [NG]}}}}
    logs: {{app: {{path: {tmp_path / "a.log"}, patterns: {{error: ERROR}}, poll_interval: 5s}}}}
  logs-only:
    logs: {{app: {{path: {tmp_path / "b.log"}, patterns: {{error: ERROR}}}}}}
  runs-only:
    database: l
    runs: {{table: batch_run, status: {{success: [OK], failed: [NG]}}}}
"""
    sources = build_sources(parse_config(text, "x.yml"), {"l": open_database("l", sqlite=str(db))})
    names = [s.source.name for s in sources]
    assert [n for n in names if n.startswith("evidence:")] == ["evidence:both"]
    assert names.index("evidence:both") > max(names.index("runs:both"), names.index("logscan:both/app"))
    scheduled = sources[names.index("evidence:both")]
    assert (scheduled.interval, scheduled.database_pool) == (45.0, None)  # the batch's interval, no database


# --- the user's view: the exporter as a process ----------------------------------------------------


@pytest.mark.clock
def test_errors_logged_during_a_run_that_then_succeeds_are_scraped_as_its_evidence(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db, log = tmp_path / "runs.db", tmp_path / "settle.log"
    log.write_text("old ERROR from an earlier night, read at the exporter's first look\n")
    started = time.time() - 5
    conn = sqlite3.connect(db)
    request.addfinalizer(conn.close)
    conn.execute("CREATE TABLE batch_run (run_id INTEGER, status TEXT, started_at REAL, ended_at REAL)")
    conn.execute("INSERT INTO batch_run VALUES (1, 'RUN', ?, NULL)", (started,))
    conn.commit()
    config = tmp_path / "config.yml"
    config.write_text(f"""
global: {{poll_interval: 1s, log_poll_interval: 1s, state_dir: {tmp_path / "state"}}}
databases: {{l: {{sqlite: {db}}}}}
batches:
  settle:
    database: l
    runs: {{table: batch_run, status: {{success: [OK], failed: [NG], running: [RUN]}}}}
    logs: {{app: {{path: {log}, patterns: {{error: ERROR}}}}}}
""")

    def matches(series: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float | None:
        return value(series, "batch_run_latest_log_matches", batch="settle", log="app", pattern="error")

    with running_exporter(config, tmp_path) as exporter:
        exporter.wait_for(lambda s: matches(s) == 0
                          and value(s, "batch_log_matches_total", batch="settle", log="app", pattern="error") == 1,
                          what="the run seen, the old error read but not taken as evidence")
        append(log, "t1 ERROR card 1 declined", "t2 INFO fine", "t3 ERROR card 2 declined", "t4 ERROR timeout")
        exporter.wait_for(lambda s: matches(s) == 3, what="three errors during the run")
        ended = time.time()
        conn.execute("UPDATE batch_run SET status = 'OK', ended_at = ? WHERE run_id = 1", (ended,))
        conn.commit()
        series = exporter.wait_for(lambda s: value(s, "batch_run_last_status", batch="settle", status="success") == 1,
                                   what="the run's success")
        assert matches(series) == 3

        def read_since_the_end(s: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
            last = value(s, "batch_exporter_source_last_success_timestamp_seconds", source="logscan:settle/app")
            took = value(s, "batch_exporter_source_poll_duration_seconds", source="logscan:settle/app")
            return last is not None and took is not None and last - took > ended + END_PRECISION + 0.05

        # the window shuts with the first log poll begun a second after the end (and past end + interval)
        exporter.wait_for(read_since_the_end, what="a log poll begun after the run's end")
        append(log, "t5 ERROR of something else, after the run")
        exporter.wait_for(lambda s: value(s, "batch_log_matches_total", batch="settle", log="app",
                                          pattern="error") == 5, what="the later error read")
        time.sleep(1.5)  # an evidence poll after that read
        assert matches(exporter.scrape()) == 3
