"""Run `batch-exporter check-config` and `once` as processes on a config written for an attack."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXPORTER = [sys.executable, "-m", "batch_exporter.cli"]


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str


def write_config(folder: Path, odbc: str, batch_yaml: str) -> Path:
    """A config with database `db` at `odbc` and batch `b` given as YAML lines (indented by 4)."""
    path = folder / "attack.yml"
    path.write_text(
        "databases:\n"
        f"  db:\n    odbc: {json.dumps(odbc)}\n    query_timeout: 5s\n"
        "batches:\n"
        "  b:\n"
        "    database: db\n" + batch_yaml,
        encoding="utf-8",
    )
    return path


def run_exporter(command: str, config: Path, timeout: float = 60) -> Outcome:
    done = subprocess.run(
        [*EXPORTER, command, "-c", str(config)], capture_output=True, text=True, timeout=timeout, check=False
    )
    return Outcome(done.returncode, done.stdout + done.stderr)


def yaml_text(value: str) -> str:
    """A YAML scalar holding `value` exactly, control characters included."""
    return json.dumps(value)
