"""Issue 11 item 3: a log file whose name is not valid UTF-8 (Shift-JIS bytes copied from a Windows
server) never breaks the exposition, `once` or the state file; its label shows the bytes as \\xNN."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from exporter_process import run_once, running_exporter, value

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names are arbitrary bytes on Linux only")

SJIS_NAME = b"\x83\x65\x83\x58\x83\x67.log"  # "テスト.log" in Shift-JIS: not valid UTF-8
SHOWN = "\\x83e\\x83X\\x83g.log"  # what the path label holds


def _setup(tmp_path: Path) -> tuple[Path, bytes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    sjis = os.fsencode(logs) + b"/" + SJIS_NAME
    with open(sjis, "wb") as f:
        f.write(b"start\nERROR one\nend\n")
    (logs / "plain.log").write_bytes(b"ok\n")
    config = tmp_path / "config.yml"
    config.write_text(
        "global:\n  log_poll_interval: 1s\n"
        "batches:\n  card-auth:\n    logs:\n      app:\n"
        f"        path: '{logs}/*.log'\n"
        "        patterns: {error: ERROR}\n"
    )
    return config, sjis


def test_once_exports_the_name_escaped(tmp_path: Path) -> None:
    config, _ = _setup(tmp_path)
    code, out, err = run_once(config)
    assert code == 0, err
    assert "Traceback" not in err
    assert f'path="{tmp_path}/logs/{SHOWN}"'.replace("\\", "\\\\") in out  # exposition escapes "\"
    assert 'batch_log_lines_total{batch="card-auth",log="app"} 4.0' in out


def test_served_exposition_and_state_file_survive_the_name(tmp_path: Path) -> None:
    config, sjis = _setup(tmp_path)
    state_dir = tmp_path / "state"
    env = {"BATCH_EXPORTER_STATE_DIR": str(state_dir)}
    labels = {"batch": "card-auth", "log": "app"}
    with running_exporter(config, tmp_path, env=env) as exporter:
        series = exporter.wait_for(lambda s: value(s, "batch_log_lines_total", **labels) == 4,
                                   what="4 lines counted")
        assert value(series, "batch_log_file_size_bytes", path=f"{tmp_path}/logs/{SHOWN}", **labels) == 20
        assert value(series, "batch_log_matches_total", pattern="error", **labels) == 1
        assert value(series, "batch_exporter_source_up", source="logscan:card-auth/app") == 1
        assert value(series, "batch_exporter_source_up", source="logfiles:card-auth/app") == 1
    saved = list(state_dir.glob("logscan-*.json"))
    assert len(saved) == 1
    records = {r["path"]: r.get("path_bytes") for r in json.loads(saved[0].read_bytes())["files"]}
    assert records[f"{tmp_path}/logs/{SHOWN}"] == sjis.hex()

    # While the exporter is down the Shift-JIS file grows: a restart resumes it, not re-reads it.
    with open(sjis, "ab") as f:
        f.write(b"ERROR two\nmore\n")
    with running_exporter(config, tmp_path, env=env) as exporter:
        series = exporter.wait_for(lambda s: value(s, "batch_log_lines_total", **labels) is not None,
                                   what="the log counted")
        assert value(series, "batch_log_lines_total", **labels) == 6
        assert value(series, "batch_log_matches_total", pattern="error", **labels) == 2
        assert value(series, "batch_log_rotations_total", **labels) == 0
