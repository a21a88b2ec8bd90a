"""Expanding a configured log path: a plain path, or a glob in its file name part; and showing a
file name that is not valid UTF-8."""

from __future__ import annotations

import fnmatch
import os
import re

_MAGIC = re.compile(r"[*?\[]")


def is_glob(path: str) -> bool:
    """True when the file name part holds a wildcard (`*`, `?` or `[...]`)."""
    return bool(_MAGIC.search(os.path.basename(path)))


def expand(path: str, follow_symlinks: bool = True) -> list[str]:
    """The regular files a configured path names now, sorted.

    A plain path is returned as it is (whether it exists is for the caller's stat to find out). In a
    glob only the file name part is a pattern, so a directory named `logs[old]` is taken literally;
    names compare case-insensitively on Windows. A missing directory means no files; any other
    failure to list it (permissions) raises OSError. An entry that cannot be examined is returned,
    so that the caller's `stat` reports it. Without `follow_symlinks` a member that is a symbolic
    link is left out (a plain path is returned: the caller's `lstat` finds it is no regular file).
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
                member = entry.is_file(follow_symlinks=follow_symlinks)  # a vanished entry is simply False
            except OSError:
                # It could not be examined (EIO, ESTALE): leaving it out would make a followed file
                # look deleted. The caller's stat reports what is wrong and drops a non-file.
                member = True
            if member:
                found.append(os.path.join(directory, entry.name))
    return sorted(found)


def label(path: str) -> str:
    """The path as valid UTF-8 text for a label, a message or a state file.

    File names are bytes on Linux, and a name in another encoding (Shift-JIS copied from Windows)
    reaches Python with its undecodable bytes as lone surrogates, which no UTF-8 output accepts.
    Those bytes are shown as `\\xNN` (Python's backslashreplace); every other character, a
    backslash included, is kept as it is, so valid names (Windows paths too) are unchanged.
    """
    if is_text(path):
        return path
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_text(path: str) -> bool:
    """True when the path holds no undecodable byte (it encodes to UTF-8 as it is)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
