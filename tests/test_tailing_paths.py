"""File names as the log sources see them: names that are not UTF-8 (issue 11 item 3) and symbolic
links to files outside the log's folder (issue 11 item 11)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batch_exporter.config import ConfigError, load_config
from batch_exporter.snapshot import Snapshot
from batch_exporter.sources.logfiles import LogFileSource
from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.tailing.paths import label
from batch_exporter.tailing.state import FileRecord, decode_path, encode_path

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="file names are arbitrary bytes on Linux only")
posix_only = pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")


@dataclass
class LogCfg:
    path: str
    follow_symlinks: bool = True
    patterns: dict[str, str] = field(default_factory=lambda: {"error": "ERROR"})
    encoding: str = "utf-8"
    max_line_bytes: int = 1024 * 1024
    size_limit: int = 4 * 1024**3
    max_path_series: int = 20


def _samples(snapshot: Snapshot, name: str) -> dict[str, float]:
    return {dict(s.labels).get("path", ""): s.value for s in snapshot.samples if s.name == name}


def test_label_keeps_valid_names_and_escapes_undecodable_bytes() -> None:
    assert label(r"D:\batch\logs\auth.log") == r"D:\batch\logs\auth.log"
    assert label("/logs/テスト.log") == "/logs/テスト.log"
    assert label(os.fsdecode(b"/logs/\x83\x65.log")) == "/logs/\\x83e.log"


def test_state_record_round_trips_an_undecodable_name() -> None:
    name = os.fsdecode(b"/logs/\x83\x65\x83\x58\x83\x67.log")
    path, path_bytes = encode_path(name)
    record = FileRecord(path=path, path_bytes=path_bytes, device=1, number=2, offset=0, skipping=False,
                        size=0, mtime_ns=0, head_length=0, head_digest="")
    again = FileRecord.model_validate_json(record.model_dump_json().encode("utf-8"))
    assert decode_path(again) == name
    assert encode_path("/logs/a.log") == ("/logs/a.log", None)  # older state files read the same


@linux_only
def test_names_that_show_alike_make_one_series_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "\\x83.log").write_bytes(b"literal\n")
    with open(os.fsencode(tmp_path) + b"/\x83.log", "wb") as f:
        f.write(b"byte\n\n")
    snap = LogFileSource("b", "app", LogCfg(path=str(tmp_path / "*.log"))).poll()
    assert list(_samples(snap, "batch_log_file_size_bytes")) == [f"{tmp_path}/\\x83.log"]
    assert _samples(snap, "batch_log_files") == {"": 2}
    assert _samples(snap, "batch_log_file_series_dropped") == {"": 1}


def _folder_with_a_link_outside(tmp_path: Path) -> Path:
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    logs.mkdir()
    outside.mkdir()
    (logs / "app.log").write_bytes(b"INFO one\n")
    (outside / "secret.txt").write_bytes(b"ERROR a\nERROR b\nERROR c\n")
    (logs / "secret.log").symlink_to(outside / "secret.txt")
    return logs


@posix_only
def test_glob_follows_a_link_outside_the_folder_by_default(tmp_path: Path) -> None:
    logs = _folder_with_a_link_outside(tmp_path)
    cfg = LogCfg(path=str(logs / "*.log"))
    assert _samples(LogFileSource("b", "app", cfg).poll(), "batch_log_files") == {"": 2}
    scan = LogScanSource("b", "app", cfg, None).poll()
    assert {s.name: s.value for s in scan.samples if s.name == "batch_log_lines_total"} == {
        "batch_log_lines_total": 4}


@posix_only
def test_follow_symlinks_false_never_reads_a_linked_file(tmp_path: Path) -> None:
    logs = _folder_with_a_link_outside(tmp_path)
    cfg = LogCfg(path=str(logs / "*.log"), follow_symlinks=False)
    files = LogFileSource("b", "app", cfg).poll()
    assert _samples(files, "batch_log_files") == {"": 1}
    assert list(_samples(files, "batch_log_file_size_bytes")) == [str(logs / "app.log")]
    scan = {(s.name, s.labels): s.value for s in LogScanSource("b", "app", cfg, None).poll().samples}
    assert scan[("batch_log_lines_total", (("batch", "b"), ("log", "app")))] == 1
    assert scan[("batch_log_matches_total", (("batch", "b"), ("log", "app"), ("pattern", "error")))] == 0
    # a plain path that is a link is no file either
    plain = LogCfg(path=str(logs / "secret.log"), follow_symlinks=False)
    assert _samples(LogFileSource("b", "app", plain).poll(), "batch_log_files") == {"": 0}
    plain_scan = {s.name: s.value for s in LogScanSource("b", "app", plain, None).poll().samples}
    assert plain_scan["batch_log_lines_total"] == 0


def test_follow_symlinks_is_a_per_log_option(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("batches:\n  b:\n    logs:\n      app: {path: /logs/*.log, follow_symlinks: false}\n"
                      "      sdk: {path: /sdk/*.log}\n")
    loaded = load_config(config)
    assert loaded.batches["b"].logs["app"].follow_symlinks is False
    assert loaded.batches["b"].logs["sdk"].follow_symlinks is True
    config.write_text("batches:\n  b:\n    logs:\n      app: {path: /logs/*.log, follow_symlinks: maybe}\n")
    with pytest.raises(ConfigError, match="follow_symlinks"):
        load_config(config)
