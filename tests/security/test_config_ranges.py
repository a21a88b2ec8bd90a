"""Issue 11, item 8: values that used to pass check-config and then fail at run time are refused by
check-config, located (file:line: dotted.path), and their range is in `batch-exporter schema`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .attacks import EXPORTER, Outcome, run_exporter

LONG = "n" * 5000


def _config(folder: Path, *, batch: str = "b", log: str = "app", log_fields: str = "",
            global_fields: str = "") -> Path:
    path = folder / "ranges.yml"
    path.write_text(
        "global:\n"
        f"  log_poll_interval: 10s\n{global_fields}"
        "batches:\n"
        f"  {batch}:\n"
        "    logs:\n"
        f"      {log}:\n"
        f"        path: {json.dumps(str(folder / 'app.log'))}\n{log_fields}",
        encoding="utf-8",
    )
    return path


def _check(path: Path) -> Outcome:
    return run_exporter("check-config", path, timeout=60)


@pytest.mark.parametrize(("fields", "line", "where", "message"), [
    ({"log_fields": "        max_line_bytes: 0\n"}, 8, "batches.b.logs.app.max_line_bytes",
     "must be between 256B and 16MiB (got 0)"),
    ({"log_fields": "        max_line_bytes: 1GiB\n"}, 8, "batches.b.logs.app.max_line_bytes",
     "must be between 256B and 16MiB (got '1GiB')"),
    ({"log_fields": "        max_line_bytes: 3GiB\n"}, 8, "batches.b.logs.app.max_line_bytes",
     "must be between 256B and 16MiB (got '3GiB')"),
    ({"log_fields": "        poll_interval: 0.000001s\n"}, 8, "batches.b.logs.app.poll_interval",
     "must be between 1s and 1h (got '0.000001s')"),
    ({"global_fields": "  poll_interval: 0.000001s\n"}, 3, "global.poll_interval",
     "must be between 1s and 1h (got '0.000001s')"),
    ({"batch": '"card auth"'}, 5, "batches.'card auth'.[key]", "expected a name of 1 to 63 letters"),
    ({"batch": '"card\\nauth"'}, 5, "batches.'card\\nauth'.[key]", "expected a name of 1 to 63 letters"),
    ({"log": '"app log"'}, 7, "batches.b.logs.'app log'.[key]", "expected a name of 1 to 63 letters"),
    ({"log": f"? {LONG}\n      "}, 8, "batches.b.logs.'" + "n" * 39 + "... (5000 characters).[key]",
     "expected a name of 1 to 63 letters"),
])
def test_check_config_refuses_values_that_fail_later(tmp_path: Path, fields: dict[str, str], line: int,
                                                      where: str, message: str) -> None:
    config = _config(tmp_path, **fields)
    outcome = _check(config)
    # a bad name is located at the first line of its entry (yamlsource's line of the mapping)
    assert outcome.code != 0, outcome.output
    assert f"ranges.yml:{line}: {where}" in outcome.output and message in outcome.output
    assert LONG not in outcome.output and "Traceback" not in outcome.output


def test_the_edges_of_each_range_are_accepted(tmp_path: Path) -> None:
    fields = "        max_line_bytes: 256B\n        poll_interval: 1h\n"
    assert _check(_config(tmp_path, log_fields=fields, global_fields="  poll_interval: 1s\n")).code == 0
    name = "a" * 63
    assert _check(_config(tmp_path, batch=name, log="x.y-z_1", log_fields="        max_line_bytes: 16MiB\n")).code == 0


def test_the_schema_documents_each_range() -> None:
    done = subprocess.run([*EXPORTER, "schema"], capture_output=True, text=True, timeout=60, check=True)
    defs = json.loads(done.stdout)["$defs"]
    assert "256B to 16MiB" in defs["LogConfig"]["properties"]["max_line_bytes"]["description"]
    for model, field in [("LogConfig", "poll_interval"), ("BatchConfig", "poll_interval"),
                         ("GlobalConfig", "poll_interval"), ("GlobalConfig", "log_poll_interval")]:
        assert "1s to 1h" in defs[model]["properties"][field]["description"]
    for model, field in [("Config", "batches"), ("BatchConfig", "logs"), ("BatchConfig", "checks")]:
        properties = json.loads(done.stdout)["properties"] if model == "Config" else defs[model]["properties"]
        assert "1 to 63 letters" in properties[field]["description"]


@pytest.mark.parametrize("example", ["deploy/windows/config.yml",
                                     "exporter/batch_exporter/practice/demo_data/demo.yml"])
def test_shipped_examples_stay_within_the_ranges(example: str) -> None:
    root = Path(__file__).resolve().parents[2]
    from batch_exporter.config import parse_config
    env = {"DB_PASSWORD": "x", "DEMO_DIR": "/tmp/demo"}
    parse_config((root / example).read_text(encoding="utf-8"), example, env=env)


@pytest.mark.parametrize("value", ["100000d", "0.0001s"])
def test_a_query_timeout_the_server_cannot_take_is_refused(tmp_path: Path, value: str) -> None:
    # 100000 days overflows PostgreSQL's statement_timeout (every connect then fails); 0.1 ms stops every query
    config = tmp_path / "c.yml"
    config.write_text(f"databases:\n  main: {{sqlite: {tmp_path / 'r.db'}, query_timeout: {value}}}\n"
                      "batches:\n  b:\n    database: main\n    checks:\n      c: {query: 'SELECT 1'}\n",
                      encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "check-config", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "databases.main.query_timeout" in result.stderr and "Traceback" not in result.stderr
