"""Which file is which: identity that survives a rename, and a fingerprint of a file's first bytes.

Identity is the pair (device, file number) that `os.stat` reports:

- POSIX: `st_dev` and the inode number `st_ino`.
- Windows: Python fills `st_dev` with the volume serial number and `st_ino` with the file index
  (the NTFS file reference number) from GetFileInformationByHandle. It stays the same when the
  file is renamed or moved within the volume, and changes when the file is copied, or deleted and
  created again. On ReFS the file id is 128 bits wide; where Python reports only 64 of them, the
  head fingerprint below still tells two files apart.

A number can be reused: delete a log and the next new file may get its inode. The fingerprint (a
hash of the first bytes already read) catches that, and also a log that was truncated and written
again past the old read position: when the first bytes differ, the file is read again from its start.

Log files are opened only for the length of a poll. On Windows they are opened with
FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, so that the writer can still append,
rename or delete the log while it is being read (Python's own `open` does not share delete).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from dataclasses import dataclass

HEAD_BYTES = 1024


@dataclass(frozen=True)
class Identity:
    device: int
    number: int


def identity_of(st: os.stat_result) -> Identity:
    return Identity(device=st.st_dev, number=st.st_ino)


@dataclass(frozen=True)
class Fingerprint:
    """Hash of a file's first `length` bytes (no log text is kept, only the hash)."""

    length: int
    digest: str

    @classmethod
    def of(cls, head: bytes) -> Fingerprint:
        return cls(length=len(head), digest=hashlib.blake2b(head, digest_size=16).hexdigest())


def read_head(f: io.FileIO, length: int) -> bytes:
    """The first `length` bytes of an open file (fewer if it is shorter)."""
    f.seek(0)
    parts: list[bytes] = []
    remaining = length
    while remaining > 0:
        part = f.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def open_shared(path: str) -> io.FileIO:
    """Open a log for reading without stopping its writer from renaming or deleting it."""
    if os.name != "nt":
        return io.FileIO(path, "rb")
    return io.FileIO(_open_windows_shared(path), "rb", closefd=True)


def _open_windows_shared(path: str) -> int:  # pragma: no cover - Windows only
    if sys.platform != "win32":  # never true (see open_shared); mypy then checks what follows for Windows only
        raise NotImplementedError("shared open is for Windows")
    import ctypes
    import msvcrt
    from ctypes import wintypes

    generic_read = 0x80000000
    share_all = 0x00000001 | 0x00000002 | 0x00000004  # FILE_SHARE_READ | WRITE | DELETE
    open_existing = 3
    file_attribute_normal = 0x80
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    create_file = kernel32.CreateFileW
    create_file.argtypes = [
        wintypes.LPCWSTR,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.LPVOID,
        wintypes.DWORD,
        wintypes.DWORD,
        wintypes.HANDLE,
    ]
    create_file.restype = wintypes.HANDLE
    handle = create_file(path, generic_read, share_all, None, open_existing, file_attribute_normal, None)
    if handle is None or handle == wintypes.HANDLE(-1).value:
        error = ctypes.get_last_error()
        # OSError maps the Windows error code to the matching subclass (FileNotFoundError, ...).
        raise OSError(None, ctypes.FormatError(error), path, error)
    try:
        return msvcrt.open_osfhandle(handle, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        kernel32.CloseHandle(handle)
        raise
