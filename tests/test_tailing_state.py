"""The state file: written atomically, read back exactly, refused clearly when damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from batch_exporter.tailing import state as state_module
from batch_exporter.tailing.state import (
    FileRecord,
    LogState,
    PatternRecord,
    StateError,
    load,
    save,
    state_file_name,
)


def sample_state() -> LogState:
    return LogState(
        batch="card-auth",
        log="sdk",
        path=r"D:\vendor\sdk\auth.log",
        encoding="cp932",
        lines=10,
        oversized=1,
        rotations=2,
        truncations=0,
        read_bytes=5 * 1024**3,
        patterns={"error": PatternRecord(regex="ERROR|FATAL", matches=3, last_match=1.7e9)},
        files=[
            FileRecord(
                path=r"D:\vendor\sdk\auth.log",
                device=7,
                number=2**40,
                offset=5 * 1024**3,
                skipping=False,
                size=5 * 1024**3 + 10,
                mtime_ns=1_700_000_000_000_000_000,
                head_length=1024,
                head_digest="ab" * 16,
                held_length=37,
                held_matches=("error",),
            )
        ],
    )


def test_round_trip_keeps_every_field_including_offsets_past_4_gib(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    save(path, sample_state())
    assert load(path) == sample_state()
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left behind


def test_a_state_written_before_held_lines_were_kept_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    older = sample_state().model_dump(mode="json")
    for record in older["files"]:
        del record["held_length"], record["held_matches"]
    path.write_text(json.dumps(older))
    loaded = load(path)
    assert loaded is not None and (loaded.files[0].held_length, loaded.files[0].held_matches) == (0, ())


def test_missing_file_means_no_state(tmp_path: Path) -> None:
    assert load(tmp_path / "none.json") is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"kind": "something-else", "version": 1}', b"[1, 2, 3]", b"\xff\xfe garbage"],
)
def test_damaged_or_foreign_files_raise_a_state_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StateError, match="not a valid log scan state"):
        load(path)


def test_a_failed_write_leaves_the_previous_state_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    save(path, sample_state())

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(state_module.os, "fsync", broken_fsync)
    changed = sample_state().model_copy(update={"lines": 99})
    with pytest.raises(OSError):
        save(path, changed)
    monkeypatch.undo()
    assert load(path) == sample_state()
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_file_names_are_distinct_and_safe() -> None:
    names = {
        state_file_name("a", "b-c"),
        state_file_name("a-b", "c"),
        state_file_name("a/b", "c"),
        state_file_name("a", "b/c"),
        state_file_name("バッチ", "ログ"),
    }
    assert len(names) == 5
    for name in names:
        assert "/" not in name and "\\" not in name and name.endswith(".json")
