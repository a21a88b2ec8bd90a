"""The log file stat source: sizes, ages, the configured limit and the per-path series cap."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.logfiles import LogFileSource
from batch_exporter.tailing import paths as paths_module


@dataclass
class LogCfg:
    path: str
    size_limit: int = 4 * 1024**3
    max_path_series: int = 20
    encoding: str = "utf-8"
    patterns: dict[str, str] | None = None
    max_line_bytes: int = 1024**2


def series(snapshot: Snapshot, name: str) -> dict[str, float]:
    return {dict(s.labels).get("path", ""): s.value for s in snapshot.samples if s.name == name}


def test_single_file_size_mtime_and_limit(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"x" * 1234)
    os.utime(log, ns=(1_700_000_000_500_000_000, 1_700_000_000_500_000_000))
    snap = LogFileSource("card-auth", "sdk", LogCfg(path=str(log), size_limit=4 * 1024**3)).poll()
    assert snap.source == "logfiles:card-auth/sdk"
    assert series(snap, "batch_log_file_size_bytes") == {str(log): 1234}
    assert series(snap, "batch_log_file_modified_timestamp_seconds") == {str(log): 1_700_000_000.5}
    assert series(snap, "batch_log_file_size_limit_bytes") == {"": 4 * 1024**3}
    assert series(snap, "batch_log_files") == {"": 1}
    assert series(snap, "batch_log_file_series_dropped") == {"": 0}
    labels = {dict(s.labels)["batch"] for s in snap.samples}
    assert labels == {"card-auth"}


def test_sparse_file_over_4_gib_reports_its_exact_size(tmp_path: Path) -> None:
    log = tmp_path / "sdk.log"
    size = 4 * 1024**3 + 12345
    with log.open("wb") as f:
        f.truncate(size)  # sparse: takes no disk space
    snap = LogFileSource("b", "sdk", LogCfg(path=str(log))).poll()
    assert series(snap, "batch_log_file_size_bytes") == {str(log): size}
    assert int(series(snap, "batch_log_file_size_bytes")[str(log)]) == size


def test_missing_file_is_zero_files_not_an_error(tmp_path: Path) -> None:
    snap = LogFileSource("b", "app", LogCfg(path=str(tmp_path / "not-yet.log"))).poll()
    assert series(snap, "batch_log_files") == {"": 0}
    assert series(snap, "batch_log_file_size_bytes") == {}
    snap = LogFileSource("b", "app", LogCfg(path=str(tmp_path / "no-dir" / "*.log"))).poll()
    assert series(snap, "batch_log_files") == {"": 0}


def test_glob_caps_per_path_series_keeping_the_newest(tmp_path: Path) -> None:
    for day in range(1, 6):
        path = tmp_path / f"auth-2024-05-0{day}.log"
        path.write_text("x" * day)
        os.utime(path, (1_700_000_000 + day, 1_700_000_000 + day))
    (tmp_path / "auth-2024-05-01.log.gz").write_text("not matched")
    (tmp_path / "auth-dir.log").mkdir()  # not a regular file
    snap = LogFileSource("b", "app", LogCfg(path=str(tmp_path / "auth-*.log"), max_path_series=2)).poll()
    assert series(snap, "batch_log_files") == {"": 5}
    assert series(snap, "batch_log_file_series_dropped") == {"": 3}
    assert sorted(series(snap, "batch_log_file_size_bytes")) == [
        str(tmp_path / "auth-2024-05-04.log"),
        str(tmp_path / "auth-2024-05-05.log"),
    ]


def test_glob_only_in_the_file_name_part(tmp_path: Path) -> None:
    odd_dir = tmp_path / "logs[old]"
    odd_dir.mkdir()
    (odd_dir / "a.log").write_text("x")
    snap = LogFileSource("b", "app", LogCfg(path=str(odd_dir / "*.log"))).poll()
    assert series(snap, "batch_log_files") == {"": 1}


def test_unlistable_directory_is_an_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:  # the tests run as root: directory modes cannot refuse a listing
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(SourceError) as caught:
        LogFileSource("b", "app", LogCfg(path=str(tmp_path / "*.log"))).poll()
    assert caught.value.reason == "io"


def test_a_file_that_cannot_be_stated_is_reported_and_the_others_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.log").write_text("x" * 10)
    (tmp_path / "b.log").write_text("y" * 20)
    real_stat = os.stat

    def flaky(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(path) == str(tmp_path / "a.log"):  # the tests run as root: modes cannot refuse
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", flaky)
    with pytest.raises(SourceError) as caught:
        LogFileSource("b", "app", LogCfg(path=str(tmp_path / "*.log"))).poll()
    assert caught.value.reason == "io" and "a.log" in str(caught.value)
    snap = caught.value.snapshot
    assert snap is not None and snap.source == "logfiles:b/app"
    assert series(snap, "batch_log_file_size_bytes") == {str(tmp_path / "b.log"): 20}
    assert series(snap, "batch_log_files") == {"": 1}
    assert series(snap, "batch_log_file_size_limit_bytes") == {"": 4 * 1024**3}


def test_a_listed_entry_that_cannot_be_examined_is_stated_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.log").write_text("x" * 10)

    class Unexaminable:  # a directory entry whose type the file system does not report, nor a stat
        name = "a.log"

        def is_file(self, follow_symlinks: bool = True) -> bool:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(paths_module.os, "scandir", lambda directory: [Unexaminable()])
    snap = LogFileSource("b", "app", LogCfg(path=str(tmp_path / "*.log"))).poll()
    assert series(snap, "batch_log_file_size_bytes") == {str(tmp_path / "a.log"): 10}
