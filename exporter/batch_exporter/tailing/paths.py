"""Expanding a configured log path: a plain path, or a glob in its file name part."""

from __future__ import annotations

import fnmatch
import os
import re

_MAGIC = re.compile(r"[*?\[]")


def is_glob(path: str) -> bool:
    """True when the file name part holds a wildcard (`*`, `?` or `[...]`)."""
    return bool(_MAGIC.search(os.path.basename(path)))


def expand(path: str) -> list[str]:
    """The regular files a configured path names now, sorted.

    A plain path is returned as it is (whether it exists is for the caller's stat to find out). In a
    glob only the file name part is a pattern, so a directory named `logs[old]` is taken literally;
    names compare case-insensitively on Windows. A missing directory means no files; any other
    failure to list it (permissions) raises OSError. An entry that cannot be examined is returned,
    so that the caller's `stat` reports it.
    """
    if not is_glob(path):
        return [path]
    directory, pattern = os.path.split(path)
    try:
        entries = list(os.scandir(directory or os.curdir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if fnmatch.fnmatch(entry.name, pattern):
            try:
                member = entry.is_file()  # a vanished entry is simply False
            except OSError:
                # It could not be examined (EIO, ESTALE): leaving it out would make a followed file
                # look deleted. The caller's stat reports what is wrong and drops a non-file.
                member = True
            if member:
                found.append(os.path.join(directory, entry.name))
    return sorted(found)
