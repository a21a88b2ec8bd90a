"""The statement check: one plain SELECT passes, anything that could write or lock does not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_exporter import dialects
from batch_exporter.sqlcheck import StatementError, check_read_only, dialect_names

ACCEPTED = [
    "SELECT 1",
    "select 1;",
    "SELECT 1 ;  \n",
    "  \n SELECT status, COUNT(*) FROM auth_request WHERE run_id = ? GROUP BY status",
    "WITH last AS (SELECT MAX(run_id) AS id FROM batch_run) SELECT * FROM batch_run, last WHERE run_id = last.id",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT 'DELETE FROM t; DROP TABLE t' AS note",
    "SELECT 'it''s; DELETE'",
    'SELECT "update", "into" FROM "delete"',
    "SELECT t.update, t.delete, t.set FROM t",
    "SELECT 1 -- ; DELETE FROM t\n",
    "SELECT 1 /* ; DROP TABLE t; */",
    "SELECT 1 /* multi\nline ; comment */ FROM t",
    "SELECT REPLACE(note, 'a', 'b'), INSERT(note, 1, 2, 'zz') FROM t",
    "SELECT CAST(note AS CHAR(10) CHARACTER SET utf8mb4) FROM t",
    "SELECT * FROM orders WHERE updated_at > ? AND deleted = 0 AND created_by <> 'INSERT'",
    "SELECT SUBSTRING(code FROM 1 FOR 3) FROM t",
    "SELECT 'C:\\batch\\logs' AS path",
    "SELECT status FROM t ORDER BY 1 LIMIT 10 OFFSET 5",
    "SELECT '認可済' AS 状態 FROM t",
    "SeLeCt 1",
]

# (statement, what the message must say, offset of the offending text)
REFUSED = [
    ("", "empty statement", 0),
    ("  ;", "empty statement", 0),
    ("-- only a comment", "empty statement", 0),
    ("INSERT INTO t VALUES (1)", "only SELECT or WITH statements are allowed, found 'INSERT'", 0),
    ("update t set a = 1", "found 'update'", 0),
    ("DELETE FROM t", "found 'DELETE'", 0),
    ("MERGE INTO t USING s ON (1=1) WHEN MATCHED THEN DELETE", "found 'MERGE'", 0),
    ("CREATE TABLE t (a int)", "found 'CREATE'", 0),
    ("DROP TABLE t", "found 'DROP'", 0),
    ("ALTER TABLE t ADD b int", "found 'ALTER'", 0),
    ("TRUNCATE t", "found 'TRUNCATE'", 0),
    ("GRANT SELECT ON t TO u", "found 'GRANT'", 0),
    ("CALL p()", "found 'CALL'", 0),
    ("EXEC sp_who", "found 'EXEC'", 0),
    ("SET SESSION TRANSACTION READ WRITE", "found 'SET'", 0),
    ("PRAGMA writable_schema = 1", "found 'PRAGMA'", 0),
    ("ATTACH DATABASE 'x.db' AS x", "found 'ATTACH'", 0),
    ("LOCK TABLE t IN EXCLUSIVE MODE", "found 'LOCK'", 0),
    ("EXPLAIN ANALYZE DELETE FROM t", "found 'EXPLAIN'", 0),
    ("VALUES (1)", "found 'VALUES'", 0),
    ("'SELECT'", "found \"'SELECT'\"", 0),
    ("SELECT 1; SELECT 2", "more than one statement", 8),
    ("SELECT 1;;", "more than one statement", 8),
    ("SELECT 1; DELETE FROM t", "more than one statement", 8),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE changes data", 11),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", "UPDATE changes data", 11),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", "INSERT changes data", 11),
    ("SELECT * INTO copy_of_t FROM t", "INTO writes a table or variables", 9),
    ("SELECT a INTO @v FROM t", "INTO writes", 9),
    ("SELECT a FROM t INTO OUTFILE '/tmp/x'", "INTO writes", 16),
    ("SELECT * FROM t FOR UPDATE", "FOR UPDATE takes row locks", 16),
    ("SELECT * FROM t FOR SHARE", "FOR SHARE takes row locks", 16),
    ("SELECT * FROM t FOR NO KEY UPDATE", "FOR NO takes row locks", 16),
    ("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", "FOR KEY takes row locks", 16),
    ("SELECT * FROM t LOCK IN SHARE MODE", "LOCK takes locks", 16),
    ("SELECT * FROM t WITH (UPDLOCK)", "UPDLOCK takes locks", 22),
    ("SELECT 1 DELETE FROM t", "DELETE changes data", 9),  # two statements to SQL Server
    ("SELECT 1\nDROP TABLE t", "DROP changes the schema .* at line 2, column 1", 9),
    ("SELECT 1 EXEC sp_configure", "EXEC runs a procedure", 9),
    ("SELECT * FROM OPENROWSET('x', 'y', 'z')", "OPENROWSET reaches another server", 14),
    ("SELECT 'x' /* unterminated", r"unterminated /\* comment", 11),
    ("SELECT 'open", "unterminated string literal", 7),
    ('SELECT "open', "unterminated quoted name", 7),
]

# Text that one server reads as a literal or comment and another as code.
DIALECT_TRAPS = [
    # PostgreSQL: '\' is a whole literal, so '; DELETE ...' is code; MySQL: one long literal.
    ("SELECT '\\' ; DELETE FROM t; -- '", "as PostgreSQL reads it", 11),
    # MySQL: \' then ' close the literal, so the rest is code; standard SQL: one literal.
    ("SELECT 'a\\'' ; DELETE FROM t; -- '", "more than one statement", 13),
    # MySQL/MariaDB run the inside of /*! ... */ comments.
    ("SELECT 1 /*! , (DELETE FROM t) */", "executable comments", 9),
    ("SELECT 1 /*M!100000 FOR UPDATE */", "executable comments", 9),
    # '--' without a space is no comment in MySQL.
    ("SELECT 1 --x\n; DELETE FROM t", "more than one statement", 13),
    # $$...$$ is a literal only in PostgreSQL.
    ("SELECT $$ ; DELETE FROM t; $$", "as MySQL/MariaDB reads it", 10),
    # PostgreSQL and SQL Server nest comments, MySQL and SQLite do not.
    ("SELECT 1 /* /* */ ; DELETE FROM t */", "more than one statement", 18),
    ("SELECT 1 /* /* */ DELETE FROM t /* */ */", "DELETE changes data", 18),
    # [..] is a quoted name in SQL Server and SQLite only.
    ("SELECT [a;DELETE FROM t] FROM t", "more than one statement", 9),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_plain_selects_pass(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize("sql, message, offset", REFUSED + DIALECT_TRAPS)
def test_anything_else_is_refused_with_its_place(sql: str, message: str, offset: int) -> None:
    with pytest.raises(StatementError, match=message) as caught:
        check_read_only(sql)
    assert caught.value.offset == offset
    assert f"(offset {offset})" in str(caught.value)


def test_location_is_given_as_line_and_column() -> None:
    sql = "SELECT a,\n       b\n  FROM t\n  FOR UPDATE"
    with pytest.raises(StatementError) as caught:
        check_read_only(sql)
    error = caught.value
    assert (error.line, error.column) == (4, 3)
    assert str(error) == "FOR UPDATE takes row locks at line 4, column 3 (offset 30)"


@pytest.mark.parametrize(
    "sql, dialect",
    [
        ("SELECT E'it\\'s'", "postgresql"),
        ("SELECT $$a'b$$", "postgresql"),
        ("SELECT `order` FROM t # a comment; DELETE", "mysql"),
        ("SELECT [a;b] FROM t", "mssql"),
        ("SELECT 1 /* outer /* inner */ still comment; DELETE */", "mssql"),
        ("SELECT [a;b], `c;d` FROM t", "sqlite"),
    ],
)
def test_a_known_dialect_accepts_its_own_syntax(sql: str, dialect: str) -> None:
    check_read_only(sql, dialect)
    with pytest.raises(StatementError):
        check_read_only(sql)  # some other server would read it differently


def test_postgresql_reading_also_covers_legacy_backslash_strings() -> None:
    with pytest.raises(StatementError, match="standard_conforming_strings=off"):
        check_read_only("SELECT 'a\\'' ; DELETE FROM t; -- '", "postgresql")


def test_unknown_dialect_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown SQL dialect 'no-such-server'"):
        check_read_only("SELECT 1", "no-such-server")
    assert dialect_names() == (*(dialect.name for dialect in dialects.DIALECTS), "odbc")
    assert {"postgresql", "mysql", "mssql", "sqlite"} <= set(dialect_names())


def test_statement_error_is_a_value_error() -> None:
    assert issubclass(StatementError, ValueError)


_WORDS = st.sampled_from(
    ["SELECT", "FROM", "t", "a", ",", "(", ")", "'x'", "1", "WHERE", "=", "?", " ", "\n"]
)


@given(st.lists(_WORDS, max_size=20), st.sampled_from(["DELETE", "UPDATE", "INSERT INTO", "DROP", "INTO"]))
def test_a_write_keyword_anywhere_in_code_is_refused(words: list[str], keyword: str) -> None:
    sql = "SELECT " + " ".join(words) + f" {keyword} t"
    with pytest.raises(StatementError):
        check_read_only(sql)


@given(st.text(alphabet=st.characters(blacklist_characters="'\\\0", blacklist_categories=("Cs",)), max_size=40))
def test_anything_inside_a_literal_is_data(content: str) -> None:
    check_read_only(f"SELECT '{content}' AS x", "postgresql")
    check_read_only(f"SELECT '{content}' AS x", "mssql")


# Issue 11: text a server reads as code that the checker used to read as a comment or literal. Each
# passed check_read_only before the fix, for the dialect named (None: every server).
SERVER_READINGS = [
    # PostgreSQL ends a -- comment at a carriage return too: the rest ran as four more statements.
    (
        "SELECT count(*) FROM victim --\r; COMMIT; BEGIN READ WRITE; DELETE FROM victim; COMMIT; SELECT 1",
        None,
        "carriage return without a line feed",
    ),
    ("SELECT 1 --\r; DELETE FROM t", "postgresql", "carriage return"),
    ("SELECT 1 FROM t WHERE (job = 'x' --\r) ; DELETE FROM t; SELECT (1\n)", "postgresql", "carriage return"),
    ("SELECT 1 # x\r'\n; DELETE FROM t; -- '", "mysql", "carriage return"),
    # MySQL's '--' needs an ASCII space or control character after it; U+00A0 and U+3000 are neither.
    ("SELECT 1 --\u00a0'\n; DELETE FROM t; -- '", "mysql", "U\\+00A0"),
    ("SELECT 1 --\u3000'\n; DELETE FROM t; -- '", "mysql", "U\\+3000"),
    # ... and DEL is one.
    ("SELECT 1 --\x7f'\n; DELETE FROM t; -- '", "mysql", "more than one statement"),
    # A PostgreSQL dollar-quote tag may hold any character beyond ASCII.
    ("SELECT $\u00b7$ ' $\u00b7$; DELETE FROM t; SELECT $\u00b7$ ' $\u00b7$", "postgresql", "more than one statement"),
    # SQLite ends [name] at the first ']', and reads $name(...) as one token, quotes included.
    ("SELECT [a]] ; DELETE FROM t; SELECT [b]", "sqlite", "more than one statement"),
    ("SELECT $a(') ; DELETE FROM t; SELECT '", "sqlite", "parameter name followed by"),
    # A NUL ends the text for the MySQL lexer inside a comment.
    ("SELECT 1 -- \0\n; DELETE FROM t", "mysql", "NUL"),
]


@pytest.mark.parametrize("sql, dialect, message", SERVER_READINGS)
def test_text_a_server_runs_as_code_is_refused(sql: str, dialect: str | None, message: str) -> None:
    with pytest.raises(StatementError, match=message):
        check_read_only(sql, dialect)


@pytest.mark.parametrize(
    "sql, dialect",
    [
        ("SELECT 1 -- Windows line end\r\nFROM t", None),
        ("SELECT 1 # hash\r\n", "mysql"),
        ("SELECT 1 --\tx\n", "mysql"),
        ('SELECT "a\\" FROM t', "postgresql"),  # no backslash escapes in PostgreSQL names
        ("SELECT [a]]b] FROM t", "mssql"),
        ("SELECT 状態, count(*) FROM 取引 GROUP BY 状態", None),
        ("SELECT '\u3000\x07' AS x", None),  # anything inside a literal is data
        ("SELECT $tag$ a\u00b7 $tag$", "postgresql"),
    ],
)
def test_server_syntax_read_exactly_still_passes(sql: str, dialect: str | None) -> None:
    check_read_only(sql, dialect)


@pytest.mark.parametrize("sql", [
    "SELECT pg_advisory_lock(11)",
    "SELECT pg_catalog.pg_try_advisory_lock(11)",
    'SELECT "pg_advisory_lock"(1)',
    "SELECT pg_create_physical_replication_slot('review11_slot', true)",
    "SELECT pg_stat_reset()",
    "SELECT pg_reload_conf()",
    "SELECT setval('s', 1000)",
    "SELECT lo_unlink(1)",
    "SELECT GET_LOCK('r11', 0)",
    "SELECT LOAD_FILE('/etc/hostname')",
    "WITH x AS (SELECT pg_switch_wal()) SELECT 1 FROM x",
])
def test_functions_whose_effects_outlive_a_read_only_transaction_are_refused(sql: str) -> None:
    with pytest.raises(StatementError, match="outlive a read-only transaction"):
        check_read_only(sql)


@pytest.mark.parametrize("sql", ["SELECT count(*) FROM lo_table", "SELECT nextval FROM t",
                                 "SELECT t.get_lock FROM t", "SELECT 'pg_advisory_lock(1)'"])
def test_names_that_look_like_those_functions_but_are_not_calls_pass(sql: str) -> None:
    check_read_only(sql)
