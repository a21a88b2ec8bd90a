"""Every example of docs/ runs as written, or says what it needs first (issue 9, item 10).

tests/test_operators_guide.py runs the guide's shell commands: check-config of every example file, and
`once` of the SQLite example against a sandbox copy of its run table. This file runs the rest:

- the SQLite example exactly as written where its database is not there: the error names the file;
- the PostgreSQL and MariaDB examples against the real servers: the guide's CREATE TABLE and GRANT
  statements as written (but for the database's name and the account's host), then check-config and
  `once` as the guide's read-only account, with the example changed only where it names this machine's
  places (server, database, TLS mode, log folder, state folder);
- the SQL Server example cannot run here: it says so, and check-config is all the suite does with it;
- docs/logs.md's configuration passes check-config; docs/practise.md's SQL runs on the demo database
  and its commands parse;
- every fenced block of docs/*.md is accounted for, by a test or as output.

Run tables hold fixed instants; `once` runs under faketime at NOW, in UTC whatever the machine's zone.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from batch_exporter.cli import build_parser
from batch_exporter.config import parse_config
from batch_exporter.database import open_database
from batch_exporter.practice.demo import create_demo
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.runs import RunsSource
from db_servers import admin_connection, odbc_connection_string, requires_odbc, unique_name
from exporter_process import Series, parse_exposition, value

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GUIDE = DOCS / "operators-guide.md"
EXAMPLES = DOCS / "examples"
VENV_BIN = Path(sys.executable).parent
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
TOKYO = ZoneInfo("Asia/Tokyo")
BATCH = "card-authorization"


# --- reading the documents -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: ```{self.lang}"


def fenced_blocks(doc: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[index])
        if match:
            end = index + 1
            while not lines[end].startswith("```"):
                end += 1
            blocks.append(Block(doc, index + 1, match.group(1), "\n".join(lines[index + 1:end]) + "\n"))
            index = end
        index += 1
    return blocks


def section(doc: Path, heading: str) -> str:
    """The text from `heading` to the next heading of the same or a higher level."""
    text = doc.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    ends = [m.start() for m in re.finditer(r"\n(#+) ", text[start + 1:]) if len(m.group(1)) <= len(level)]
    return text[start:start + 1 + ends[0]] if ends else text[start:]


def sql_after(doc: Path, heading: str, lead: str = "") -> str:
    """The first ```sql block of a section, or the first one after the line starting with `lead` there."""
    text = section(doc, heading)
    if lead:
        text = text[text.index(f"\n{lead}"):]
    match = re.search(r"```sql\n(.*?)```", text, re.S)
    assert match, f"no SQL block under {heading!r} {lead!r}"
    return match.group(1)


def statements(sql: str) -> list[str]:
    """The statements of a block; its comments are dropped, its quoted text has no ';'."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def described_table(example: Path, name: str) -> str:
    """CREATE TABLE for a table an example's header describes as `name(col TYPE, ...)`."""
    text = example.read_text(encoding="utf-8")
    match = re.search(rf"^#\s+{re.escape(name)}\((.*?)\)\s*$", text, re.M)
    assert match, f"{example.relative_to(REPO)} does not describe {name}"
    return f"CREATE TABLE {name} ({match.group(1)})"


# --- running the exporter -----------------------------------------------------------------------------

def exporter(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
             at: datetime | None = None) -> subprocess.CompletedProcess[str]:
    """`batch-exporter ARGS` as a process; under faketime at `at` (UTC) when given."""
    command = [str(VENV_BIN / "batch-exporter"), *args]
    if at is not None:
        faketime = shutil.which("faketime")
        assert faketime, "faketime fixes the exporter's clock (apt-get install faketime; make test installs it)"
        command = [faketime, "-m", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), *command]
    full_env = {**os.environ, "TZ": "UTC", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the example no longer has exactly one {old!r}"
    return text.replace(old, new)


# --- the SQLite example, as written -------------------------------------------------------------------

def test_the_sqlite_example_as_written_names_its_missing_database() -> None:
    command = next(line for block in fenced_blocks(GUIDE) if block.lang == "sh"
                   for line in block.text.splitlines() if line.startswith("batch-exporter once -c docs/examples/"))
    expected = next(block.text.strip() for block in fenced_blocks(GUIDE)
                    if block.lang == "text" and "cannot open SQLite file" in block.text)
    database = Path("/var/lib/batch/runs.db")
    if database.exists():
        pytest.skip(f"this machine has {database}: the example runs against it")
    result = exporter(*shlex.split(command)[1:])
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr, result.stderr
    assert "source runs:nightly-export failed (connect)" in result.stderr


@contextmanager
def world_readable_folder() -> Iterator[Path]:
    """A folder under the system temp folder that another user can enter (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="bx-doc-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def as_other_user() -> list[str]:
    """Command prefix running as an unprivileged user (root reads every file), or [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot show what another user may not read")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def sqlite_config(folder: Path, database: str) -> Path:
    config = folder / "config.yml"
    config.write_text(f"databases:\n  runs:\n    sqlite: '{database}'\nbatches:\n  b:\n    database: runs\n"
                      "    runs: {table: batch_run, status: {success: [OK], failed: [NG]}}\n", encoding="utf-8")
    config.chmod(0o644)
    return config


@pytest.mark.parametrize("case, problem", [
    ("missing", "the file does not exist (unable to open database file)"),
    ("missing-folder", "the file does not exist, nor does its folder {folder}/gone"),
    ("folder", "it is a folder, not a file"),
    ("not-a-database", "file is not a database"),
    ("unreadable", "the file exists but this user may not read it"),
    ("folder-closed", "permission denied on a folder of its path (this user cannot reach it)"),
])
def test_sqlite_errors_name_the_file_and_what_is_wrong(case: str, problem: str) -> None:
    with world_readable_folder() as folder:
        database = {"missing": folder / "runs.db", "missing-folder": folder / "gone" / "runs.db",
                    "folder": folder / "runs.d", "not-a-database": folder / "runs.db",
                    "unreadable": folder / "runs.db", "folder-closed": folder / "closed" / "runs.db"}[case]
        prefix: list[str] = []
        closed = None
        if case == "folder":
            database.mkdir()
        elif case == "not-a-database":
            database.write_text("a text file, not a database " * 50, encoding="utf-8")
            database.chmod(0o644)
        elif case in ("unreadable", "folder-closed"):
            database.parent.mkdir(exist_ok=True)
            with sqlite3.connect(database) as conn:
                conn.execute("CREATE TABLE batch_run (run_id INTEGER)")
            conn.close()
            closed = database if case == "unreadable" else database.parent
            closed.chmod(0)
            prefix = as_other_user()
        config = sqlite_config(folder, str(database))
        try:
            result = subprocess.run([*prefix, str(VENV_BIN / "batch-exporter"), "once", "-c", str(config)],
                                    capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC"})
        finally:
            if closed is not None:
                closed.chmod(0o700)
    opened = "cannot read SQLite file" if case == "not-a-database" else "cannot open SQLite file"
    read_only = "" if case == "not-a-database" else " read-only"
    expected = f"database 'runs': {opened} {database}{read_only}: {problem.format(folder=folder)}"
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr


# --- the PostgreSQL and MariaDB examples, on the real servers ------------------------------------------

@dataclass(frozen=True)
class Run:
    job: str
    business_date: str
    status: object  # as the guide's tables keep it: text for PostgreSQL, a number for MariaDB
    started_at: datetime
    ended_at: datetime


def runs_of(codes: dict[str, object]) -> list[Run]:
    """Three runs of the example batch (a failure and its re-run, then the next night) and one of another
    job, which runs.where must leave out."""
    def tokyo(day: int, hour: int, minute: int, second: int) -> datetime:
        return datetime(2026, 11, day, hour, minute, second, tzinfo=TOKYO)

    return [
        Run(BATCH, "2026-11-26", codes["NG"], tokyo(27, 2, 0, 4), tokyo(27, 2, 41, 10)),
        Run(BATCH, "2026-11-26", codes["OK"], tokyo(27, 7, 2, 44), tokyo(27, 7, 30, 19)),
        Run(BATCH, "2026-11-27", codes["OK"], tokyo(28, 2, 0, 3), tokyo(28, 2, 58, 47)),
        Run("settlement", "2026-11-27", codes["OK"], tokyo(28, 4, 0, 0), tokyo(28, 4, 10, 0)),
    ]


# rows of the latest run (the third, run_id 3): one approved twice, one still authorizing
AUTH_ROWS = [(3, "APPROVED", "m-1"), (3, "APPROVED", "m-2"), (3, "APPROVED", "m-2"), (3, "AUTHORIZING", "m-3"),
             (1, "DECLINED", "m-9")]
LOG_LINES = ["2026-11-28 02:00:03.120 INFO  [main] AuthorizationBatch - started",
             "2026-11-28 02:10:44.001 ERROR [auth-3] AuthorizationService - txn=7f.. result=TIMEOUT",
             "java.lang.IllegalStateException: connection pool exhausted",
             "2026-11-28 02:11:00.002 INFO  [auth-2] RetryHandler - previous state ERROR cleared"]


def with_database(connection_string: str, database: str) -> str:
    return re.sub(r"(?i)(DATABASE=)[^;]*", lambda m: m.group(1) + database, connection_string)


def server_and_port(kind: str) -> tuple[str, str]:
    text = odbc_connection_string(kind)
    server = re.search(r"(?i)(?:SERVER)=([^;]*)", text)
    port = re.search(r"(?i)PORT=([^;]*)", text)
    assert server and port, f"the test connection string of {kind} names no SERVER and PORT"
    return server.group(1), port.group(1)


def utc_wall(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def execute(connection: Any, sql: str, *params: object) -> None:
    connection.cursor().execute(sql, *params)


@dataclass(frozen=True)
class Site:
    """What the example names that differs on this machine."""

    config: Path
    env: dict[str, str]


def local_example(kind: str, example: Path, database: str, tmp_path: Path, password: str) -> Site:
    """The example with this machine's server, database, log folder and state folder; nothing else changed."""
    text = example.read_text(encoding="utf-8")
    server, port = server_and_port(kind)
    text = replace_once(text, "Server=db1.example.internal;", f"Server={server};")
    documented_port = {"postgresql": 5432, "mariadb": 3306}[kind]
    text = replace_once(text, f"Port={documented_port};", f"Port={port};")
    text = replace_once(text, "Database=payments;", f"Database={database};")
    if kind == "postgresql":
        text = replace_once(text, ";SSLmode=verify-full", "")  # the test server has no certificate
    text = replace_once(text, "  state_dir: /var/lib/batch-exporter", f"  state_dir: {tmp_path / 'state'}")
    text = replace_once(text, "path: /var/log/batch/card-authorization/", f"path: {tmp_path / 'logs'}/")
    (tmp_path / "state").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "auth-20261128.log").write_text("\n".join(LOG_LINES) + "\n", encoding="utf-8")
    config = tmp_path / example.name
    config.write_text(text, encoding="utf-8")
    return Site(config, {"PAY_DB_PASSWORD": password})


def assert_example_metrics(series: Series, runs: list[Run]) -> None:
    latest = runs[2]
    b = {"batch": BATCH}
    for source in ("config", "runs", "checks", "logfiles", "logscan"):
        ups = [v for (name, labels), v in series.items() if name == "batch_exporter_source_up"
               and dict(labels)["source"].startswith(f"{source}:")]
        assert ups and all(v == 1 for v in ups), f"{source} sources up: {ups}"
    assert value(series, "batch_run_last_start_timestamp_seconds", **b) == latest.started_at.timestamp()
    assert value(series, "batch_run_last_end_timestamp_seconds", **b) == latest.ended_at.timestamp()
    assert value(series, "batch_run_last_success_timestamp_seconds", **b) == latest.ended_at.timestamp()
    assert value(series, "batch_run_last_status", **b, status="success") == 1
    assert value(series, "batch_run_attempts", **b) == 1
    assert value(series, "batch_runs", **b, status="failed") == 1
    assert value(series, "batch_runs", **b, status="success") == 2  # not the settlement job's run
    assert value(series, "batch_run_records", **b, state="APPROVED") == 3
    assert value(series, "batch_run_pending_records", **b) == 1
    assert value(series, "batch_check_value", **b, check="double_authorized") == 1
    assert value(series, "batch_check_ok", **b, check="double_authorized") == 0
    assert value(series, "batch_log_files", **b, log="app") == 1
    assert value(series, "batch_log_matches_total", **b, log="app", pattern="error") == 1
    assert value(series, "batch_log_matches_total", **b, log="app", pattern="exception") == 1


def run_example(site: Site) -> Series:
    checked = exporter("check-config", "-c", str(site.config), env=site.env)
    assert checked.returncode == 0 and ": OK (" in checked.stdout, checked.stdout + checked.stderr
    once = exporter("once", "-c", str(site.config), env=site.env, at=NOW)
    assert once.returncode == 0, once.stderr
    return parse_exposition(once.stdout)


@requires_odbc("postgresql")
def test_the_postgresql_example_runs_as_the_guides_read_only_account(tmp_path: Path) -> None:
    kind, database = "postgresql", unique_name("bx_doc")
    grants = sql_after(GUIDE, "## 3. A read-only database account", "PostgreSQL:")
    password = re.findall(r"PASSWORD '([^']*)'", grants)[0]
    admin = admin_connection(kind)
    with suppress(Exception):  # a role left over by an interrupted run
        execute(admin, "DROP ROLE IF EXISTS batch_monitor")
    execute(admin, f"CREATE DATABASE {database}")
    try:
        import pyodbc

        owner = pyodbc.connect(with_database(odbc_connection_string(kind), database), autocommit=True, timeout=5)
        try:
            execute(owner, "CREATE SCHEMA batch")  # the guide's tables live in the schema `batch`
            execute(owner, "SET TIME ZONE 'UTC'")  # whatever the server's default, the values below are UTC
            for statement in statements(sql_after(GUIDE, "### PostgreSQL")):
                execute(owner, statement)
            execute(owner, described_table(EXAMPLES / "postgresql.yml", "batch.auth_request"))
            runs = runs_of({"OK": "OK", "NG": "NG"})
            for run in runs:
                execute(owner, "INSERT INTO batch.batch_run (job_name, biz_date, status, start_time, end_time) "
                               "VALUES (?, ?, ?, ?, ?)", run.job, run.business_date, run.status,
                        utc_wall(run.started_at), utc_wall(run.ended_at))
            for row in AUTH_ROWS:
                execute(owner, "INSERT INTO batch.auth_request VALUES (?, ?, ?)", *row)
            for statement in statements(grants.replace("ON DATABASE payments", f"ON DATABASE {database}")):
                execute(owner, statement)
        finally:
            owner.close()
        site = local_example(kind, EXAMPLES / "postgresql.yml", database, tmp_path, password)
        assert_example_metrics(run_example(site), runs)
    finally:
        execute(admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        execute(admin, "DROP ROLE IF EXISTS batch_monitor")
        admin.close()


@requires_odbc("mariadb")
def test_the_mariadb_example_runs_as_the_guides_read_only_account(tmp_path: Path) -> None:
    kind, database = "mariadb", unique_name("bx_doc")
    grants = sql_after(GUIDE, "## 3. A read-only database account", "MariaDB / MySQL")
    password = re.findall(r"IDENTIFIED BY '([^']*)'", grants)[0]
    # the account's host part is the exporter's address: here the test server sees 127.0.0.1
    grants = grants.replace("'10.20.0.%'", "'127.0.0.1'").replace("payments.", f"{database}.")
    admin = admin_connection(kind)
    execute(admin, "DROP USER IF EXISTS 'batch_monitor'@'127.0.0.1'")
    execute(admin, f"CREATE DATABASE {database}")
    try:
        import pyodbc

        owner = pyodbc.connect(with_database(odbc_connection_string(kind), database), autocommit=True, timeout=5)
        try:
            for statement in statements(sql_after(GUIDE, "### MariaDB")):
                execute(owner, statement)
            execute(owner, described_table(EXAMPLES / "mariadb.yml", "auth_request"))
            runs = runs_of({"OK": 0, "NG": 8})
            for run in runs:  # DATETIME: the wall clock in Tokyo, as the example's timezone says
                execute(owner, "INSERT INTO batch_run (job_name, biz_date, status, start_time, end_time) "
                               "VALUES (?, ?, ?, ?, ?)", run.job, run.business_date, run.status,
                        run.started_at.replace(tzinfo=None), run.ended_at.replace(tzinfo=None))
            for row in AUTH_ROWS:
                execute(owner, "INSERT INTO auth_request VALUES (?, ?, ?)", *row)
            for statement in statements(grants):
                execute(owner, statement)
        finally:
            owner.close()
        site = local_example(kind, EXAMPLES / "mariadb.yml", database, tmp_path, password)
        assert_example_metrics(run_example(site), runs)
    finally:
        execute(admin, f"DROP DATABASE IF EXISTS {database}")
        execute(admin, "DROP USER IF EXISTS 'batch_monitor'@'127.0.0.1'")
        admin.close()


def test_every_example_says_what_it_needs_first_and_is_run_by_a_test() -> None:
    run_here = {"postgresql.yml", "mariadb.yml"}
    run_by_the_guide_test = {"sqlite.yml"}  # tests/test_operators_guide.py: `once` on a sandbox copy
    check_config_only = {"sqlserver.yml": "The test suite has no SQL Server: it checks this file with "
                                          "check-config only."}
    names = {p.name for p in EXAMPLES.iterdir()}
    assert names == run_here | run_by_the_guide_test | set(check_config_only), "a new example needs a test here"
    for path in EXAMPLES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "need first:" in text or "needs nothing more" in text, f"{path.name} does not say what it needs"
        if path.name in check_config_only:
            assert check_config_only[path.name] in " ".join(line.lstrip("# ") for line in text.splitlines())


# --- the error the guide shows for epoch milliseconds under auto ----------------------------------------

def test_the_guides_epoch_error_is_the_one_the_exporter_gives(tmp_path: Path) -> None:
    shown = next(block.text.strip() for block in fenced_blocks(GUIDE)
                 if block.lang == "text" and ".runs.timestamps:" in block.text)
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE batch_run (run_id INTEGER, status TEXT, start_time INTEGER, end_time INTEGER)")
        millis = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        conn.execute("INSERT INTO batch_run VALUES (1, 'OK', ?, ?)", (millis - 60_000, millis))
    conn.close()
    config = parse_config(
        f"databases: {{runs: {{sqlite: '{path}'}}}}\nbatches:\n  {BATCH}:\n    database: runs\n"
        "    runs: {table: batch_run, columns: {started_at: start_time, ended_at: end_time}, "
        "status: {success: [OK], failed: [NG]}}\n", "epoch.yml")
    source = RunsSource(BATCH, config.batches[BATCH], open_database("runs", sqlite=str(path)),
                        text_timestamps=True, clock=NOW.timestamp)
    with pytest.raises(SourceError) as caught:
        source.poll()
    assert str(caught.value) == shown


# --- docs/logs.md and docs/practise.md ----------------------------------------------------------------

def test_the_logs_guide_configuration_passes_check_config(tmp_path: Path) -> None:
    (block,) = [b for b in fenced_blocks(DOCS / "logs.md") if b.lang == "yaml"]
    config = tmp_path / "logs.yml"
    config.write_text(block.text, encoding="utf-8")
    result = exporter("check-config", "-c", str(config))
    assert result.returncode == 0 and ": OK (" in result.stdout, result.stdout + result.stderr


def test_the_practise_guides_sql_runs_on_the_demo_database(tmp_path: Path) -> None:
    (block,) = [b for b in fenced_blocks(DOCS / "practise.md") if b.lang == "sql"]
    paths = create_demo(tmp_path / "demo", now=NOW)
    conn = sqlite3.connect(f"{paths.database.as_uri()}?mode=ro", uri=True)
    try:
        latest, rows_of_one_run = (conn.execute(statement).fetchall() for statement in statements(block.text))
    finally:
        conn.close()
    assert 1 <= len(latest) <= 5 and all(len(row) == 5 for row in latest)
    assert all(len(row) == 2 for row in rows_of_one_run)


def test_the_practise_guides_commands_parse() -> None:
    parser = build_parser()
    commands = [line for b in fenced_blocks(DOCS / "practise.md") if b.lang == "sh"
                for line in b.text.splitlines() if line.strip()]
    assert commands
    for line in commands:
        words = shlex.split(line, comments=True)
        assert words[0] == "batch-exporter", line
        parser.parse_args(words[1:])


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, item in extra.items():
        if isinstance(item, dict) and isinstance(base.get(key), dict):
            _merged(base[key], item)
        else:
            base[key] = item
    return base


def test_the_guides_calendar_example_is_a_working_part_of_the_postgresql_example() -> None:
    [block] = [b for b in fenced_blocks(GUIDE) if b.lang == "yaml" and b.text.startswith("calendars:")]
    example = yaml.safe_load((DOCS / "examples" / "postgresql.yml").read_text(encoding="utf-8"))
    merged = _merged(example, yaml.safe_load(block.text))
    config = parse_config(yaml.safe_dump(merged, sort_keys=False), "merged.yml", env={"PAY_DB_PASSWORD": "x"})
    schedule = config.batches["card-authorization"].schedule
    assert schedule is not None and schedule.calendar in config.calendars
    assert schedule.finish_by is not None and config.batches["card-authorization"].runs is not None


# --- every block is accounted for ----------------------------------------------------------------------

def how_tested(block: Block) -> str | None:
    """Which test runs a block, or why it is not run; None for a block nobody accounts for."""
    doc = block.doc.name
    if doc == "operators-guide.md":
        if block.lang == "sh":
            return "tests/test_operators_guide.py runs it, or names why it cannot run here"
        if block.lang == "yaml" and block.text.startswith("calendars:"):
            return "merged over docs/examples/postgresql.yml and loaded as a configuration by this file"
        if block.lang == "yaml":
            return "an excerpt of docs/examples: tests/test_operators_guide.py keeps it equal to its file"
        if block.lang == "sql":
            if "dbo." in block.text or "CREATE LOGIN" in block.text:
                return "SQL Server: the test machine has none"
            if block.text in (sql_after(GUIDE, "### PostgreSQL"), sql_after(GUIDE, "### MariaDB"),
                              sql_after(GUIDE, "## 3. A read-only database account", "PostgreSQL:"),
                              sql_after(GUIDE, "## 3. A read-only database account", "MariaDB / MySQL")):
                return "run on the real server by this file's example tests"
            if block.text == sql_after(GUIDE, "### SQLite"):
                return "tests/test_operators_guide.py creates its sandbox's run table with it"
        if block.lang == "text" and ("cannot open SQLite file" in block.text or ".runs.timestamps:" in block.text):
            return "an error message: this file checks the exporter prints it"
    if doc == "logs.md":
        if block.lang == "yaml":
            return "check-config by this file"
        if block.lang == "":
            return "log lines illustrating a pattern, not a command"
    if doc == "architecture.md":
        if block.lang in ("components", "dependencies"):
            return "compared with the package's import graph by tests/test_architecture.py"
        if block.lang == "":
            return "a drawing of the data flow, not a command"
    if doc == "practise.md":
        if block.lang in ("sql", "sh"):
            return "run (SQL) or parsed (commands) by this file; the drills themselves by tests/test_drill.py"
        if block.lang == "text":
            return "what a drill prints, not a command"
    if doc == "ha.md":
        if block.lang == "text":
            return "a drawing of the HA topology, not a command"
        if block.lang == "yaml":
            return "each Prometheus replica's settings in tests/test_ha_paging.py (documented_replica_config)"
        if block.lang == "sh":
            return "each Alertmanager's command in tests/test_ha_paging.py, moved to loopback"
    if doc == "scaling.md" and block.lang == "text":
        return "a drawing of the topology for 100,000 batches, not a command"
    if doc == "status-page.md":
        if block.lang == "json":
            return "tests/test_status_page.py compares its keys with the JSON the exporter serves"
        if block.lang == "sh":
            return "tests/test_status_page.py runs its jq filter on the JSON the exporter serves"
    if doc == "fleet.md":
        return ("tests/test_fleet.py runs every block: the configuration loaded, the SQL compared with the statements "
                "sent, the commands parsed, the Prometheus configuration checked by promtool")
    if doc == "victoriametrics.md" and block.lang == "sh":
        return "tests/test_vmalert.py runs its dry runs as written and checks every flag against the installed -help"
    if block.doc.parent.name == "presets":
        if block.lang == "yaml":
            return "check-config --explain by this file (no database is contacted)"
        if block.lang == "console":
            return "parsed by this file: batch-exporter's own parser accepts each command"
        if block.lang == "sql" and doc == "sqlserver-agent.md":
            return "SQL Server: the test machine has none"
        if block.lang == "sql" and "CREATE ROLE" in block.text:
            return "run on a real Airflow database by tests/test_preset_airflow.py, which polls as that role"
        if block.lang == "sql":
            return "MySQL grants: Airflow on MySQL is not tested here (PostgreSQL is)"
    return None


PRESET_PAGES = sorted((DOCS / "presets").glob("*.md"))


@pytest.mark.parametrize("page", PRESET_PAGES, ids=[p.stem for p in PRESET_PAGES])
def test_a_preset_page_s_configuration_loads_and_explains_its_sql(page: Path, tmp_path: Path) -> None:
    [block] = [b for b in fenced_blocks(page) if b.lang == "yaml"]
    config = tmp_path / "config.yml"
    config.write_text(block.text, encoding="utf-8")
    result = exporter("check-config", "-c", str(config), "--explain",
                      env={"AIRFLOW_DB_PASSWORD": "unused", "MSDB_PASSWORD": "unused"})
    assert result.returncode == 0, result.stderr
    assert f"(from preset {page.stem})" in result.stdout and "SELECT" in result.stdout


@pytest.mark.parametrize("page", PRESET_PAGES, ids=[p.stem for p in PRESET_PAGES])
def test_a_preset_page_s_commands_are_accepted_by_the_parser(page: Path) -> None:
    commands = [line.removeprefix("$ ") for b in fenced_blocks(page) if b.lang == "console"
                for line in b.text.splitlines() if line.startswith("$ ")]
    assert commands
    for command in commands:
        words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=.*", w)]
        assert words[0] == "batch-exporter", command
        build_parser().parse_args(words[1:])


def test_every_block_of_the_docs_is_run_or_says_why_not() -> None:
    blocks = [block for doc in sorted(DOCS.rglob("*.md")) for block in fenced_blocks(doc)]
    assert len(blocks) > 30
    unaccounted = [str(block) for block in blocks if how_tested(block) is None]
    assert not unaccounted, "blocks no test runs and no rule explains:\n" + "\n".join(unaccounted)
