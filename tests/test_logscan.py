"""The log scan source as the exporter uses it: counts that stay exact across appends, rotation,
truncation, deletion and restarts."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.tailing import follower as follower_module
from batch_exporter.tailing.state import load, save

PATTERNS = {"error": r"^\S+ ERROR ", "warn": "WARN", "jp": "エラー"}
CARD = "4111111111111111"  # stands for the log text that must never leak into our own output


@dataclass
class LogCfg:
    path: str
    patterns: dict[str, str] = field(default_factory=lambda: dict(PATTERNS))
    encoding: str = "utf-8"
    max_line_bytes: int = 1024 * 1024
    size_limit: int = 4 * 1024**3
    max_path_series: int = 20


def values(snapshot: Snapshot) -> dict[str, float]:
    """Samples keyed by name, with the pattern appended for per-pattern series."""
    out = {}
    for sample in snapshot.samples:
        labels = dict(sample.labels)
        key = sample.name + (f"[{labels['pattern']}]" if "pattern" in labels else "")
        out[key] = sample.value
    return out


@contextlib.contextmanager
def stat_fails_for(path: str, code: int = errno.EIO) -> Iterator[None]:
    """`os.stat` of one path fails as on a flaky network share (the tests run as root, so file modes
    cannot make it fail); every other path is stat'ed as usual."""
    real_stat = os.stat

    def failing_stat(target, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(target) == path:
            raise OSError(code, os.strerror(code), path)
        return real_stat(target, *args, **kwargs)

    with mock.patch.object(os, "stat", failing_stat):
        yield


# --- the property: whatever the writer does, each followed by a poll, counts are exact ---------


def _split(content: bytes) -> tuple[list[bytes], bytes]:
    *complete, tail = content.split(b"\n")
    return complete, tail


@dataclass
class Followed:
    """A renamed file the exporter still follows (the writer may still append to it)."""

    path: str
    content: bytes
    kept: bool = False  # outlived a poll outside the set: the next poll that finds it unchanged ends it
    grew: bool = False  # written to since the last poll


@dataclass
class Model:
    """What was written, as lines, and which of them the exporter must have counted."""

    max_line: int
    codec: str
    lines: list[bytes] = field(default_factory=list)  # finished lines
    current: bytes = b""  # content of the live file since it was (re)started
    seen: bool = False  # a poll ran while the live file existed (an unseen file cannot be followed)
    followed: list[Followed] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.current += data

    def end_file(self) -> None:
        """The live file's generation ends (truncated, deleted): its complete lines and its
        unterminated tail are lines, if the exporter ever saw the file."""
        if self.seen:
            self._finish(self.current)
        self.seen = False
        self.current = b""

    def rotate(self, path: str) -> None:
        """The live file was renamed to `path`: followed from there if the exporter knew it."""
        if self.seen:
            self.followed.append(Followed(path, self.current))
        self.seen = False
        self.current = b""

    def moved(self, old: str, new: str) -> None:
        for f in self.followed:
            if f.path == old:
                f.path = new

    def append_old(self, path: str, data: bytes) -> None:
        """The writer appends to a renamed file: it counts while the exporter still follows it."""
        for f in self.followed:
            if f.path == path:
                f.content += data
                f.grew = True

    def polled(self) -> None:
        """A poll ran: renamed files are ended at the first poll after one outside the set that
        finds them unchanged."""
        for f in list(self.followed):
            if f.kept and not f.grew:
                self._finish(f.content)
                self.followed.remove(f)
            f.kept, f.grew = True, False

    def restarted(self) -> None:
        """The exporter does not save that it already followed a renamed file for a poll."""
        for f in self.followed:
            f.kept = False

    def _finish(self, content: bytes) -> None:
        complete, tail = _split(content)
        self.lines.extend(complete)
        if tail:
            self.lines.append(tail)

    def expected(self) -> dict[str, float]:
        lines = list(self.lines)
        for content in [self.current, *(f.content for f in self.followed)]:
            complete, tail = _split(content)
            # An unterminated line already longer than the bound is counted as soon as it is seen.
            lines += complete + ([tail] if len(tail) > self.max_line else [])
        out = {
            "batch_log_lines_total": float(len(lines)),
            "batch_log_oversized_lines_total": float(sum(len(line) > self.max_line for line in lines)),
        }
        for name, regex in PATTERNS.items():
            rx = re.compile(regex)
            hits = 0
            for line in lines:
                text = (
                    line[: self.max_line].decode(self.codec, "replace")
                    if len(line) > self.max_line
                    else line.decode(self.codec, "replace").removesuffix("\r")
                )
                hits += bool(rx.search(text))
            out[f"batch_log_matches_total[{name}]"] = float(hits)
        return out


WORDS = ["ERROR", "INFO", "WARN", "エラー", "done", "\r", "x" * 30, CARD]
piece = st.tuples(
    st.lists(st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join), min_size=1, max_size=4),
    st.booleans(),
)
op = st.one_of(
    st.tuples(st.just("append"), piece),
    st.tuples(st.just("rename"), piece),  # append unread lines, rename the file away, start a new one
    st.tuples(st.just("append_old"), piece),  # the writer appends to the renamed file after a rotation
    st.tuples(st.just("copytruncate"), piece),
    st.tuples(st.just("regrow"), piece),  # truncate and write again past the old read position
    st.tuples(st.just("delete"), piece),
    st.tuples(st.just("restart"), piece),  # append while the exporter is down, then start it again
    st.tuples(st.just("rename_while_down"), piece),
    st.tuples(st.just("truncate_while_down"), piece),  # copytruncate while the exporter is down
    st.tuples(st.just("stat_fails"), piece),  # one poll where the live file's stat fails (EIO)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(op, min_size=1, max_size=12),
    encoding=st.sampled_from(["utf-8", "cp932"]),
    max_line=st.sampled_from([48, 4096]),
)
def test_counts_equal_what_was_written(
    ops: list[tuple[str, tuple[list[str], bool]]], encoding: str, max_line: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "app.log")
        rotated = log_path + ".1"
        cfg = LogCfg(path=log_path, encoding=encoding, max_line_bytes=max_line)
        state_dir = Path(tmp, "state")
        model = Model(max_line=max_line, codec=encoding)
        serial = iter(range(10**6))

        def render(lines: list[str], newline_at_end: bool) -> bytes:
            # A unique number first on every line, as real logs carry timestamps: two rewrites of a
            # file then never share their first bytes.
            text = "\n".join(f"{next(serial):05d} {line}" for line in lines)
            return (text + ("\n" if newline_at_end else "")).encode(encoding)

        def write(data: bytes) -> None:
            with open(log_path, "ab") as f:
                f.write(data)
            model.write(data)

        def copytruncate() -> None:
            if os.path.exists(log_path):
                shutil.copyfile(log_path, f"{log_path}.copy{next(serial)}")  # a name never followed
                os.truncate(log_path, 0)
            model.end_file()

        def poll() -> dict[str, float]:
            got = values(source.poll())
            model.polled()
            model.seen = os.path.exists(log_path)
            return got

        source = LogScanSource("b", "app", cfg, state_dir)
        for name, (lines, newline_at_end) in ops:
            data = render(lines, newline_at_end)
            if name in ("restart", "rename_while_down", "truncate_while_down"):
                del source
                model.restarted()
            if name in ("append", "restart"):
                write(data)
            elif name in ("rename", "rename_while_down"):
                write(data)
                if os.path.exists(rotated):  # logrotate's shift: .1 becomes .2 and so on
                    older = f"{log_path}.{next(serial) + 2}"
                    os.replace(rotated, older)
                    model.moved(rotated, older)
                os.replace(log_path, rotated)
                model.rotate(rotated)
                write(render(lines, True))
            elif name == "append_old":
                if os.path.exists(rotated):
                    with open(rotated, "ab") as f:
                        f.write(data)
                    model.append_old(rotated, data)
            elif name in ("copytruncate", "truncate_while_down"):
                copytruncate()
                write(data)
            elif name == "regrow":
                if os.path.exists(log_path):
                    size = os.path.getsize(log_path)
                    os.truncate(log_path, 0)
                    model.end_file()
                    while len(data) <= size:
                        data += render(lines, True)
                write(data)
            elif name == "delete":
                if os.path.exists(log_path):
                    os.unlink(log_path)
                model.end_file()
                poll()
                model.seen = False
                write(data)
            elif name == "stat_fails":
                seen = model.seen
                with stat_fails_for(log_path), pytest.raises(SourceError) as failed:
                    source.poll()
                model.polled()
                model.seen = seen  # the live file was not seen at that poll
                assert failed.value.reason == "io" and failed.value.snapshot is not None
                partial = values(failed.value.snapshot)
                assert {key: partial[key] for key in model.expected()} == model.expected(), name
                write(data)
            if name in ("restart", "rename_while_down", "truncate_while_down"):
                source = LogScanSource("b", "app", cfg, state_dir)
            got = poll()
            assert {key: got[key] for key in model.expected()} == model.expected(), name


# --- behaviours, one at a time -----------------------------------------------------------------


def test_first_poll_without_state_reads_the_current_file_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR one\nt2 INFO two\n")
    cfg = LogCfg(path=str(log))
    assert values(LogScanSource("b", "app", cfg, None).poll())["batch_log_lines_total"] == 2
    # No state: every process start shows what the current file holds (`once` relies on this).
    assert values(LogScanSource("b", "app", cfg, None).poll())["batch_log_lines_total"] == 2


def test_restart_with_state_counts_lines_written_while_down_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR one\n")
    cfg = LogCfg(path=str(log))
    clock = iter([100.0, 200.0, 300.0]).__next__
    first = LogScanSource("b", "app", cfg, tmp_path / "state", clock=clock)
    assert values(first.poll())["batch_log_matches_total[error]"] == 1
    with log.open("a") as f:
        f.write("t2 ERROR two\nt3 INFO three\n")
    second = LogScanSource("b", "app", cfg, tmp_path / "state", clock=clock)
    got = values(second.poll())
    assert got["batch_log_lines_total"] == 3
    assert got["batch_log_matches_total[error]"] == 2
    assert got["batch_log_last_match_timestamp_seconds[error]"] == 200.0
    assert "batch_log_last_match_timestamp_seconds[warn]" not in got  # never seen: no series
    assert got["batch_log_matches_total[warn]"] == 0  # every configured pattern has a count
    third = LogScanSource("b", "app", cfg, tmp_path / "state", clock=clock)
    got = values(third.poll())
    assert got["batch_log_lines_total"] == 3
    assert got["batch_log_last_match_timestamp_seconds[error]"] == 200.0  # kept in the state


def test_partial_line_is_held_until_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"t1 ERR")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    assert values(source.poll())["batch_log_lines_total"] == 0
    with log.open("ab") as f:
        f.write(b"OR x\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (1, 1)
    assert got["batch_log_read_bytes_total"] == log.stat().st_size


def test_oversized_line_is_counted_once_and_never_buffered_whole(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    source = LogScanSource("b", "app", LogCfg(path=str(log), max_line_bytes=100), None)
    log.write_bytes(b"t1 ERROR " + b"x" * 60)
    source.poll()
    for _ in range(5):
        with log.open("ab") as f:
            f.write(b"y" * 1000)
        got = values(source.poll())
        assert (got["batch_log_lines_total"], got["batch_log_oversized_lines_total"]) == (1, 1)
        assert len(source._follower.files[0].partial) <= 100
    with log.open("ab") as f:
        f.write(b"\nt2 INFO ok\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_oversized_lines_total"]) == (2, 1)
    assert got["batch_log_matches_total[error]"] == 1  # matched on the line's first 100 bytes


def test_rotation_by_rename_finishes_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 INFO a\n")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    source.poll()
    with log.open("a") as f:
        f.write("t2 ERROR written just before the rename\nt3 ERROR no newline")
    log.rename(tmp_path / "app.log.1")
    log.write_text("t4 ERROR new file\n")
    got = values(source.poll())
    assert got["batch_log_lines_total"] == 3  # the unterminated t3 may still get its end
    assert got["batch_log_matches_total[error]"] == 2
    assert got["batch_log_rotations_total"] == 1
    got = values(source.poll())  # the renamed file did not grow: it is finished, t3 is a line
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (4, 3)
    assert got["batch_log_rotations_total"] == 1


def test_lines_the_writer_appends_to_the_renamed_file_still_count(tmp_path: Path) -> None:
    log, old = tmp_path / "app.log", tmp_path / "app.log.1"
    log.write_text("t1 INFO a\nt2 ERROR half a li")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), tmp_path / "state")
    source.poll()
    log.rename(old)  # the writer has not reopened its log yet ...
    log.write_text("t3 INFO new file\n")
    assert values(source.poll())["batch_log_lines_total"] == 2
    with old.open("a") as f:  # ... and goes on writing to the renamed file
        f.write("ne\nt4 ERROR still the old file\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (4, 2)
    old.rename(tmp_path / "app.log.2")  # renamed again (logrotate's shift) and written to once more
    with (tmp_path / "app.log.2").open("a") as f:
        f.write("t5 WARN last words\n")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), tmp_path / "state")  # and a restart
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[warn]"]) == (5, 1)
    assert values(source.poll())["batch_log_lines_total"] == 5  # no longer growing: finished
    with (tmp_path / "app.log.2").open("a") as f:
        f.write("t6 INFO after it was finished\n")  # one poll without growth ends the following
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_rotations_total"]) == (5, 1)
    assert [f.path for f in source._follower.files] == [str(log)]


def test_copytruncate_and_regrow_are_truncations(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("0001 ERROR a\n0002 INFO b\n")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    source.poll()
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    got = values(source.poll())
    assert (got["batch_log_truncations_total"], got["batch_log_lines_total"]) == (1, 2)
    log.write_text("0003 ERROR c\n0004 INFO d\n0005 INFO e\n")  # truncated and regrown past the old size
    got = values(source.poll())
    assert (got["batch_log_truncations_total"], got["batch_log_lines_total"]) == (1, 5)
    os.truncate(log, 0)
    log.write_text("0006 WARN rewritten, longer than before: the head fingerprint notices\n")
    got = values(source.poll())
    assert got["batch_log_truncations_total"] == 2
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[warn]"]) == (6, 1)


def test_same_size_rewrite_within_one_time_stamp_tick_is_noticed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("0001 ERROR a\n")
    stamp = log.stat().st_mtime_ns
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    source.poll()
    log.write_text("0002 WARN bb\n")  # same size; the file system may well give it the same time stamp
    os.utime(log, ns=(stamp, stamp))
    got = values(source.poll())
    assert got["batch_log_truncations_total"] == 1
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[warn]"]) == (2, 1)


def test_deleted_and_recreated_file(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\nt2 held")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    source.poll()
    log.unlink()
    got = values(source.poll())
    assert got["batch_log_lines_total"] == 2  # the held last line ends with its file
    log.write_text("t3 ERROR b\n")
    got = values(source.poll())
    assert got["batch_log_lines_total"] == 3
    # A re-created file may get the deleted one's inode: then it is seen as rewritten instead.
    assert got["batch_log_rotations_total"] + got["batch_log_truncations_total"] == 1


def test_glob_set_with_dated_files_coming_and_going(tmp_path: Path) -> None:
    cfg = LogCfg(path=str(tmp_path / "auth-*.log"))
    (tmp_path / "auth-2024-05-01.log").write_text("t1 ERROR a\n")
    (tmp_path / "other.log").write_text("t1 ERROR not ours\n")
    source = LogScanSource("b", "auth", cfg, tmp_path / "state")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_rotations_total"]) == (1, 0)
    (tmp_path / "auth-2024-05-02.log").write_text("t2 ERROR b\nt3 INFO c\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_rotations_total"]) == (3, 1)
    (tmp_path / "auth-2024-05-01.log").unlink()  # retention: not a rotation
    with (tmp_path / "auth-2024-05-02.log").open("a") as f:
        f.write("t4 ERROR d\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (4, 3)
    assert got["batch_log_rotations_total"] == 1


def test_rename_within_a_glob_set_keeps_the_position(tmp_path: Path) -> None:
    cfg = LogCfg(path=str(tmp_path / "app.log*"))
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\n")
    source = LogScanSource("b", "app", cfg, None)
    source.poll()
    log.rename(tmp_path / "app.log.1")
    log.write_text("t2 INFO b\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (2, 1)


def test_utf16_log_with_byte_order_mark_and_japanese_errors(tmp_path: Path) -> None:
    log = tmp_path / "sdk.log"
    text = "2024-05-01 ERROR 与信エラー\r\n2024-05-01 INFO 正常\r\n"
    log.write_bytes(text.encode("utf-16"))  # BOM + native (little-endian) order
    cfg = LogCfg(path=str(log), encoding="utf-16", patterns={"first": r"^2024-05-01 ERROR ", "jp": "エラー$"})
    got = values(LogScanSource("b", "sdk", cfg, None).poll())
    assert got["batch_log_lines_total"] == 2
    assert (got["batch_log_matches_total[first]"], got["batch_log_matches_total[jp]"]) == (1, 1)
    log.write_bytes(text.encode("utf-16-be").join([b"\xfe\xff", b""]))  # big-endian, its own BOM
    got = values(LogScanSource("b", "sdk", cfg, None).poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[first]"]) == (2, 1)


def test_cp932_log_with_japanese_errors(tmp_path: Path) -> None:
    log = tmp_path / "sdk.log"
    lines = ["2024-05-01 02:00:00 ERROR 与信エラー: カード有効期限切れ", "2024-05-01 02:00:01 INFO  表示"]
    log.write_bytes("".join(line + "\r\n" for line in lines).encode("cp932"))
    cfg = LogCfg(
        path=str(log), encoding="cp932", patterns={"error": r"^\S+ \S+ ERROR ", "expired": "有効期限切れ$"}
    )
    got = values(LogScanSource("b", "sdk", cfg, None).poll())
    assert (got["batch_log_matches_total[error]"], got["batch_log_matches_total[expired]"]) == (1, 1)


def test_idle_poll_costs_a_stat_and_returns_the_same_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\n")
    an_hour_ago = time.time() - 3600  # written a while ago: its time stamp proves it unchanged
    os.utime(log, (an_hour_ago, an_hour_ago))
    source = LogScanSource("b", "app", LogCfg(path=str(log)), tmp_path / "state")
    first = source.poll()
    opened: list[str] = []
    real_open = follower_module.open_shared
    monkeypatch.setattr(follower_module, "open_shared", lambda path: opened.append(path) or real_open(path))
    saved: list[object] = []
    writer = source._writer
    monkeypatch.setattr(writer, "submit", lambda *args: saved.append(args))
    monkeypatch.setattr(writer, "write_now", lambda *args: saved.append(args))
    assert source.poll() is first
    assert opened == [] and saved == []


def test_unreadable_file_is_an_io_error_but_the_others_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.log").write_text("t1 ERROR a\n")
    (tmp_path / "b.log").write_text("t1 ERROR b\n")
    source = LogScanSource("b", "app", LogCfg(path=str(tmp_path / "*.log")), None)
    real_open = follower_module.open_shared

    def refuse_a(path: str):  # the test runs as root, so file modes cannot refuse a read
        if path.endswith("a.log"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path)

    monkeypatch.setattr(follower_module, "open_shared", refuse_a)
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert caught.value.reason == "io" and "a.log" in str(caught.value)
    assert caught.value.snapshot is not None  # what could be read is exported all the same
    assert values(caught.value.snapshot)["batch_log_lines_total"] == 1
    monkeypatch.setattr(follower_module, "open_shared", real_open)
    assert values(source.poll())["batch_log_lines_total"] == 2


def test_unlistable_directory_at_start_still_exports_the_saved_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.log").write_text("t1 ERROR a\nt2 INFO b\n")
    cfg = LogCfg(path=str(tmp_path / "*.log"))
    LogScanSource("b", "app", cfg, tmp_path / "state").poll()
    restarted = LogScanSource("b", "app", cfg, tmp_path / "state")

    def refuse(path: str) -> None:  # the tests run as root: directory modes cannot refuse a listing
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(SourceError) as caught:
        restarted.poll()
    assert caught.value.reason == "io" and "cannot list" in str(caught.value)
    assert caught.value.snapshot is not None  # the counters carry on from the state, no gap
    got = values(caught.value.snapshot)
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (2, 1)


def test_a_failed_stat_neither_ends_a_file_nor_reads_it_again(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"1 ERROR a\n2 b\n3 held")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), tmp_path / "state")
    assert values(source.poll())["batch_log_lines_total"] == 2
    for code in (errno.EIO, errno.ESTALE):  # a network share's hiccups
        with stat_fails_for(str(log), code), pytest.raises(SourceError) as caught:
            source.poll()
        assert caught.value.reason == "io" and os.strerror(code) in str(caught.value)
        assert caught.value.snapshot is not None
        assert values(caught.value.snapshot)["batch_log_lines_total"] == 2  # "3 held" still held
    with log.open("ab") as f:
        f.write(b" line\n")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (3, 1)
    assert (got["batch_log_rotations_total"], got["batch_log_truncations_total"]) == (0, 0)


def test_a_file_first_seen_after_a_failed_stat_is_no_rotation(tmp_path: Path) -> None:
    cfg = LogCfg(path=str(tmp_path / "*.log"))
    (tmp_path / "a.log").write_text("t1 INFO a\n")
    (tmp_path / "b.log").write_text("t1 ERROR b\n")
    source = LogScanSource("b", "app", cfg, None)
    with stat_fails_for(str(tmp_path / "a.log")), pytest.raises(SourceError) as caught:
        source.poll()  # the very first poll: a.log is there, only its stat failed
    assert caught.value.snapshot is not None
    assert values(caught.value.snapshot)["batch_log_lines_total"] == 1
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_rotations_total"]) == (2, 0)
    (tmp_path / "c.log").write_text("t2 INFO c\n")  # a file that really is new
    assert values(source.poll())["batch_log_rotations_total"] == 1


def test_a_held_line_is_counted_once_when_its_file_is_truncated_while_down(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    before = f"0001 INFO a\n0002 ERROR card={CARD} not yet ended".encode()
    after = b"0003 WARN new content\n"
    log.write_bytes(before)
    cfg = LogCfg(path=str(log))
    LogScanSource("b", "app", cfg, tmp_path / "state").poll()
    state_text = next((tmp_path / "state").iterdir()).read_text()
    assert CARD not in state_text and "not yet ended" not in state_text  # numbers only
    # copytruncate while the exporter is down: the held line cannot be read again
    os.truncate(log, 0)
    log.write_bytes(after)
    got = values(LogScanSource("b", "app", cfg, tmp_path / "state").poll())
    assert got["batch_log_lines_total"] == 3
    assert (got["batch_log_matches_total[error]"], got["batch_log_matches_total[warn]"]) == (1, 1)
    assert got["batch_log_truncations_total"] == 1
    assert got["batch_log_read_bytes_total"] == len(before) + len(after)
    # and once only: the next start finds nothing more to count
    assert values(LogScanSource("b", "app", cfg, tmp_path / "state").poll())["batch_log_lines_total"] == 3


def test_a_held_line_read_again_after_a_restart_is_not_counted_twice(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"0001 INFO a\n0002 ERROR held")
    cfg = LogCfg(path=str(log))
    LogScanSource("b", "app", cfg, tmp_path / "state").poll()
    with log.open("ab") as f:
        f.write(b" and ended\n")
    source = LogScanSource("b", "app", cfg, tmp_path / "state")
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"]) == (2, 1)
    log.unlink()  # the line was read again: ending the file now adds nothing
    assert values(source.poll())["batch_log_lines_total"] == 2


def test_state_that_cannot_be_written_is_a_state_error(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\n")
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state directory should be")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), not_a_dir)
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert caught.value.reason == "state"
    assert caught.value.snapshot is not None  # the counts go on being exported
    assert values(caught.value.snapshot)["batch_log_lines_total"] == 1
    with log.open("a") as f:
        f.write("t2 INFO b\n")
    with pytest.raises(SourceError) as caught:  # still unsaved: tried again at every poll
        source.poll()
    assert caught.value.snapshot is not None
    assert values(caught.value.snapshot)["batch_log_lines_total"] == 2


def test_state_lost_while_serving_still_exports_the_counts(tmp_path: Path) -> None:
    """The folder was usable at start (else the start fails, tests/test_state_dir.py) and is replaced
    by a file later: the counts go on being exported, and the source says why it is down."""
    from batch_exporter.app import Exporter
    from batch_exporter.config import parse_config
    from exporter_process import parse_exposition, value

    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\nt2 INFO b\n")
    state = tmp_path / "state"
    config = parse_config(
        f"global: {{state_dir: '{state}'}}\n"
        f"batches:\n  b:\n    logs:\n      app: {{path: '{log}', patterns: {{error: ERROR}}}}\n",
        "exporter.yml",
    )
    exporter = Exporter(config)
    try:
        state.rmdir()
        state.write_text("a file where the state directory should be")
        assert not exporter.poller.poll_all_once()
        series = parse_exposition(exporter.store.payload()[0].decode())
    finally:
        exporter.stop()
    assert value(series, "batch_exporter_source_up", source="logscan:b/app") == 0
    assert value(series, "batch_exporter_source_errors_total", source="logscan:b/app", reason="state") == 1
    assert value(series, "batch_log_lines_total", batch="b", log="app") == 2
    assert value(series, "batch_log_matches_total", batch="b", log="app", pattern="error") == 1


def test_corrupt_and_foreign_state_are_reported_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "app.log"
    log.write_text(f"t1 ERROR card={CARD}\nt2 INFO ok\n")
    state_dir = tmp_path / "state"
    LogScanSource("b", "app", LogCfg(path=str(log)), state_dir).poll()
    state_file = next(state_dir.iterdir())
    assert CARD not in state_file.read_text()  # only positions, identities and hashes are kept

    state_file.write_text('{"kind": "batch-exporter/logscan", "version": 1, "lines": "many"')
    with caplog.at_level(logging.WARNING):
        got = values(LogScanSource("b", "app", LogCfg(path=str(log)), state_dir).poll())
    assert got["batch_log_lines_total"] == 2  # started again from the beginning, not doubled
    assert "not a valid log scan state" in caplog.text

    caplog.clear()
    other = LogCfg(path=str(tmp_path / "other.log"))
    (tmp_path / "other.log").write_text("x\n")
    foreign_name = state_file.name
    LogScanSource("b", "app", other, state_dir).poll()  # same batch/log name, another path
    assert (state_dir / foreign_name).exists()
    with caplog.at_level(logging.WARNING):
        got = values(LogScanSource("b", "app", LogCfg(path=str(log)), state_dir).poll())
    assert got["batch_log_lines_total"] == 2
    assert "written for another log" in caplog.text
    assert CARD not in caplog.text and "ERROR card" not in caplog.text


def test_changed_pattern_starts_its_count_again(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("t1 ERROR a\nt2 WARN b\n")
    LogScanSource("b", "app", LogCfg(path=str(log)), tmp_path / "state").poll()
    with log.open("a") as f:
        f.write("t3 WARN c\n")
    cfg = LogCfg(path=str(log), patterns={"error": r"^\S+ ERROR ", "warn": "WARN c"})
    got = values(LogScanSource("b", "app", cfg, tmp_path / "state").poll())
    assert got["batch_log_matches_total[error]"] == 1  # unchanged pattern: carried on
    assert got["batch_log_matches_total[warn]"] == 1  # changed: counts only what it read since


def test_file_over_4_gib_is_scanned_from_its_saved_offset(tmp_path: Path) -> None:
    log = tmp_path / "sdk.log"
    with log.open("wb") as f:
        f.write(b"0001 INFO start\n")
    cfg = LogCfg(path=str(log))
    LogScanSource("b", "sdk", cfg, tmp_path / "state").poll()
    # Let a previous run have read a (sparse) 4.5 GiB file up to near its end, then lines follow.
    size = 4 * 1024**3 + 512 * 1024**2
    os.truncate(log, size)
    with log.open("ab") as f:
        f.write(b"\n")
    state_file = next((tmp_path / "state").iterdir())
    state = load(state_file)
    assert state is not None
    st_ = log.stat()
    record = state.files[0].model_copy(
        update={"offset": size + 1, "size": st_.st_size, "mtime_ns": st_.st_mtime_ns}
    )
    save(state_file, state.model_copy(update={"files": [record]}))
    with log.open("ab") as f:
        f.write(b"0002 ERROR past 4 GiB\n0003 INFO end\n")
    got = values(LogScanSource("b", "sdk", cfg, tmp_path / "state").poll())
    assert got["batch_log_lines_total"] == 3
    assert got["batch_log_matches_total[error]"] == 1
    # Only the new lines were read, not the 4.5 GiB before them.
    assert got["batch_log_read_bytes_total"] == len(
        b"0001 INFO start\n0002 ERROR past 4 GiB\n0003 INFO end\n"
    )
    assert got["batch_log_unread_bytes"] == 0 and log.stat().st_size > 2**32


def test_a_count_that_fails_half_way_adds_nothing_and_the_next_poll_counts_each_line_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"")
    source = LogScanSource("b", "app", LogCfg(path=str(log)), None)
    source.poll()
    log.write_bytes(b"x ERROR 451\nWARN\n" * 5000)  # several chunks: the failure comes after some counted
    real = follower_module.LineScanner.count_block
    calls = [0]

    def fail_on_the_second(self: follower_module.LineScanner, *args: object) -> None:
        calls[0] += 1
        real(self, *args)  # type: ignore[arg-type]
        if calls[0] == 2:
            raise RuntimeError("the matcher failed (out of memory)")

    monkeypatch.setattr(follower_module.LineScanner, "count_block", fail_on_the_second, raising=True)
    monkeypatch.setattr(follower_module, "CHUNK_BYTES", 4096)
    with pytest.raises(RuntimeError):
        source.poll()
    got = values(source.poll())
    assert (got["batch_log_lines_total"], got["batch_log_matches_total[error]"],
            got["batch_log_matches_total[warn]"]) == (10000, 5000, 5000)
