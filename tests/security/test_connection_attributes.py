"""Issue 11, item 2: connection-string keys that run SQL or change the session are refused, located,
before any connection is made."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_exporter.database import allowed_odbc_keys, odbc_dialect, open_database
from db_servers import odbc_connection_string, requires_odbc, scratch_table

from .attacks import run_exporter, write_config
from .test_read_only_sql import row_count

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kind, extra, key",
    [
        pytest.param("mariadb", "InitStmt={{DELETE FROM {t}}};", "InitStmt", marks=requires_odbc("mariadb")),
        pytest.param(
            "postgresql",
            "ConnSettings={{SET default_transaction_read_only=off;DELETE FROM {t};COMMIT}};",
            "ConnSettings",
            marks=requires_odbc("postgresql"),
        ),
    ],
)
def test_session_sql_in_the_connection_string_never_runs(tmp_path: Path, kind: str, extra: str, key: str) -> None:
    with scratch_table(kind, "id INT", [(1,), (2,)]) as victim:
        odbc = odbc_connection_string(kind) + extra.format(t=victim)
        check = f"    checks:\n      c:\n        query: SELECT count(*) FROM {victim}\n"
        config = write_config(tmp_path, odbc, check)
        checked = run_exporter("check-config", config)
        assert checked.code != 0
        # config.py validates odbc in a model validator, so the path ends at the database (line of odbc)
        assert f"attack.yml:3: databases.db: key {key} is not allowed because" in checked.output
        assert victim not in checked.output  # the value is never echoed
        assert run_exporter("once", config).code != 0
        assert row_count(kind, victim) == 2


@pytest.mark.parametrize(
    "odbc, key",
    [
        ("Driver={PostgreSQL Unicode};Server=db;A6={SET default_transaction_read_only=off}", "A6"),
        ("Driver={PostgreSQL Unicode};Server=db;connsettings={SET x=1}", "connsettings"),
        ("Driver={PostgreSQL Unicode};Server=db;UseServerSidePrepare=0", "UseServerSidePrepare"),
        ("Driver={MariaDB Unicode};Server=db;initstmt=SET SESSION TRANSACTION READ WRITE", "initstmt"),
        ("Driver={MariaDB Unicode};Server=db;USE_MYCNF=1", "USE_MYCNF"),
        ("Driver={MariaDB Unicode};Server=db;OPTION=4194304", "OPTION"),
        ("Driver={ODBC Driver 18 for SQL Server};Server=db;AttachDBFileName=C:\\x.mdf", "AttachDBFileName"),
        ("Driver={ODBC Driver 18 for SQL Server};SaveFile=/tmp/x.dsn", "SaveFile"),
        ("DSN=payments", "DSN"),
        ("Driver={PostgreSQL Unicode};DSN=evil;Server=x", "DSN"),
    ],
)
def test_refused_keys_are_named_and_no_connection_is_attempted(odbc: str, key: str) -> None:
    with pytest.raises(ValueError, match=f"key {key} is not allowed because"):
        odbc_dialect(odbc)
    with pytest.raises(ValueError, match=f"database 'x': key {key} is not allowed"):
        open_database("x", odbc=odbc)  # refused in the constructor, before the first query connects


@pytest.mark.parametrize(
    "pqopt, message",
    [
        ("{options='-c default_transaction_read_only=off'}", "options -c default_transaction_read_only"),
        ("{options='-c role=admin'}", "options -c role"),
        ("{service=payments}", "pqopt is not allowed with service"),
    ],
)
def test_postgresql_pqopt_may_not_change_the_session(pqopt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        odbc_dialect(f"Driver={{PostgreSQL Unicode}};Server=db;pqopt={pqopt}")


def test_keys_are_compared_without_case_and_known_ones_pass() -> None:
    assert odbc_dialect("driver={PostgreSQL Unicode};SERVER=db;sslMode=require;USEDECLAREFETCH=1;Fetch=1000;"
                        "pqopt={options='-c TimeZone=UTC'}") == "postgresql"
    assert odbc_dialect("DRIVER={MariaDB Unicode};server=db;Conn_Timeout=3;SSLVERIFY=1") == "mysql"
    assert "initstmt" not in allowed_odbc_keys("mariadb")
    assert "connsettings" not in allowed_odbc_keys("postgresql")


@pytest.mark.parametrize(
    "example",
    sorted((ROOT / "docs" / "examples").glob("*.yml")) + [ROOT / "deploy" / "windows" / "config.yml"],
    ids=lambda path: path.name if path.parent.name == "examples" else "windows",
)
def test_shipped_example_configs_still_pass_check_config(example: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PAY_DB_PASSWORD": "not-a-real-password"}
    done = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "check-config", "-c", str(example)],
                          capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
