"""Size and age of a batch's log files: a `stat` per file, nothing read."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ..snapshot import SampleBuilder, Snapshot
from ..tailing.paths import expand
from .errors import SourceError


class LogConfigLike(Protocol):
    """The fields of one `batches.<batch>.logs.<name>` entry the log sources read."""

    path: str
    size_limit: int
    encoding: str
    patterns: Mapping[str, str]
    max_line_bytes: int
    max_path_series: int


class LogFileSource:
    """Exports size and modification time per file (capped per log), the file count and the
    configured size limit. Sizes are exact beyond 4 GiB (a float holds integers up to 2**53)."""

    def __init__(
        self, batch: str, log_name: str, log: LogConfigLike, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = f"logfiles:{batch}/{log_name}"
        self._batch = batch
        self._log_name = log_name
        self._log = log
        self._clock = clock  # uniform with the other sources; a stat needs no clock

    def poll(self) -> Snapshot:
        """Stat every matching file; raises SourceError('io') when the files cannot be listed or stat'ed."""
        try:
            paths = expand(self._log.path)
        except OSError as exc:
            raise SourceError(
                "io", f"log {self._log_name}: cannot list {self._log.path}: {exc.strerror or exc}"
            ) from None
        files: list[tuple[str, os.stat_result]] = []
        for path in paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SourceError(
                    "io", f"log {self._log_name}: cannot stat {path}: {exc.strerror or exc}"
                ) from None
            if stat.S_ISREG(st.st_mode):
                files.append((path, st))
        # The most recently written files are the ones worth a series each.
        files.sort(key=lambda item: (-item[1].st_mtime_ns, item[0]))
        shown = files[: self._log.max_path_series]

        builder = SampleBuilder()
        labels = {"batch": self._batch, "log": self._log_name}
        for path, st in shown:
            builder.add("batch_log_file_size_bytes", st.st_size, path=path, **labels)
            builder.add(
                "batch_log_file_modified_timestamp_seconds", st.st_mtime_ns / 1e9, path=path, **labels
            )
        builder.add("batch_log_file_size_limit_bytes", self._log.size_limit, **labels)
        builder.add("batch_log_files", len(files), **labels)
        builder.add("batch_log_file_series_dropped", len(files) - len(shown), **labels)
        return builder.build(self.name)
