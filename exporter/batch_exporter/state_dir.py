"""Where the log scans keep their read positions: the configured folder or a per-platform default,
created and tried for writing before any source starts.

Without a state folder a restart reads every log from its start again: old error lines are counted
a second time and the counters start over. So there is always one, chosen in this order:

1. `global.state_dir` in the configuration;
2. `$BATCH_EXPORTER_STATE_DIR` (set by the systemd unit and the container image; tests and the demo
   use it to stay out of the real folders);
3. on Windows `%ProgramData%\\batch-exporter\\state`;
4. `$STATE_DIRECTORY`, which systemd 240 and later sets from `StateDirectory=`;
5. running as root: `/var/lib/batch-exporter`;
6. any other user: `$XDG_STATE_HOME/batch-exporter`, or `~/.local/state/batch-exporter`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

ENV_VAR = "BATCH_EXPORTER_STATE_DIR"
SERVICE_DIR = "/var/lib/batch-exporter"

_HOW_TO_SET = (f"set global.state_dir (or ${ENV_VAR}) to a folder the exporter's user can write; without one "
               "a restart would count old log lines again")


class StateDirError(Exception):
    """The state folder cannot be used; the message names the folder, why, and how to choose another."""


@dataclass(frozen=True)
class StateDir:
    path: PurePath
    origin: str  # where the choice came from, as check-config and the start-up log show it

    def describe(self) -> str:
        return f"{self.path} ({self.origin})"


def resolve(configured: str | None, env: Mapping[str, str] | None = None, platform: str = os.name,
            euid: int | None = None) -> StateDir:
    """The folder to use; pure apart from reading the environment and the user id by default."""
    env = os.environ if env is None else env
    if configured:
        return StateDir(Path(configured), "global.state_dir")
    if env.get(ENV_VAR):
        return StateDir(Path(env[ENV_VAR]), f"${ENV_VAR}")
    if platform == "nt":
        program_data = env.get("ProgramData") or env.get("PROGRAMDATA") or r"C:\ProgramData"
        return StateDir(PureWindowsPath(program_data, "batch-exporter", "state"),
                        r"default on Windows: %ProgramData%\batch-exporter\state")
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return StateDir(PurePosixPath(systemd), "default: $STATE_DIRECTORY, the systemd unit's StateDirectory=")
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    if euid == 0:
        return StateDir(PurePosixPath(SERVICE_DIR), "default when running as root")
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg.startswith("/"):  # the XDG spec says to ignore a relative value
        return StateDir(PurePosixPath(xdg, "batch-exporter"), "default: $XDG_STATE_HOME/batch-exporter")
    home = env.get("HOME")
    if not home:
        raise StateDirError(f"no state folder: there is no home folder for ~/.local/state; {_HOW_TO_SET}")
    return StateDir(PurePosixPath(home, ".local", "state", "batch-exporter"),
                    "default: ~/.local/state/batch-exporter")


def prepare(state_dir: StateDir) -> Path:
    """Create the folder if missing (owner-only) and prove that a file can be written in it.

    Raises StateDirError. Root is refused a folder that belongs to another user: the state files it
    would leave there are unreadable to that user (the service), whose next start would then count
    every old line again.
    """
    path = Path(state_dir.path)
    where = f"state_dir {state_dir.describe()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(f"{where} is not a folder; {_HOW_TO_SET}") from None
    except OSError as exc:
        raise StateDirError(f"{where} cannot be created: {exc.strerror or exc}; {_HOW_TO_SET}") from None
    _refuse_root_in_foreign_folder(path, where)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
    except OSError as exc:
        raise StateDirError(f"{where} is not writable: {exc.strerror or exc}; {_HOW_TO_SET}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return path


def _refuse_root_in_foreign_folder(path: Path, where: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    owner = path.stat().st_uid
    if owner != 0:
        raise StateDirError(
            f"{where} belongs to uid {owner}, and files root writes there would be unreadable to that user; "
            f"run as that user (e.g. `sudo -u batch-exporter ...`), or set global.state_dir (or ${ENV_VAR}) "
            "to a folder of root's own")


def inspect(state_dir: StateDir) -> str:
    """What `prepare` would find, for check-config: read-only, since the file may be checked by
    another user or on another host than the service's."""
    path = Path(state_dir.path)
    if path.is_dir():
        verdict = "writable" if os.access(path, os.W_OK | os.X_OK) else "NOT writable by this user"
    elif path.exists():
        verdict = "NOT a folder"
    else:
        parent = next((p for p in path.parents if p.exists()), None)
        creatable = parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
        verdict = "missing, created at start" if creatable else "missing, and NOT creatable by this user"
    return f"{state_dir.describe()}: {verdict}"
