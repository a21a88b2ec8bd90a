"""The demo folder a drill writes into: recognised before anything is written, snapshotted, restored.

`open_target` is the only way to get a `DemoTarget`, and a `DemoTarget` is the only writer a drill has.
A database is the demo's when its schema is exactly the one the demo creates (`demo.why_not_demo`, the
check `batch-exporter demo --dir` makes too: the same tables, columns, constraints and indexes, nothing
more), checked once read-only and again on the writer's own connection before its first write.
Anything else is refused; with `allow_copy` (the `--i-know-this-is-not-the-demo` flag) the drill works
on a copy in its scratch folder and the original is only read.

Snapshots are only ever read back read-only and only when taken in full, so an interrupted drill never
copies an empty file over the demo.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..demo import NotADemoError, open_read_only, prepare_demo, read_schema, schema_difference, why_not_demo
from ..demo_sim import SDK_LOG_CAP_BYTES, DemoPaths, DemoWriter

log = logging.getLogger(__name__)

COPY_MARKER = ".batch-exporter-drill-copy"
_DEMO_TABLES = {
    "job_execution": {"exec_id", "job_name", "biz_date", "exec_status", "start_ts", "end_ts", "exit_code"},
    "auth_request": {"request_id", "exec_id", "merchant_ref", "auth_state", "amount_yen", "updated_ts"},
}

__all__ = ["COPY_MARKER", "DemoTarget", "FileState", "LogSnapshot", "NotADemoError", "TargetError", "open_target"]


class TargetError(Exception):
    """The demo folder cannot be used: missing, unreadable, or a copy without the demo's tables."""


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class LogSnapshot:
    """Copies of every file under the demo's logs/ folder, with their sizes and modification times."""

    folder: Path
    files: dict[str, FileState]
    folders: frozenset[str]


class DemoTarget:
    """A DemoWriter on a recognised demo folder, plus snapshots of its database and logs."""

    def __init__(self, paths: DemoPaths, scratch: Path, *, origin: Path, copied: bool, created: bool) -> None:
        self.paths = paths
        self.origin = origin  # the folder named (or created); paths.folder unless this is a copy
        self.copied = copied
        self.created = created
        self._scratch = scratch
        if copied and not (paths.folder / COPY_MARKER).is_file():
            raise TargetError(f"{paths.folder}: a drill copy without its marker file; refusing to write")
        conn = sqlite3.connect(f"{paths.database.resolve().as_uri()}?mode=rw", uri=True, timeout=10,
                               isolation_level=None, check_same_thread=False)
        try:
            if not copied and (reason := schema_difference(read_schema(conn))) is not None:
                raise NotADemoError(f"{paths.database}: {reason}")  # changed since the read-only look
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        self.writer = DemoWriter(paths, conn, SDK_LOG_CAP_BYTES)
        self._rotations = 0
        self._snapshots: set[str] = set()

    @property
    def conn(self) -> sqlite3.Connection:
        return self.writer.conn

    @contextmanager
    def transaction(self) -> Iterator[DemoWriter]:
        """One write transaction: the exporter sees all of an injection or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.writer
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def _snapshot_path(self, name: str) -> Path:
        return self._scratch / f"snapshot-{name}.db"

    def snapshot_db(self, name: str) -> Path:
        """Copy the database (SQLite backup API) to the scratch folder under `name`."""
        self._snapshots.discard(name)
        path = self._snapshot_path(name)
        path.unlink(missing_ok=True)
        copy = sqlite3.connect(path)
        try:
            self.conn.backup(copy)
        finally:
            copy.close()
        self._snapshots.add(name)  # only a finished copy can be restored
        return path

    def has_snapshot(self, name: str) -> bool:
        return name in self._snapshots

    def restore_db(self, name: str) -> None:
        """Put back the database as at `snapshot_db(name)` (one transaction: readers see old or new).

        A snapshot never taken (or not finished) raises TargetError and the database is left alone.
        """
        if name not in self._snapshots:
            raise TargetError(f"no snapshot {name!r} of {self.paths.database} was taken: nothing to restore")
        # read-only: a missing snapshot file is an error, never an empty database copied over the demo
        source = open_read_only(self._snapshot_path(name))
        try:
            source.backup(self.conn)
        finally:
            source.close()

    def snapshot_logs(self) -> LogSnapshot:
        """Copy every file under logs/ (the demo's logs are small: at most a few hundred KiB)."""
        folder = self._scratch / "logs-snapshot"
        if folder.exists():
            shutil.rmtree(folder)
        files: dict[str, FileState] = {}
        folders = frozenset(p.relative_to(self.paths.logs).as_posix() for p in self.paths.logs.rglob("*")
                            if p.is_dir())
        for path in sorted(self.paths.logs.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(self.paths.logs).as_posix()
            stat = path.stat()
            files[relative] = FileState(stat.st_size, stat.st_mtime_ns)
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / relative)
        return LogSnapshot(folder, files, folders)

    def restore_logs(self, snapshot: LogSnapshot) -> None:
        """Make logs/ hold exactly the snapshot's files, bytes and modification times."""
        for path in sorted(self.paths.logs.rglob("*"), reverse=True):
            relative = path.relative_to(self.paths.logs).as_posix()
            if path.is_file() and relative not in snapshot.files:
                path.unlink()
            elif path.is_dir() and relative not in snapshot.folders and not any(path.iterdir()):
                path.rmdir()
        for relative, state in snapshot.files.items():
            path = self.paths.logs / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot.folder / relative, path)
            os.utime(path, ns=(state.mtime_ns, state.mtime_ns))

    def log_files(self) -> list[Path]:
        """The files the demo's two card-authorization logs are made of (app: one per day; sdk)."""
        files = sorted(self.paths.logs.glob("auth-batch-*.log"))
        return files + ([self.paths.sdk_log] if self.paths.sdk_log.exists() else [])

    def set_mtimes(self, paths: list[Path], at: float) -> dict[Path, int]:
        """Set modification times (a silent log); returns the previous ones for `reset_mtimes`."""
        before = {path: path.stat().st_mtime_ns for path in paths}
        for path in paths:
            os.utime(path, (at, at))
        return before

    def reset_mtimes(self, before: dict[Path, int]) -> None:
        for path, mtime_ns in before.items():
            if path.exists():
                os.utime(path, ns=(mtime_ns, mtime_ns))

    def empty_sdk_log(self) -> None:
        """Empty the SDK log in place (its content is in the log snapshot, and comes back with it)."""
        if self.paths.sdk_log.exists():
            self.paths.sdk_log.write_bytes(b"")

    def rotate_sdk_log(self) -> None:
        """What the runbook asks for: move the full SDK log aside and let it start a new, empty file.

        The old file stays in its own folder (a rename, on the same file system as the log wherever the
        demo lives), as logrotate would leave it; restoring the logs removes it.
        """
        self._rotations += 1
        sdk = self.paths.sdk_log
        if sdk.exists():
            os.replace(sdk, sdk.with_name(f"{sdk.name}.drill-rotated-{self._rotations}"))
        sdk.parent.mkdir(parents=True, exist_ok=True)
        sdk.touch()

    def close(self) -> None:
        self.conn.close()


def open_target(folder: Path | None, scratch: Path, *, allow_copy: bool = False) -> DemoTarget:
    """The drill's demo: `folder` when it holds the demo (or is new/empty: a demo is created there).

    Without `folder`, a fresh demo is created in the scratch folder. A folder holding anything else
    raises NotADemoError, unless `allow_copy`: then its database and logs are copied into the scratch
    folder and only the copy is written.
    """
    if folder is None or not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        demo_folder = folder if folder is not None else scratch / "demo"
        prepare_demo(demo_folder, now=datetime.now(UTC))
        paths = DemoPaths(demo_folder)
        return DemoTarget(paths, scratch, origin=demo_folder, copied=False, created=True)
    if not folder.is_dir():
        raise TargetError(f"{folder} is not a folder (give the demo folder, the one holding payments.db)")
    paths = DemoPaths(folder)
    reason = why_not_demo(paths.database)
    if reason is None:
        return DemoTarget(paths, scratch, origin=folder, copied=False, created=False)
    if not allow_copy:
        raise NotADemoError(
            f"{folder} does not hold the demo database: {reason}.\n"
            "The drill writes faults into the database it drills and only ever into the demo's. Point --dir "
            "at a folder made by `batch-exporter demo --dir`, leave --dir out for a fresh demo, or add "
            "--i-know-this-is-not-the-demo to drill a copy of this folder (the original is only read)."
        )
    return _copy_target(paths, scratch, reason)


def _copy_target(original: DemoPaths, scratch: Path, reason: str) -> DemoTarget:
    if not original.database.is_file():
        raise TargetError(f"{original.database} does not exist: nothing to copy")
    folder = scratch / "copy"
    folder.mkdir()
    (folder / COPY_MARKER).write_text(f"copy of {original.folder}\n", encoding="utf-8")
    source = open_read_only(original.database)
    copy = sqlite3.connect(folder / original.database.name)
    try:
        source.backup(copy)
        columns = {table: {str(row[1]) for row in copy.execute(f"PRAGMA table_info({table})")}
                   for table in _DEMO_TABLES}
    finally:
        source.close()
        copy.close()
    for table, needed in _DEMO_TABLES.items():
        if not needed <= columns[table]:
            raise TargetError(f"{original.database}: {reason}, and the copy lacks the demo's table {table} "
                              f"with columns {', '.join(sorted(needed))}: the drill cannot inject into it")
    if original.logs.is_dir():
        shutil.copytree(original.logs, folder / "logs")
    else:
        (folder / "logs").mkdir()
    log.info("drilling a copy of %s in %s (%s)", original.folder, folder, reason)
    return DemoTarget(DemoPaths(folder), scratch, origin=original.folder, copied=True, created=False)
