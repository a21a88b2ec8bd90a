"""Lines matching a log's patterns, from the tails of the files modified since a moment."""
from __future__ import annotations

import codecs
import os
import re
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..config import LogConfig
from ..masking import clean_line
from ..tailing.encoding import resolve
from ..tailing.paths import expand

DEFAULT_LOG_BYTES = 8 * 1024**2
DEFAULT_LOG_LINES = 20
MAX_LOG_FILES = 10  # newest files per log
MTIME_SLACK_SECONDS = 60.0  # the log host's clock and the database's may differ a little
# A matching line stamped this long before the start is old news. The log's time zone is unknown: 27 h is
# more than any two zones differ, so a line of the attempt is never taken for an old one.
OLD_LINE_MARGIN = timedelta(hours=27)


@dataclass(frozen=True)
class LogLimits:
    read_bytes: int = DEFAULT_LOG_BYTES
    lines: int = DEFAULT_LOG_LINES
    files: int = MAX_LOG_FILES


@dataclass(frozen=True)
class LogFile:
    path: str
    size: int
    modified: datetime
    read_bytes: int
    truncated: bool  # only the last `read_bytes` were read


@dataclass(frozen=True)
class LogLine:
    file: str
    patterns: tuple[str, ...]
    text: str  # cleaned and masked


@dataclass(frozen=True)
class LogEvidence:
    name: str
    path: str
    files: list[LogFile] = field(default_factory=list)
    older_files: int = 0  # matched the path but not modified since the start
    skipped_files: int = 0  # modified since, but beyond the newest LogLimits.files
    matching_lines: int = 0
    old_lines: int = 0  # matching, but stamped long before the start
    by_pattern: dict[str, int] = field(default_factory=dict)
    lines: list[LogLine] = field(default_factory=list)  # the last ones
    problems: list[str] = field(default_factory=list)

    @property
    def lines_not_shown(self) -> int:
        return self.matching_lines - len(self.lines)


def scan_log(name: str, log: LogConfig, since: float, limits: LogLimits) -> LogEvidence:
    """Lines matching the log's patterns in files of `log.path` modified at or after `since` (epoch s).

    Within those files, lines stamped more than OLD_LINE_MARGIN before `since` are counted, not kept.
    """
    evidence = LogEvidence(name=name, path=log.path)
    if not log.patterns:
        return replace(evidence, problems=["no patterns are configured for this log: nothing to look for"])
    try:
        paths = expand(log.path)  # the files the exporter follows for this log, no more, no fewer
    except OSError as exc:
        return replace(evidence, problems=[f"cannot list the files of this path: {exc.strerror or exc}"])
    candidates = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue  # rotated away between listing and stat
        if os.path.isfile(path):
            candidates.append((stat.st_mtime, path, stat.st_size))
    if not candidates:
        return replace(evidence, problems=["no file matches this path"])
    recent = sorted(c for c in candidates if c[0] >= since - MTIME_SLACK_SECONDS)
    older = len(candidates) - len(recent)
    skipped = max(0, len(recent) - limits.files)
    recent = recent[skipped:]
    patterns = {pattern: re.compile(regex) for pattern, regex in log.patterns.items()}
    old_before = since - OLD_LINE_MARGIN.total_seconds()
    files, problems = [], []
    shown: deque[tuple[str, tuple[str, ...], str]] = deque(maxlen=limits.lines)
    counts = dict.fromkeys(patterns, 0)
    total = old = 0
    for mtime, path, size in recent:
        try:
            lines, read_bytes, truncated = read_tail(Path(path), log.encoding, limits.read_bytes)
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        files.append(LogFile(path, size, datetime.fromtimestamp(mtime, UTC), read_bytes, truncated))
        is_old = False  # lines without a stamp (stack frames) belong with the line before them
        for line in lines:
            stamp = leading_timestamp(line)
            if stamp is not None:
                is_old = stamp < old_before
            hits = tuple(p for p, regex in patterns.items() if regex.search(line))
            if not hits:
                continue
            if is_old:
                old += 1
                continue
            total += 1
            for p in hits:
                counts[p] += 1
            shown.append((os.path.basename(path), hits, line))
    lines_out = [LogLine(file, hits, clean_line(text)) for file, hits, text in shown]
    return replace(evidence, files=files, older_files=older, skipped_files=skipped, matching_lines=total,
                   old_lines=old, by_pattern=counts, lines=lines_out, problems=problems)


_STAMP = re.compile(r"\[?(\d{4})[-/](\d{2})[-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def leading_timestamp(line: str) -> float | None:
    """Epoch seconds of a 'YYYY-MM-DD HH:MM:SS' (or '/' and 'T') stamp opening the line, read as UTC;
    None without one. The zone is unknown here, which OLD_LINE_MARGIN allows for."""
    match = _STAMP.match(line)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _layout(encoding: str, head: bytes) -> tuple[str, int]:
    """(codec to decode with, code unit in bytes); UTF-16/32 without an explicit order read their BOM."""
    try:
        layout = resolve(encoding).for_head(head)
    except ValueError:
        # The tailer refuses codecs whose newlines cannot be found in raw bytes (utf-7, iso2022, EBCDIC);
        # this reads a whole tail and splits the decoded text, so they still work here.
        return codecs.lookup(encoding).name, 1
    return layout.codec, layout.unit


def read_tail(path: Path, encoding: str, limit: int) -> tuple[list[str], int, bool]:
    """(lines, bytes read, truncated) from the last `limit` bytes of a text file; undecodable bytes
    become U+FFFD. When the file is longer, the first (partial) line of the tail is dropped."""
    with path.open("rb") as handle:
        head = handle.read(4)
        size = os.fstat(handle.fileno()).st_size
        codec, unit = _layout(encoding, head)
        offset = max(0, size - limit)
        offset += -offset % unit  # whole code units, within the limit
        handle.seek(offset)
        data = handle.read(max(0, size - offset))
    text = data.decode(codec, "replace")
    if offset == 0:
        text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if offset > 0:
        lines = lines[1:]
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines], len(data), offset > 0
