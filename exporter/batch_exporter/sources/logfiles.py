"""Size and age of a batch's log files: a `stat` per file, nothing read."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Protocol

from ..masking import mask_path
from ..snapshot import SampleBuilder, Snapshot
from ..tailing.paths import expand, label
from .errors import SourceError, join_problems


class LogConfigLike(Protocol):
    """The fields of one `batches.<batch>.logs.<name>` entry the log sources read."""

    # Read-only, as the sources only read them: a config's dict[str, str] then is a Mapping[str, str].
    @property
    def path(self) -> str: ...
    @property
    def size_limit(self) -> int: ...
    @property
    def encoding(self) -> str: ...
    @property
    def patterns(self) -> Mapping[str, str]: ...
    @property
    def max_line_bytes(self) -> int: ...
    @property
    def max_path_series(self) -> int: ...
    # follow_symlinks: bool, optional for duck-typed configs (tests, bench); see follows_symlinks()


def follows_symlinks(log: object) -> bool:
    """The log's `follow_symlinks` (true when the object has no such field)."""
    return bool(getattr(log, "follow_symlinks", True))


class LogFileSource:
    """Exports size and modification time per file (capped per log), the file count and the
    configured size limit. Sizes are exact beyond 4 GiB (a float holds integers up to 2**53).
    A file that cannot be stat'ed is left out (of the count too) and reported, as the log scan
    source does, while the others are still exported. The `path` label shows undecodable bytes of
    a file name as `\\xNN` (see `tailing.paths.label`)."""

    def __init__(self, batch: str, log_name: str, log: LogConfigLike) -> None:
        self.name = f"logfiles:{batch}/{log_name}"
        self._batch = batch
        self._log_name = log_name
        self._log = log

    def poll(self) -> Snapshot:
        """Stat every matching file. Raises SourceError('io') when the files cannot be listed, or
        when some cannot be stat'ed: then the error carries the snapshot of the others."""
        follow = follows_symlinks(self._log)
        try:
            paths = expand(self._log.path, follow)
        except OSError as exc:
            raise SourceError(
                "io", f"log {self._log_name}: cannot list {self._log.path}: {exc.strerror or exc}"
            ) from None
        files: list[tuple[str, os.stat_result]] = []
        problems: list[str] = []
        for path in paths:
            try:
                st = os.stat(path) if follow else os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problems.append(f"cannot stat {mask_path(label(path))}: {exc.strerror or exc}")
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((path, st))
        snapshot = self._build(files)
        if problems:
            raise SourceError("io", f"log {self._log_name}: {join_problems(problems)}", snapshot=snapshot)
        return snapshot

    def _build(self, files: list[tuple[str, os.stat_result]]) -> Snapshot:
        # The most recently written files are the ones worth a series each.
        files = sorted(files, key=lambda item: (-item[1].st_mtime_ns, item[0]))
        shown = files[: self._log.max_path_series]

        builder = SampleBuilder()
        labels = {"batch": self._batch, "log": self._log_name}
        shown_labels: set[str] = set()
        for path, st in shown:
            text = mask_path(label(path))  # a card number in a file name never becomes a label
            if text in shown_labels:
                # a name holding a literal "\\x83" next to one with the byte 0x83: a second series
                # with the same labels would make Prometheus refuse the whole scrape
                continue
            shown_labels.add(text)
            builder.add("batch_log_file_size_bytes", st.st_size, path=text, **labels)
            builder.add(
                "batch_log_file_modified_timestamp_seconds", st.st_mtime_ns / 1e9, path=text, **labels
            )
        builder.add("batch_log_file_size_limit_bytes", self._log.size_limit, **labels)
        builder.add("batch_log_files", len(files), **labels)
        builder.add("batch_log_file_series_dropped", len(files) - len(shown_labels), **labels)
        return builder.build(self.name)
