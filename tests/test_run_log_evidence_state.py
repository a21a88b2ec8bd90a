"""The log evidence's state file: a restart (or a reload) keeps the latest run's counts, and adds what
it reads afterwards; a damaged file is a warning; without a state folder nothing is written."""
from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_exporter.app import build_sources
from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.runsummary import RunRow
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.sources.run_log_evidence import RunLogEvidenceSource, WatchedLog, evidence_file_name
from test_run_log_evidence import T0, Clock, LogCfg, Run, append, at, evidence, poll_at


class Exporter:
    """One exporter life of a batch with one log: its log scan and evidence source, sharing a state folder."""

    def __init__(self, tmp_path: Path, clock: Clock, state: Path | None, latest: Run,
                 scan: LogScanSource | None = None) -> None:
        self.log = tmp_path / "app.log"
        self.clock = clock
        self.scan = scan or LogScanSource("b", "app", LogCfg(str(self.log)), state, clock=clock)
        self.source = RunLogEvidenceSource("b", latest, [WatchedLog("app", self.scan, 10.0)], clock=clock,
                                           state_dir=state)

    def read(self, seconds: float, *lines: str) -> None:
        poll_at(self.clock, seconds, self.scan, self.log, *lines)

    def errors(self) -> float:
        return evidence(self.source.poll())[("app", "error")]


def start(tmp_path: Path, state: Path | None) -> tuple[Exporter, Run]:
    (tmp_path / "app.log").write_text("t0 ERROR long ago\n")
    latest = Run()
    exporter = Exporter(tmp_path, Clock(T0), state, latest)
    exporter.scan.poll()  # the backlog
    return exporter, latest


def restart(tmp_path: Path, latest: Run, state: Path | None, seconds: float) -> Exporter:
    """A new process at T0 + `seconds`, reading the same run table (`latest`) and log."""
    after = Exporter(tmp_path, Clock(T0 + seconds), state, latest)
    after.scan.poll()  # the first read after a restart is a backlog
    return after


def test_a_restart_keeps_the_counts_of_a_finished_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, latest = start(tmp_path, state)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    first.read(10, "t1 ERROR one", "t2 ERROR two")
    latest.row = RunRow("1", "2026-09-21", "success", at(5), at(15))
    first.read(30)
    assert first.errors() == 2
    second = restart(tmp_path, latest, state, 600)
    assert second.errors() == 2  # the success stays contradicted until the run is no longer the latest
    second.read(610, "t3 ERROR of something else")
    assert second.errors() == 2


def test_a_restart_during_a_run_adds_what_it_reads_afterwards_to_the_saved_counts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, latest = start(tmp_path, state)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    first.read(10, "t1 ERROR before the restart")
    assert first.errors() == 1
    append(first.log, "t2 ERROR while the exporter was down")  # when it was written is unknown: not counted
    second = restart(tmp_path, latest, state, 100)
    assert second.errors() == 1
    second.read(110, "t3 ERROR after the restart")
    assert second.errors() == 2
    row, latest.row = latest.row, None  # restarted again, and the runs source has not read the table yet
    third = restart(tmp_path, latest, state, 200)
    assert evidence(third.source.poll()) == {}
    latest.row = row
    third.read(210)
    assert third.errors() == 2


def test_a_reload_counts_nothing_twice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old, latest = start(tmp_path, state)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    old.read(10, "t1 ERROR before the reload")
    assert old.errors() == 1
    old.read(20, "t2 ERROR read, but by no evidence poll before the reload")
    handover = old.scan.retire()
    assert handover is not None
    new_scan = LogScanSource("b", "app", LogCfg(str(old.log)), state, clock=old.clock, handover=handover)
    new = Exporter(tmp_path, old.clock, state, latest, scan=new_scan)  # the state file and the timeline
    new.read(30, "t3 ERROR after the reload")
    assert new.errors() == 3


def test_a_saved_run_that_is_no_longer_the_latest_is_not_counted_for_the_next(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, latest = start(tmp_path, state)
    latest.row = RunRow("1", "2026-09-21", "success", at(5), at(15))
    first.read(10, "t1 ERROR of run 1")
    first.read(30)
    assert first.errors() == 1
    latest.row = RunRow("2", "2026-09-22", "running", at(590), None)
    second = restart(tmp_path, latest, state, 600)
    assert second.errors() == 0
    assert json.loads((state / evidence_file_name("b")).read_text())["run_id"] == "2"


def test_a_run_without_an_end_keeps_its_first_sighting_as_finished_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, latest = start(tmp_path, state)
    latest.row = RunRow("1", None, "running", at(5), None)
    first.read(10, "t1 ERROR in the run")
    latest.row = RunRow("1", None, "success", at(5), None)
    first.read(20)
    assert first.errors() == 1  # seen finished at T0+20
    second = restart(tmp_path, latest, state, 600)
    second.read(610, "t2 ERROR of something else, read after the restart")
    assert second.errors() == 1  # not a window reaching to the restart


def test_the_file_is_written_only_when_the_counts_change_and_holds_no_log_text(tmp_path: Path) -> None:
    state = tmp_path / "state"
    exporter, latest = start(tmp_path, state)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    exporter.read(10, "t1 ERROR card 4111111111111111 declined")
    exporter.errors()
    path = state / evidence_file_name("b")
    written = path.stat().st_ino
    exporter.read(20, "t2 INFO fine")
    exporter.read(30)
    exporter.errors()
    assert path.stat().st_ino == written  # not replaced: nothing changed but the read times
    exporter.read(40, "t3 WARN slow")
    exporter.errors()
    assert path.stat().st_ino != written  # replaced, never rewritten in place
    text = path.read_text()
    assert "card" not in text and "4111" not in text and "declined" not in text
    saved = json.loads(text)
    assert (saved["kind"], saved["batch"], saved["run_id"]) == ("batch-exporter/evidence", "b", "1")
    assert saved["logs"]["app"]["counts"] == {"error": 1, "warn": 1}
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("evidence")) == [path.name]  # no leftovers


@pytest.mark.parametrize("content", [
    b"{not json",
    b'{"kind": "batch-exporter/evidence", "version": 1, "batch": "b", "run_id": "1", "started_at": 0, "logs": '
    b'{"app": {"start": 0, "through": 0, "counts": {"error": -3}}}}',
    b'{"kind": "something else"}',
], ids=["not-json", "negative-count", "another-kind"])
def test_a_damaged_state_file_is_a_warning_and_ignored(tmp_path: Path, content: bytes,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / evidence_file_name("b")
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="batch_exporter.sources.run_log_evidence"):
        exporter, latest = start(tmp_path, state)
    assert [r.getMessage() for r in caplog.records if str(path) in r.getMessage()], caplog.text
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    exporter.read(10, "t1 ERROR")
    assert exporter.errors() == 1
    assert json.loads(path.read_text())["logs"]["app"]["counts"]["error"] == 1  # replaced by a good one


def test_a_state_file_that_cannot_be_written_fails_the_poll_with_the_counts(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the state folder should be\n")
    exporter, latest = start(tmp_path, None)
    source = RunLogEvidenceSource("b", latest, [WatchedLog("app", exporter.scan, 10.0)], clock=exporter.clock,
                                  state_dir=blocker)
    latest.row = RunRow("1", "2026-09-21", "running", at(5), None)
    exporter.read(10, "t1 ERROR")
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert caught.value.reason == "state"
    assert str(blocker / evidence_file_name("b")) in str(caught.value)
    assert caught.value.snapshot is not None and evidence(caught.value.snapshot)[("app", "error")] == 1


def test_without_a_state_folder_nothing_is_saved_and_a_restart_starts_from_nothing(tmp_path: Path) -> None:
    first, latest = start(tmp_path, None)
    latest.row = RunRow("1", "2026-09-21", "success", at(5), at(15))
    first.read(10, "t1 ERROR")
    first.read(30)
    assert first.errors() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log"]
    assert restart(tmp_path, latest, None, 600).errors() == 0


@pytest.mark.parametrize("keep", [True, False], ids=["run", "once"])
def test_the_exporter_keeps_the_evidence_in_its_log_state_folder_unless_told_not_to(tmp_path: Path,
                                                                                      keep: bool) -> None:
    db, state = tmp_path / "runs.db", tmp_path / "state"
    far = datetime(2100, 1, 1, tzinfo=UTC).timestamp()  # a start ahead of any wall clock: the run is in every window
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE batch_run (run_id INTEGER, status TEXT, started_at REAL, ended_at REAL)")
        conn.execute("INSERT INTO batch_run VALUES (1, 'RUN', ?, NULL)", (far,))
    conn.close()
    (tmp_path / "a.log").write_text("")
    text = f"""
global: {{state_dir: {state}}}
databases: {{l: {{sqlite: {db}}}}}
batches:
  b:
    database: l
    runs: {{table: batch_run, status: {{success: [OK], failed: [NG], running: [RUN]}}}}
    logs: {{app: {{path: {tmp_path / "a.log"}, patterns: {{error: ERROR}}}}}}
"""
    sources = build_sources(parse_config(text, "x.yml"), {"l": open_database("l", sqlite=str(db))},
                            keep_log_state=keep)
    for scheduled in sources:
        if scheduled.source.name.startswith(("runs:", "logscan:", "evidence:")):
            scheduled.source.poll()
    evidence_files = sorted(p.name for p in state.iterdir() if p.name.startswith("evidence-")) if state.exists() else []
    assert evidence_files == ([evidence_file_name("b")] if keep else [])
