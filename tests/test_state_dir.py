"""The log state folder is a default: chosen per platform, created at start, and a folder that cannot be
used stops the start (or refuses a reload) with a message that names it; a restarted exporter process
resumes its counts from there."""
from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from batch_exporter.app import Exporter
from batch_exporter.config import parse_config
from batch_exporter.state_dir import ENV_VAR, StateDirError, inspect, prepare, resolve
from exporter_process import ExporterProcess, Series, running_exporter, value

ERROR = {"batch": "auth", "log": "app", "pattern": "error"}
LINES = {"batch": "auth", "log": "app"}


def _config_text(log: Path, state_dir: Path | None = None) -> str:
    head = "global:\n  log_poll_interval: 1s\n" + (f"  state_dir: '{state_dir}'\n" if state_dir else "")
    return head + f"batches:\n  auth:\n    logs:\n      app: {{path: '{log}', patterns: {{error: ' ERROR '}}}}\n"


# --- which folder --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("configured", "env", "platform", "euid", "expected"), [
    ("/srv/state", {ENV_VAR: "/env/state", "STATE_DIRECTORY": "/var/lib/x"}, "posix", 0, PurePosixPath("/srv/state")),
    (None, {ENV_VAR: "/env/state", "STATE_DIRECTORY": "/var/lib/x"}, "posix", 0, PurePosixPath("/env/state")),
    (None, {"ProgramData": r"D:\ProgramData"}, "nt", None, PureWindowsPath(r"D:\ProgramData\batch-exporter\state")),
    (None, {}, "nt", None, PureWindowsPath(r"C:\ProgramData\batch-exporter\state")),
    (None, {"STATE_DIRECTORY": "/var/lib/batch-exporter:/var/lib/other", "HOME": "/h"}, "posix", 999,
     PurePosixPath("/var/lib/batch-exporter")),
    (None, {"HOME": "/root"}, "posix", 0, PurePosixPath("/var/lib/batch-exporter")),
    (None, {"XDG_STATE_HOME": "/h/.st", "HOME": "/h"}, "posix", 1000, PurePosixPath("/h/.st/batch-exporter")),
    (None, {"XDG_STATE_HOME": "relative", "HOME": "/h"}, "posix", 1000,
     PurePosixPath("/h/.local/state/batch-exporter")),
    (None, {ENV_VAR: "", "HOME": "/h"}, "posix", 1000, PurePosixPath("/h/.local/state/batch-exporter")),
])
def test_the_folder_is_chosen_in_order(configured: str | None, env: dict[str, str], platform: str,
                                       euid: int | None, expected: object) -> None:
    chosen = resolve(configured, env=env, platform=platform, euid=euid)
    assert chosen.path == expected
    assert str(expected) in chosen.describe()


def test_no_home_and_no_setting_is_a_clear_error() -> None:
    with pytest.raises(StateDirError, match=r"global\.state_dir"):
        resolve(None, env={}, platform="posix", euid=1000)


# --- making it ready -----------------------------------------------------------------------------------


def test_a_missing_folder_is_created_for_the_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state"
    assert prepare(resolve(str(target), env={})) == target
    assert stat.S_IMODE(target.stat().st_mode) & 0o077 == 0
    assert list(target.iterdir()) == []  # the write test leaves nothing behind


@pytest.mark.parametrize("make", ["file", "file_parent"])
def test_an_unusable_folder_names_itself_why_and_the_setting(tmp_path: Path, make: str) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    target = tmp_path / "blocker" if make == "file" else tmp_path / "blocker" / "state"
    with pytest.raises(StateDirError) as caught:
        prepare(resolve(str(target), env={}))
    message = str(caught.value)
    assert str(target) in message and "global.state_dir" in message and ENV_VAR in message
    assert ("is not a folder" if make == "file" else "cannot be created: Not a directory") in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to own folders")
def test_root_is_refused_the_service_users_folder(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.mkdir()
    os.chown(target, 12345, 12345)
    with pytest.raises(StateDirError, match="belongs to uid 12345"):
        prepare(resolve(str(target), env={}))
    assert list(target.iterdir()) == []


# --- in the exporter -----------------------------------------------------------------------------------


def _counts(exporter: Exporter) -> tuple[float | None, float | None]:
    from exporter_process import parse_exposition

    assert exporter.poller.poll_all_once()
    series = parse_exposition(exporter.store.payload()[0].decode())
    return value(series, "batch_log_lines_total", **LINES), value(series, "batch_log_matches_total", **ERROR)


def test_without_state_dir_a_new_exporter_resumes_from_the_default(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "default-state"
    monkeypatch.setenv(ENV_VAR, str(default))
    log = tmp_path / "app.log"
    log.write_text("01 ERROR a\n02 INFO b\n")
    config = parse_config(_config_text(log), "exporter.yml")
    first = Exporter(config)
    try:
        assert _counts(first) == (2, 1)
    finally:
        first.stop()
    log.unlink()  # rotated away: a start that read only the new file would see the counter fall
    log.write_text("03 ERROR c\n")
    second = Exporter(config)
    try:
        assert _counts(second) == (3, 2)
    finally:
        second.stop()
    assert any(default.iterdir())


def test_a_configuration_without_logs_needs_no_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "blocker" / "state"))
    (tmp_path / "blocker").write_text("not a folder")
    config = parse_config("batches:\n  b:\n    schedule: {cron: '0 1 * * *'}\n", "exporter.yml")
    Exporter(config).stop()


def test_an_unusable_state_folder_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "blocker" / "state"))
    (tmp_path / "blocker").write_text("not a folder")
    config = parse_config(_config_text(tmp_path / "app.log"), "exporter.yml")
    with pytest.raises(StateDirError, match=r"blocker/state \(\$BATCH_EXPORTER_STATE_DIR\) cannot be created"):
        Exporter(config)


# --- a real process, stopped and started again ----------------------------------------------------------

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP and STATE_DIRECTORY are POSIX only")


def _wait_counts(exporter: ExporterProcess, lines: int, errors: int) -> Series:
    return exporter.wait_for(
        lambda s: (value(s, "batch_log_lines_total", **LINES), value(s, "batch_log_matches_total", **ERROR))
        == (lines, errors),
        what=f"{lines} lines and {errors} errors")


def _wait_polls(exporter: ExporterProcess, source: str, polls: int) -> Series:
    """Scrape until `source` has finished `polls` more polls than the first scrape shows."""
    series = exporter.scrape()
    for _ in range(polls):
        seen = value(series, "batch_exporter_source_last_success_timestamp_seconds", source=source)
        series = exporter.wait_for(
            lambda s, seen=seen: (value(s, "batch_exporter_source_last_success_timestamp_seconds", source=source)
                                  or 0) > (seen or 0),
            what=f"another poll of {source}")
    return series


@posix_only
def test_a_restarted_process_counts_the_lines_written_while_it_was_down_once(tmp_path: Path) -> None:
    """The systemd default ($STATE_DIRECTORY) with no state_dir in the file: a restart neither counts
    the old error lines again (the rotated file's ones included) nor misses the one written while down."""
    log = tmp_path / "app.log"
    log.write_text("01 ERROR a\n02 ERROR b\n03 INFO c\n")
    config = tmp_path / "exporter.yml"
    config.write_text(_config_text(log))
    state = tmp_path / "var-lib"
    env = {"STATE_DIRECTORY": str(state), ENV_VAR: ""}

    with running_exporter(config, tmp_path, env=env) as first:
        _wait_counts(first, 3, 2)
        log.rename(tmp_path / "app.log.1")
        log.write_text("04 ERROR d\n")
        series = _wait_counts(first, 4, 3)
        assert value(series, "batch_log_rotations_total", **LINES) == 1
    assert any(state.iterdir())

    with log.open("a") as f:  # while the exporter is stopped
        f.write("05 INFO e\n06 ERROR f\n")
    restarted_at = time.time()
    with running_exporter(config, tmp_path, env=env) as second:
        series = _wait_counts(second, 6, 4)
        series = _wait_polls(second, "logscan:auth/app", 2)  # two more polls: nothing is added twice
        assert (value(series, "batch_log_lines_total", **LINES), value(series, "batch_log_matches_total", **ERROR)) \
            == (6, 4)
        assert value(series, "batch_log_rotations_total", **LINES) == 1
        last_match = value(series, "batch_log_last_match_timestamp_seconds", **ERROR)
        assert last_match is not None and last_match >= restarted_at  # when it was read, not written

    with running_exporter(config, tmp_path, env=env) as third:
        series = _wait_counts(third, 6, 4)
        assert value(series, "batch_log_last_match_timestamp_seconds", **ERROR) == last_match  # restored


@posix_only
def test_a_bad_state_folder_fails_the_start_and_a_reload_keeps_the_running_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("01 ERROR a\n")
    (tmp_path / "blocker").write_text("not a folder")
    bad = tmp_path / "blocker" / "state"
    config = tmp_path / "exporter.yml"
    config.write_text(_config_text(log, bad))
    with pytest.raises(AssertionError, match="exporter exited") as caught, \
            running_exporter(config, tmp_path, env={ENV_VAR: ""}):
        pass
    assert f"state_dir {bad} (global.state_dir) cannot be created" in str(caught.value)

    config.write_text(_config_text(log, tmp_path / "state"))
    with running_exporter(config, tmp_path, env={ENV_VAR: ""}) as exporter:
        _wait_counts(exporter, 1, 1)
        config.write_text(_config_text(log, bad))
        os.kill(exporter.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reload failed" not in exporter.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"state_dir {bad} (global.state_dir) cannot be created" in exporter.log()
        with log.open("a") as f:
            f.write("02 ERROR b\n")
        _wait_counts(exporter, 2, 2)  # the previous configuration goes on counting
        assert exporter.proc.poll() is None


def test_inspect_tells_what_the_start_would_find_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    (tmp_path / "ready").mkdir()
    cases = {"ready": "writable", "blocker": "NOT a folder", "new/state": "missing, created at start",
             "blocker/state": "missing, and NOT creatable by this user"}
    for name, verdict in cases.items():
        text = inspect(resolve(str(tmp_path / name), env={}))
        assert text == f"{tmp_path / name} (global.state_dir): {verdict}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "ready"]
