"""The scan state of one log in a small JSON file, replaced atomically after each poll that read.

It holds read positions, file identities and head hashes, and the cumulative counters, so that a
restart resumes where the last completed poll stopped: counters and positions come from the same
file write, so lines are counted once, never twice and never lost. It never holds log text (only a
hash of each file's first bytes, and of a held unterminated line its length and the names of the
patterns it matches). A file that cannot be read or parsed is reported by the caller
and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError

from .paths import is_text, label

KIND: Final = "batch-exporter/logscan"


def encode_path(path: str) -> tuple[str, str | None]:
    """`path` and `path_bytes` of a FileRecord for a file name as Python holds it."""
    if is_text(path):
        return path, None
    return label(path), os.fsencode(path).hex()


def decode_path(record: FileRecord) -> str:
    """The file name a FileRecord was written for, as Python holds it."""
    if record.path_bytes is None:
        return record.path
    return os.fsdecode(bytes.fromhex(record.path_bytes))


_Model = TypeVar("_Model", bound=BaseModel)


class StateError(Exception):
    """A state file exists but is unusable; the message says why, never what it holds."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRecord(_Record):
    path: str  # as `paths.label` shows it: undecodable bytes of the name as \\xNN
    # The name's bytes in hex when they are not valid UTF-8 (JSON holds only text): what a restart
    # resumes by. Absent for every other name, so older state files read the same.
    path_bytes: str | None = None
    device: int
    number: int
    offset: NonNegativeInt  # start of the unterminated last line, if any
    skipping: bool  # inside an oversized line that is already counted
    size: NonNegativeInt
    mtime_ns: int
    head_length: NonNegativeInt
    head_digest: str
    # The held unterminated line at `offset`: its length and the patterns (by name) it matches, so
    # that it counts once when its file is found truncated or gone at the next start. Never its text.
    held_length: NonNegativeInt = 0
    held_matches: tuple[str, ...] = ()


class PatternRecord(_Record):
    regex: str
    matches: NonNegativeInt
    last_match: float | None = None


class LogState(_Record):
    kind: Literal["batch-exporter/logscan"] = KIND
    version: Literal[1] = 1
    batch: str
    log: str
    path: str
    encoding: str
    lines: NonNegativeInt
    oversized: NonNegativeInt
    rotations: NonNegativeInt
    truncations: NonNegativeInt
    read_bytes: NonNegativeInt
    patterns: dict[str, PatternRecord]
    files: list[FileRecord]


def state_file_name(batch: str, log: str) -> str:
    """A file name unique per (batch, log), readable, and safe on every file system."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{batch}-{log}")[:80]
    digest = hashlib.sha256(f"{batch}\0{log}".encode()).hexdigest()[:10]
    return f"logscan-{slug}-{digest}.json"


def evidence_file_name(batch: str) -> str:
    """The file of a batch's log evidence (sources.run_log_evidence), beside its logs' state files: unique per
    batch, readable, and safe on every file system."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", batch)[:80]
    digest = hashlib.sha256(batch.encode()).hexdigest()[:10]
    return f"evidence-{slug}-{digest}.json"


def load(path: Path) -> LogState | None:
    """The saved state, or None when there is none; StateError when one exists but is unusable."""
    return read_model(path, LogState, "state file", "is not a valid log scan state", StateError)


def read_model(path: Path, model: type[_Model], called: str, invalid: str,
               error: type[Exception]) -> _Model | None:
    """A state file read as `model`, or None when there is none; `error` naming the file (as `called`) when
    it cannot be read or `invalid` when it does not fit, with the first problem's place, never its content."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read {called} {path}: {exc.strerror or exc}") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise error(f"{called} {path} {invalid} ({exc.error_count()} problem(s), "
                    f"first at {where}: {first['msg']})") from None


def save(path: Path, state: LogState) -> None:
    """Write the state atomically (see write_atomically). Raises OSError."""
    write_atomically(path, state.model_dump_json().encode("utf-8"))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old file or the new one, never a part: a
    temporary file in the same directory, fsync, rename, and an fsync of the directory so the rename
    itself survives a power loss. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":  # pragma: no cover - os.open cannot open a directory on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
