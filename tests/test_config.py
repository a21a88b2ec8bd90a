"""Configuration: every class of mistake gives a located, readable error."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batch_exporter.config import ConfigError, load_config, parse_config
from batch_exporter.units import parse_duration, parse_size

GOOD = textwrap.dedent("""\
    databases:
      payments:
        odbc: "DRIVER={PostgreSQL Unicode};SERVER=db1;UID=monitor;PWD=${PAY_DB_PASSWORD}"
        query_timeout: 10s
      local:
        sqlite: /var/lib/batch/runs.db
    batches:
      card-authorization:
        database: payments
        runs:
          table: batch_run
          columns: {run_id: run_id, business_date: biz_date, status: status, started_at: start_time, ended_at: end_time}
          status: {success: [OK], failed: [NG, ABEND], running: [RUN]}
          lookback: 14d
          timezone: Asia/Tokyo
        records:
          query: "SELECT state, COUNT(*) FROM auth_request WHERE run_id = ? GROUP BY state"
          pending_states: [AUTHORIZING]
        schedule: {cron: "0 2 * * *", timezone: Asia/Tokyo, grace: 15m}
        max_duration: 90m
        idempotent: false
        checks:
          double_authorized: {query: "SELECT COUNT(*) FROM auth_request WHERE n > 1", max: 0}
        logs:
          sdk: {path: 'D:\\vendor\\sdk\\auth.log', size_limit: 4GiB, encoding: cp932, patterns: {error: 'ERROR|FATAL'}}
          app: {path: 'D:\\batch\\logs\\auth-*.log', patterns: {error: ' ERROR ', exception: 'Exception'}}
    """)
ENV = {"PAY_DB_PASSWORD": "s3cret-pw"}


def errors_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "conf.yml", ENV if env is None else env, Path("/nonexistent"))
    return str(caught.value)


def test_design_example_is_valid() -> None:
    config = parse_config(GOOD, "conf.yml", ENV, Path("/"))
    batch = config.batches["card-authorization"]
    assert batch.runs is not None and batch.runs.lookback == 14 * 86400
    assert batch.max_duration == 5400
    assert batch.logs["sdk"].size_limit == 4 * 1024**3
    assert batch.logs["app"].size_limit == 4 * 1024**3  # the documented default
    assert config.databases["payments"].odbc is not None and "s3cret-pw" in config.databases["payments"].odbc
    assert config.log_poll_interval(batch.logs["app"]) == 10


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("lookback: 14d", "lookback: two weeks", "conf.yml:14: batches.card-authorization.runs.lookback: "
                                                 "expected a duration"),
        ("max_duration: 90m", "max_duraton: 90m", "conf.yml:20: batches.card-authorization.max_duraton: "
                                                  "unknown field"),
        ("size_limit: 4GiB", "size_limit: 4 gigs", "batches.card-authorization.logs.sdk.size_limit: "
                                                    "expected a size"),
        ("encoding: cp932", "encoding: klingon", "logs.sdk.encoding: unknown encoding 'klingon'"),
        ("encoding: cp932", "encoding: iso2022_jp", "logs.sdk.encoding: encoding 'iso2022_jp' is not supported"),
        ("timezone: Asia/Tokyo\n    records", "timezone: Mars/Olympus\n    records",
         "conf.yml:15: batches.card-authorization.runs.timezone: unknown time zone 'Mars/Olympus'"),
        ("database: payments", "database: paymnts",
         "conf.yml:9: batches.card-authorization.database: unknown database 'paymnts' (known: local, payments)"),
        ("cron: \"0 2 * * *\"", "cron: \"0 25 * * *\"", "conf.yml:19: batches.card-authorization.schedule.cron:"),
        ("error: 'ERROR|FATAL'", "error: 'ERROR|(FATAL'", "logs.sdk.patterns.error: not a valid regular expression"),
        ("max: 0}", "max: zero}", "checks.double_authorized.max: Input should be a valid number"),
        ("idempotent: false", "idempotent: maybe", "batches.card-authorization.idempotent:"),
        ("failed: [NG, ABEND]", "failed: [NG, OK]", "status value 'OK' is listed under both success and failed"),
        ("table: batch_run", "table: batch_run; DROP TABLE x", "runs.table: 'batch_run; DROP TABLE x' is not a "
                                                              "plain column or table name"),
        ("query_timeout: 10s", "query_timeout: 0s", "conf.yml:4: databases.payments.query_timeout: Input should be "
                                                    "greater than or equal to 0.1 (got 0.0)"),
        ("max_duration: 90m", "max_duration: 90m\n    poll_interval: 0",
         "batches.card-authorization.poll_interval: must be between 1s and 1h (got 0)"),
        ("max_duration: 90m", "max_duration: 90m\n    poll_interval: 2h",
         "batches.card-authorization.poll_interval: must be between 1s and 1h (got '2h')"),
        ("size_limit: 4GiB,", "size_limit: 4GiB, max_line_bytes: 0,",
         "batches.card-authorization.logs.sdk.max_line_bytes: must be between 256B and 16MiB (got 0)"),
    ],
)
def test_mistakes_are_located(replace: str, by: str, expected: str) -> None:
    assert replace in GOOD
    assert expected in errors_of(GOOD.replace(replace, by, 1))


def test_write_statement_rejected_at_load_with_location() -> None:
    text = GOOD.replace("SELECT COUNT(*) FROM auth_request WHERE n > 1", "DELETE FROM auth_request")
    message = errors_of(text)
    assert "conf.yml:23: batches.card-authorization.checks.double_authorized.query: " in message
    assert "only a single read-only SELECT is allowed" in message


def test_data_modifying_cte_rejected() -> None:
    text = GOOD.replace("SELECT COUNT(*) FROM auth_request WHERE n > 1",
                        "WITH d AS (DELETE FROM auth_request RETURNING 1) SELECT COUNT(*) FROM d")
    assert "checks.double_authorized.query: only a single read-only SELECT" in errors_of(text)


def test_records_query_needs_one_placeholder() -> None:
    text = GOOD.replace("WHERE run_id = ? GROUP BY state", "GROUP BY state")
    assert "records.query: expected exactly one '?' placeholder" in errors_of(text)


def test_missing_environment_variable_is_named_without_leaking() -> None:
    message = errors_of(GOOD, env={})
    assert "conf.yml:3: databases.payments.odbc: environment variable PAY_DB_PASSWORD is not set" in message


def test_secret_never_printed_in_errors() -> None:
    text = GOOD.replace("query_timeout: 10s", "query_timeout: 10s\n    bogus: 1").replace(
        "odbc: \"DRIVER", "odbc: [\"DRIVER").replace("${PAY_DB_PASSWORD}\"", "${PAY_DB_PASSWORD}\"]")
    message = errors_of(text)
    assert "databases.payments.odbc" in message
    assert "s3cret-pw" not in message


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    text = GOOD.replace("${PAY_DB_PASSWORD}", "${file:pw}")
    config_file = tmp_path / "c.yml"
    config_file.write_text(text)
    config = load_config(config_file, env={})
    assert config.databases["payments"].odbc is not None and config.databases["payments"].odbc.endswith("PWD=from-file")
    (tmp_path / "pw").unlink()
    with pytest.raises(ConfigError, match=r"c.yml:3: databases.payments.odbc: cannot read secret file"):
        load_config(config_file, env={})


def test_yaml_syntax_error_has_line() -> None:
    assert "conf.yml:3: not valid YAML" in errors_of("batches:\n  a: {runs: [\n  b: :\n")


def test_a_date_that_does_not_exist_is_a_located_error_not_a_crash() -> None:
    text = GOOD + "calendars:\n  bank:\n    closed: [2026-12-31, 2026-02-30]\n"
    message = errors_of(text)
    assert "calendars.bank.closed[1]: '2026-02-30' looks like a date but is none" in message
    assert "expected a real date, YYYY-MM-DD" in message


def test_duplicate_key_is_an_error() -> None:
    text = GOOD.replace("max_duration: 90m", "max_duration: 90m\n    max_duration: 10m")
    assert "conf.yml:21: batches.card-authorization.max_duration: duplicate key 'max_duration'" in errors_of(text)


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("lookback: 14d", "lookback: soon").replace("encoding: cp932", "encoding: nope")
    message = errors_of(text)
    assert "runs.lookback" in message and "logs.sdk.encoding" in message


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="batches: required field is missing"):
        load_config(empty)
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("1h30m", 5400), ("14d", 1209600),
                                               (45, 45), ("2w", 1209600)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", "1x", "m5", "-5s", True, "1h 30m"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(("text", "size"), [("4GiB", 4 * 1024**3), ("4GB", 4 * 10**9), ("64KiB", 65536),
                                            (1024, 1024), ("1.5MiB", 1572864)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_exporter.cli", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PAY_DB_PASSWORD": "s3cret-pw"})


def test_check_config_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(GOOD)
    result = _cli("check-config", "-c", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "s3cret-pw" not in result.stdout + result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("lookback: 14d", "lookback: 14 days"))
    result = _cli("check-config", "-c", str(bad))
    assert result.returncode == 1
    assert f"{bad}:14: batches.card-authorization.runs.lookback: expected a duration" in result.stderr


def test_schema_command_prints_json_schema() -> None:
    result = _cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "batch-exporter configuration"
    assert "batches" in schema["properties"] and "global" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_malformed_odbc_string_is_located_and_not_echoed() -> None:
    text = GOOD.replace('odbc: "DRIVER={PostgreSQL Unicode};', 'odbc: "DRIVER={PostgreSQL Unicode;')
    message = errors_of(text)
    assert "conf.yml:3: databases.payments: ODBC connection string: '{' at character 7 is never closed" in message
    assert "s3cret-pw" not in message


def test_numeric_status_codes_compare_like_database_values() -> None:
    text = GOOD.replace("status: {success: [OK], failed: [NG, ABEND], running: [RUN]}",
                        "status: {success: [1.0], failed: [9], running: [R]}")
    runs = parse_config(text, "conf.yml", ENV, Path("/")).batches["card-authorization"].runs
    assert runs is not None
    assert (runs.status.success, runs.status.failed, runs.status.running) == (["1"], ["9"], ["R"])


def test_check_config_ends_when_a_database_never_answers_and_closing_it_would_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepted the connection and then went silent: the probe is abandoned at the command's
    deadline, and the stuck connection is not closed from the main thread (a driver blocks there)."""
    import threading
    from collections.abc import Sequence

    from batch_exporter import cli
    from batch_exporter.config import Config
    from batch_exporter.database import Database

    released = threading.Event()

    class Silent(Database):
        name = "main"

        def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
            released.wait(60)
            return []

        def close(self) -> None:
            released.wait(60)  # as a driver does while another thread is inside a call on the connection

    def silent_databases(config: Config) -> dict[str, Database]:
        return {"main": Silent()}

    config = parse_config(textwrap.dedent(f"""
        databases:
          main: {{sqlite: '{tmp_path / "runs.db"}', connect_timeout: 1s, query_timeout: 1s}}
        batches:
          b:
            database: main
            runs: {{table: job_runs, status: {{success: [OK], failed: [NG]}}}}
        """), "exporter.yml")
    monkeypatch.setattr(cli, "open_databases", silent_databases)
    result: list[list[str]] = []
    probing = threading.Thread(target=lambda: result.append(cli._probe_run_tables(config)), daemon=True)
    try:
        probing.start()
        probing.join(30)
        assert not probing.is_alive(), "check-config hung on a silent database"
        assert result == [[]]  # not a located error: the columns could not be checked now
    finally:
        released.set()


@pytest.mark.parametrize(("where", "message"), [
    ("1=1) OR (1=1", "closes a parenthesis it did not open"),
    ("job_name = 'x' --", "a '--' comment"),
    ("job_name = 'x'; DELETE FROM batch_run", "a ';'"),
    ("(job_name = 'x'", "unbalanced parentheses"),
])
def test_a_where_that_escapes_its_parentheses_or_comments_out_the_rest_is_refused(where: str, message: str) -> None:
    # the statements put `where` inside parentheses before the lookback bound: `1=1) OR (1=1` would remove
    # the bound (the whole table read on every poll), a trailing `--` would break every poll
    text = GOOD.replace("      table: batch_run\n", f"      table: batch_run\n      where: {json.dumps(where)}\n")
    assert text != GOOD
    assert message in errors_of(text)
