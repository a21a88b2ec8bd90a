"""Refuse any SQL that is not one plain SELECT: the first of the read-only layers.

Servers disagree on how text is quoted and commented. A statement therefore passes only if it is a single
SELECT/WITH under every reading of the dialect (or of all dialects when the server is unknown). A
general-purpose SQL lexer picks one reading, which is exactly the gap an attacker-shaped statement would
use. The readings are the dialects' own (``Dialect.readings`` in ``dialects``: each module says how its
server reads text); this module only applies them. Where servers disagree on text that no monitoring
query needs, the text is refused outright: a carriage return without a line feed inside a ``--`` or ``#``
comment, NUL, and, outside literals and quoted names, control characters and characters beyond ASCII that
are neither letters, marks nor digits (Unicode spaces, punctuation).

Keywords that start other statements are refused anywhere outside literals, quoted names and comments:
SQL Server runs ``SELECT 1 DELETE FROM t`` as two statements without a ``;``. Calls to functions whose
effect outlives a read-only transaction are refused by name: each dialect lists its server's
(``Dialect.side_effect_functions``), and every registered dialect's list applies whatever the server, as
a name harmless on one server may be another's. Functions not listed are left to the read-only session
and a SELECT-only account.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from . import dialects
from .dialects.base import Dialect, Reading


class StatementError(ValueError):
    """The statement is not a single read-only SELECT; says what and where."""

    def __init__(self, detail: str, offset: int, sql: str) -> None:
        self.detail = detail
        self.offset = offset
        self.line = sql.count("\n", 0, offset) + 1
        self.column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"{detail} at line {self.line}, column {self.column} (offset {offset})")


def dialect_names() -> tuple[str, ...]:
    """The dialect names check_read_only takes (besides None): the registered dialects', now."""
    return dialects.dialect_names()


_WHY = {
    "changes data": "INSERT UPDATE DELETE MERGE UPSERT REPLACE TRUNCATE UPDATETEXT WRITETEXT",
    "writes a table or variables": "INTO",
    "changes the schema": "CREATE ALTER DROP RENAME ENABLE DISABLE",
    "changes privileges": "GRANT REVOKE DENY SETUSER",
    "runs a procedure": "CALL EXEC EXECUTE",
    "changes session state": "SET DECLARE PRAGMA ATTACH DETACH",
    "controls the transaction": "BEGIN COMMIT ROLLBACK SAVEPOINT",
    "takes locks": "LOCK UNLOCK UPDLOCK XLOCK TABLOCKX HOLDLOCK",
    "is an administrative command": "KILL SHUTDOWN BACKUP RESTORE DBCC BULK RECONFIGURE VACUUM REINDEX",
    "reaches another server": "OPENROWSET OPENQUERY OPENDATASOURCE",
}
_FORBIDDEN = {word: why for why, words in _WHY.items() for word in words.split()}
_FUNCTIONS = {"INSERT", "REPLACE"}  # string functions when followed by '('
_ROW_LOCK_AFTER_FOR = {"UPDATE", "SHARE", "NO", "KEY"}

# Outside ASCII, PostgreSQL, MySQL and SQLite take any character as part of a name; only letters, marks
# and digits are let through (anything else is refused before these patterns are tried).
_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_SQLITE_VARIABLE = re.compile(r"[$@:#](?:[A-Za-z0-9_$\x80-\U0010ffff]|::)+\(")
_CODE_SPACE = " \t\n\r"
_COMMENT_MARK = re.compile(r"/\*|\*/")


@dataclass(frozen=True)
class _Token:
    kind: str  # word, literal, name, number, punct
    text: str
    offset: int


def check_read_only(sql: str, dialect: str | Dialect | None = None) -> None:
    """Raise StatementError unless ``sql`` is exactly one SELECT or WITH ... SELECT statement.

    ``dialect`` (a registered dialect or its name) narrows the check to how that server reads text; None
    checks every reading, so a statement accepted here is accepted by any server. An unknown name is a
    ValueError.
    """
    if not isinstance(dialect, Dialect):
        dialect = dialects.dialect_named(dialect)
    readings = dialect.readings
    # every registered dialect's functions, whatever the server
    side_effect_function = _function_pattern(dialects.GENERIC_ODBC.side_effect_functions)
    failures: list[tuple[Reading, StatementError]] = []
    for reading in readings:
        try:
            _check(_tokens(sql, reading), sql, side_effect_function)
        except StatementError as err:
            failures.append((reading, err))
    if not failures:
        return
    first_reading, first = failures[0]
    if len(failures) == len(readings) and all(
        (other.detail, other.offset) == (first.detail, first.offset) for _, other in failures
    ):
        raise first
    raise StatementError(f"{first.detail} (as {first_reading.label} reads it)", first.offset, sql)


@lru_cache(maxsize=8)
def _function_pattern(names: frozenset[str]) -> re.Pattern[str]:
    """Matches (fullmatch, any case) the ``names``; one ending in ``*`` stands for every name it begins."""
    alternatives = sorted(
        re.escape(name[:-1]) + r"\w*" if name.endswith("*") else re.escape(name) for name in names
    )
    return re.compile("|".join(alternatives) or r"(?!)", re.IGNORECASE)


def _check(tokens: list[_Token], sql: str, side_effect_function: re.Pattern[str]) -> None:
    if tokens and _is(tokens[-1], ";"):
        tokens = tokens[:-1]
    if not tokens:
        raise StatementError("empty statement", 0, sql)
    for token in tokens:
        if _is(token, ";"):
            raise StatementError("more than one statement: ';' is only allowed at the end", token.offset, sql)
    first = next((token for token in tokens if not _is(token, "(")), tokens[-1])
    if first.kind != "word" or first.text.upper() not in ("SELECT", "WITH"):
        shown = first.text if len(first.text) <= 20 else first.text[:20] + "..."
        raise StatementError(f"only SELECT or WITH statements are allowed, found {shown!r}", first.offset, sql)
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind in ("word", "name") and following is not None and _is(following, "("):
            called = token.text.strip('"`[]')
            if side_effect_function.fullmatch(called):
                raise StatementError(f"{called}() has effects that outlive a read-only transaction (locks, "
                                     "replication slots, server state, files) and is not allowed", token.offset, sql)
        if token.kind != "word" or (index and _is(tokens[index - 1], ".")):
            continue  # not a keyword, or a qualified name such as t.update
        word = token.text.upper()
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        before = tokens[index - 1] if index else None
        if word in _FUNCTIONS and after is not None and _is(after, "("):
            continue

        if word == "SET" and before is not None and before.text.upper() == "CHARACTER":
            continue  # MySQL CAST(x AS CHAR CHARACTER SET utf8mb4)
        if word == "FOR" and after is not None and after.text.upper() in _ROW_LOCK_AFTER_FOR:
            raise StatementError(f"FOR {after.text.upper()} takes row locks", token.offset, sql)
        why = _FORBIDDEN.get(word)
        if why:
            raise StatementError(
                f"{word} {why} and is not allowed in a read-only query (quote it if it is a name)",
                token.offset,
                sql,
            )


def _is(token: _Token, punct: str) -> bool:
    return token.kind == "punct" and token.text == punct


def _tokens(sql: str, reading: Reading) -> list[_Token]:
    """Split ``sql`` the way ``reading`` does, dropping whitespace and comments."""
    if (nul := sql.find("\0")) >= 0:
        raise StatementError("a NUL character ends the text early for some drivers and servers", nul, sql)
    tokens: list[_Token] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in _CODE_SPACE:
            i += 1
        elif sql.startswith("--", i) and _dash_comment(sql, i, reading) or char == "#" and reading.hash_comments:
            i = _line_comment_end(sql, i, reading)
        elif sql.startswith("/*", i):
            if reading.executable_comments and sql.startswith(("!", "M!"), i + 2):
                raise StatementError("MySQL/MariaDB executable comments /*! ... */ are not accepted", i, sql)
            i = _comment_end(sql, i, reading.nested_comments)
        elif char == "'":
            i = _add(tokens, "literal", sql, i, _quoted_end(sql, i, "'", reading.backslash_escapes))
        elif char == '"':
            i = _add(tokens, "name", sql, i, _quoted_end(sql, i, '"', reading.double_quote_backslash))
        elif char == "`" and reading.backticks:
            i = _add(tokens, "name", sql, i, _quoted_end(sql, i, "`", False))
        elif char == "[" and reading.brackets:
            i = _add(tokens, "name", sql, i, _bracket_end(sql, i, reading.brackets_double))
        elif char == "$" and reading.dollar_quotes and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(), tag.end())
            if close < 0:
                raise StatementError("unterminated dollar-quoted literal", i, sql)
            i = _add(tokens, "literal", sql, i, close + len(tag.group()))
        elif reading.sqlite_variables and _SQLITE_VARIABLE.match(sql, i):
            raise StatementError("SQLite reads a parameter name followed by '(' as one token", i, sql)
        elif problem := _odd_character(char):
            raise StatementError(f"{problem} outside a literal or quoted name", i, sql)
        elif word := _WORD.match(sql, i):
            if reading.escape_string_prefix and word.group() in ("E", "e") and sql.startswith("'", word.end()):
                i = _add(tokens, "literal", sql, i, _quoted_end(sql, word.end(), "'", True))
            else:
                i = _add(tokens, "word", sql, i, word.end())
        elif number := _NUMBER.match(sql, i):
            i = _add(tokens, "number", sql, i, number.end())
        else:
            i = _add(tokens, "punct", sql, i, i + 1)
    return tokens


def _odd_character(char: str) -> str | None:
    """Why a character outside literals would be read differently by servers, or None."""
    code = ord(char)
    if code < 32 or code == 127:
        return f"control character U+{code:04X}"
    if code > 127 and unicodedata.category(char)[0] not in "LMN":
        return f"character U+{code:04X} ({unicodedata.name(char, 'unnamed')}), which servers read differently,"
    return None


def _add(tokens: list[_Token], kind: str, sql: str, start: int, end: int) -> int:
    tokens.append(_Token(kind, sql[start:end], start))
    return end


def _dash_comment(sql: str, i: int, reading: Reading) -> bool:
    if not reading.dash_comment_needs_space or i + 2 >= len(sql):
        return True
    follower = ord(sql[i + 2])
    return follower <= 32 or follower == 127  # MySQL: my_isspace() or my_iscntrl(), ASCII only


def _line_comment_end(sql: str, start: int, reading: Reading) -> int:
    ends = [found for char in reading.line_comment_ends if (found := sql.find(char, start)) >= 0]
    end = min(ends) + 1 if ends else len(sql)
    lone = next((k for k in range(start, end) if sql[k] == "\r" and not sql.startswith("\n", k + 1)), None)
    if lone is not None:
        raise StatementError(
            "a carriage return without a line feed inside a -- or # comment (PostgreSQL ends the comment "
            "there, other servers do not)",
            lone,
            sql,
        )
    return end


def _comment_end(sql: str, start: int, nested: bool) -> int:
    if not nested:
        close = sql.find("*/", start + 2)
        if close < 0:
            raise StatementError("unterminated /* comment", start, sql)
        return close + 2
    depth = 0
    for mark in _COMMENT_MARK.finditer(sql, start):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    raise StatementError("unterminated /* comment", start, sql)


def _bracket_end(sql: str, start: int, doubled: bool) -> int:
    if doubled:
        return _quoted_end(sql, start, "]", False)
    close = sql.find("]", start + 1)
    if close < 0:
        raise StatementError("unterminated quoted name", start, sql)
    return close + 1


def _quoted_end(sql: str, start: int, close: str, backslash_escapes: bool) -> int:
    """Index just past the literal or quoted name opening at ``start``; doubling ``close`` escapes it."""
    what = "string literal" if sql[start] == "'" else "quoted name"
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if backslash_escapes and char == "\\":
            i += 2
        elif char == close:
            if sql.startswith(close, i + 1):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise StatementError(f"unterminated {what}", start, sql)
