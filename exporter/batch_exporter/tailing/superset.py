"""A byte regex that matches every line a Python pattern matches: a prefilter for patterns without a
usable literal (`\\b[45]\\d\\d\\b`, `\\d{5}`), run by Hyperscan (the `hyperscan` package) over raw bytes.

The translation works character by character. A decoded line is a sequence of characters, each
read from its own span of bytes: an ASCII character from its one byte (in the codecs accepted here),
any other character, U+FFFD included, from a span that starts with a byte >= 0x80 (1-4 bytes in
UTF-8, 1-2 in the double-byte codecs, 1 in single-byte ones). Each element of the pattern becomes a
byte regex accepting the exact ASCII bytes of the characters it accepts (asked of Python's `re`
itself) and, unless it accepts no non-ASCII character, any non-ASCII span. So wherever the pattern
matches the decoded line, the byte regex matches the line's bytes: it over-approximates, and every
candidate line is matched again by the real pattern, except as below.

Zero-width assertions are dropped (that only widens), except a \\b at the very start (end) of the
pattern next to an element that can only match word characters: it becomes "after (before) a
non-word character or the line's edge", which consumes the neighbouring character outside the match.
Group references and conditionals are refused (None: the scanner keeps its other paths).

`exact` says the byte regex, on a line of ASCII bytes without '\\r', matches exactly when the pattern
matches the line's text (no assertion dropped, no atomic group or possessive repeat widened): such
lines are counted without running the pattern.
"""

from __future__ import annotations

import codecs
import functools
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from .folding import case_variants
from .literals import PARSE_FAILURES, parse_checked

log = logging.getLogger(__name__)

MAX_REPEAT_BOUND = 1000  # larger counted repeats: left to the plain path

try:
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the other paths still count
    _parser = None

_ASCII_CHARS = [chr(c) for c in range(128)]
_WORD_BYTES = frozenset(b for b in range(128) if re.match(r"\w", chr(b)))
_NON_WORD_ASCII = [b for b in range(128) if b not in _WORD_BYTES and b != 0x0A]


@dataclass(frozen=True)
class Superset:
    # Hyperscan syntax, for bytes, ^ and $ at line edges; never matches across a b'\n', except where the
    # newline stands for a '$' inside the pattern (then `exact` is False)
    regex: bytes
    exact: bool  # on ASCII lines without '\r' it matches exactly the lines the pattern matches
    # the same, carried on to the end of its line and its newline, so that a line is found once however
    # many matches it holds; None when a '$' inside the regex leaves no way to (Hyperscan takes a '$'
    # only at the end of an expression)
    line_regex: bytes | None = None


class _Refused(Exception):
    pass


@functools.cache
def high_span(codec: str) -> str | None:
    """A byte regex for any span a non-ASCII character (or U+FFFD) can be decoded from, or None for
    a codec where that is not known (EUC-JP's and GB18030's longer sequences, non-ASCII-compatible
    codecs)."""
    name = codecs.lookup(codec).name
    if name == "utf-8":
        return r"[\x80-\xff]{1,4}"
    try:
        if bytes(range(128)).decode(name) != "".join(_ASCII_CHARS):
            return None
    except UnicodeDecodeError:
        return None
    single = True
    for lead in range(128, 256):
        for trail in range(256):
            seq = bytes([lead, trail])
            strict = True
            try:
                text = seq.decode(name)
            except UnicodeDecodeError as exc:
                if exc.start == 0 and ("incomplete" in exc.reason or "truncated" in exc.reason or exc.end > 2):
                    return None  # longer sequences exist
                text, strict = seq.decode(name, "replace"), False  # each replacement stands for its own bytes
            # A two-byte sequence must never give an ASCII character except its own ASCII trail byte.
            if any(ch.isascii() for ch in text) and not (
                len(text) == 2 and text[1] == chr(trail) and not text[0].isascii()
            ):
                return None
            if len(text) == 1:
                single = False
            elif strict and (len(text) > 2 or (len(text) == 2 and not text[1].isascii()
                                               and not _each_alone(seq, text, name))):
                return None  # one span gives two characters (big5hkscs's 0x8862): a span per character fails
    return r"[\x80-\xff]" if single else r"[\x80-\xff][^\n]?"


def _each_alone(seq: bytes, text: str, codec: str) -> bool:
    """Whether the two characters `seq` decodes to come from its two bytes one by one."""
    try:
        return seq[:1].decode(codec) == text[0] and seq[1:].decode(codec) == text[1]
    except UnicodeDecodeError:
        return False


def superset(pattern: str, codec: str) -> Superset | None:
    """The byte regex for `pattern` in lines of `codec`, or None when it cannot be built soundly."""
    high = high_span(codec)
    if high is None or _parser is None:
        return None
    try:
        parsed = parse_checked(pattern)  # the parser that passed literals.py's self-check, or raises
        translator = _Translator(high, parsed.state.flags)
        body = translator.sequence(list(parsed.data), parsed.state.flags, at_start=True, at_end=True)
    except (_Refused, *PARSE_FAILURES):
        return None
    regex = body.encode("latin-1")
    if re.compile(regex, re.MULTILINE).search(b""):
        return None  # matches every line (no byte to find): leave it to the plain path
    line = _to_line_end(body)
    if line is None:
        # A '$' inside: Hyperscan, in multiline mode, misses some such matches before a block's last
        # newline (python-hyperscan 0.9.1: `(a\b$)` on a 17-byte line). The newline itself stands for
        # it instead; a match may then run on into the next line and report that line, so no line is
        # counted without being decoded and matched.
        return Superset(regex=body.replace("$", r"\n").encode("latin-1"), exact=False)
    return Superset(regex=regex, exact=translator.exact, line_regex=line.encode("latin-1"))


_LINE_REST = r"[^\n]*\n"
_END_OF_LINE = r"\r?$"  # the line's text ends before a '\r' of '\r\n'


def _to_line_end(body: str) -> str | None:
    r"""The regex `body`, followed by the rest of its line and the newline. Its only '$'s (the
    translation writes a '$' character as \x24) may end it: a closing \b, `(?:$|[non-word])`, or an
    end of line, `\r?$`; either then becomes the newline itself."""
    boundary = f"(?:$|{_NON_WORD})"
    if body.endswith(boundary) and "$" not in body[: -len(boundary)]:
        return rf"{body[: -len(boundary)]}(?:\n|{_NON_WORD}{_LINE_REST})"
    if body.endswith(_END_OF_LINE) and "$" not in body[: -len(_END_OF_LINE)]:
        return rf"{body[: -len(_END_OF_LINE)]}\r?\n"
    if "$" in body:
        return None
    return f"(?:{body}){_LINE_REST}"


class _Translator:
    def __init__(self, high: str, flags: int) -> None:
        self.high = high
        # The span a \b at the start may consume: the last byte of any character before it.
        self.before_tail = r"[\x80-\xff]" if high.startswith(r"[\x80-\xff]{") else r"[\x80-\xff][^\n]"
        self.exact = True

    def sequence(self, items: list[tuple[Any, Any]], flags: int, at_start: bool, at_end: bool) -> str:
        parts: list[str] = []
        for index, (op, av) in enumerate(items):
            first, last = at_start and index == 0, at_end and index == len(items) - 1
            if op is sre.AT:
                parts.append(self.at(av, items, index, flags, at_start, at_end))
            else:
                parts.append(self.item(op, av, flags, first, last))
        return "".join(parts)

    def at(self, code: Any, items: list[tuple[Any, Any]], index: int, flags: int, at_start: bool, at_end: bool) -> str:
        if code in (sre.AT_BEGINNING, sre.AT_BEGINNING_LINE, sre.AT_BEGINNING_STRING):
            return "^"
        if code in (sre.AT_END, sre.AT_END_LINE, sre.AT_END_STRING):
            return _END_OF_LINE
        if code is sre.AT_BOUNDARY:
            if at_start and index == 0 and len(items) > 1 and _word_only(items[1:], flags, first=True):
                return f"(?:^|{_NON_WORD}|{self.before_tail})"
            if at_end and index == len(items) - 1 and index > 0 and _word_only(items[:index], flags, first=False):
                return f"(?:$|{_NON_WORD})"
        self.exact = False  # dropped
        return ""

    def item(self, op: Any, av: Any, flags: int, first: bool, last: bool) -> str:
        if op is sre.LITERAL or op is sre.NOT_LITERAL or op is sre.ANY or op is sre.IN:
            return self.char_class(op, av, flags)
        if op is sre.SUBPATTERN:
            _, add, delete, sub = av
            inner = (flags | add) & ~delete
            return "(?:" + self.sequence(list(sub.data), inner, first, last) + ")"
        if op is sre.ATOMIC_GROUP:
            self.exact = False
            return "(?:" + self.sequence(list(av.data), flags, first, last) + ")"
        if op is sre.BRANCH:
            alternatives = [self.sequence(list(alt.data), flags, first, last) for alt in av[1]]
            return "(?:" + "|".join(alternatives) + ")"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
            low, high, sub = av
            if op is not sre.MAX_REPEAT and op is not sre.MIN_REPEAT:
                self.exact = False
            if low > MAX_REPEAT_BOUND:
                raise _Refused("repeat bound")
            body = "(?:" + self.sequence(list(sub.data), flags, False, False) + ")"
            if high is sre.MAXREPEAT or high > MAX_REPEAT_BOUND:
                if high is not sre.MAXREPEAT:
                    self.exact = False
                return f"{body}{{{low},}}"
            return f"{body}{{{low},{high}}}"
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            self.exact = False
            return ""
        raise _Refused(f"node {op!r}")

    def char_class(self, op: Any, av: Any, flags: int) -> str:
        source, ascii_only = _class_source(op, av, flags)
        test = re.compile(source, flags & (re.IGNORECASE | re.ASCII | re.DOTALL)).fullmatch
        members = [ord(ch) for ch in _ASCII_CHARS if ch != "\n" and test(ch)]
        alternatives = []
        if members:
            alternatives.append(_byte_class(members))
        if not ascii_only:
            alternatives.append(self.high)
        if not alternatives:
            raise _Refused("a class that matches nothing in a line")
        return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _class_source(op: Any, av: Any, flags: int) -> tuple[str, bool]:
    """A Python regex for one character of this node, and whether it surely matches only ASCII."""
    ignorecase = bool(flags & re.IGNORECASE)
    if op is sre.LITERAL:
        ch = chr(av)
        if ch == "\n":
            raise _Refused("a newline in a line pattern")
        if not ch.isascii():
            return re.escape(ch), False
        if ignorecase and not flags & re.ASCII:
            return re.escape(ch), all(v.isascii() for v in case_variants(ch)[ch])
        return re.escape(ch), True
    if op is sre.NOT_LITERAL:
        return "[^" + _escape(av) + "]", False
    if op is sre.ANY:
        return ".", False
    negated = False
    pieces = []
    ascii_only = not ignorecase or bool(flags & re.ASCII)
    for kind, value in av:
        if kind is sre.NEGATE:
            negated, ascii_only = True, False
        elif kind is sre.LITERAL:
            pieces.append(_escape(value))
            ascii_only = ascii_only and value < 128
        elif kind is sre.RANGE:
            pieces.append(_escape(value[0]) + "-" + _escape(value[1]))
            ascii_only = ascii_only and value[1] < 128
        elif kind is sre.CATEGORY:
            name = _CATEGORIES.get(value)
            if name is None:
                raise _Refused(f"category {value!r}")
            pieces.append(name)
            ascii_only = ascii_only and bool(flags & re.ASCII) and name.islower()
        else:
            raise _Refused(f"class item {kind!r}")
    return "[" + ("^" if negated else "") + "".join(pieces) + "]", ascii_only


_CATEGORIES = (
    {
        sre.CATEGORY_DIGIT: r"\d",
        sre.CATEGORY_NOT_DIGIT: r"\D",
        sre.CATEGORY_SPACE: r"\s",
        sre.CATEGORY_NOT_SPACE: r"\S",
        sre.CATEGORY_WORD: r"\w",
        sre.CATEGORY_NOT_WORD: r"\W",
    }
    if _parser is not None
    else {}
)


def _escape(code: int) -> str:
    return f"\\U{code:08x}"


def _byte_class(members: list[int]) -> str:
    ranges: list[tuple[int, int]] = []
    for byte in members:
        if ranges and ranges[-1][1] == byte - 1:
            ranges[-1] = (ranges[-1][0], byte)
        else:
            ranges.append((byte, byte))
    body = "".join(f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in ranges)
    return f"[{body}]"


def _word_only(items: list[tuple[Any, Any]], flags: int, first: bool) -> bool:
    """True when the first (last) character any match of `items` consumes is surely a word character."""
    if not items:
        return False
    op, av = items[0] if first else items[-1]
    if op is sre.LITERAL:
        return _word_char(chr(av), flags)
    if op is sre.IN:
        for kind, value in av:
            if kind is sre.LITERAL:
                if not _word_char(chr(value), flags):
                    return False
            elif kind is sre.RANGE:
                low, high = value
                if not any(a <= low and high <= b for a, b in ((48, 57), (65, 90), (97, 122))):
                    return False
            elif kind is sre.CATEGORY:
                if value not in (sre.CATEGORY_DIGIT, sre.CATEGORY_WORD):
                    return False
            else:
                return False
        return True
    if op is sre.SUBPATTERN:
        _, add, delete, sub = av
        return not (add or delete) and _word_only(list(sub.data), flags, first)
    if op is sre.BRANCH:
        return all(_word_only(list(alt.data), flags, first) for alt in av[1])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, _, sub = av
        return low >= 1 and _word_only(list(sub.data), flags, first)
    return False


def _word_char(ch: str, flags: int) -> bool:
    """`\\w` matches ch and (IGNORECASE) its case variants, which are letters too."""
    return (ch.isascii() or not flags & re.ASCII) and bool(re.fullmatch(r"\w", ch, flags & re.ASCII))


_NON_WORD = _byte_class(_NON_WORD_ASCII)[:-1] + r"\x80-\xff]"  # a non-word ASCII byte or any byte >= 0x80


_UNSURE_LINE = rb"[\x80-\xff\r][^\n]*\n"  # a line with a byte the exact answer does not cover


class LineFinder:
    """The lines, in a block of b'\\n'-terminated lines, where a superset regex matches: one Hyperscan
    pass over the block (the `hyperscan` package). With the regex carried on to its line's end
    (Superset.line_regex), Hyperscan reports each such line once, at its newline, however many matches it
    holds; else where each match ends, and the lines are worked out from those. One Python call per
    report is most of the cost when many lines match.

    With `unsure` (for an exact superset), the same pass also reports each line holding a byte >= 0x80
    or a '\\r': the candidate lines among those are the only ones whose answer is not already known."""

    def __init__(self, regex: bytes, line_regex: bytes | None = None, *, unsure: bool = False) -> None:
        """Raises ValueError when Hyperscan is missing or refuses the regex."""
        if hyperscan is None:
            raise ValueError(_MISSING)
        self._whole_lines = line_regex is not None
        expressions = [line_regex if line_regex is not None else regex] + ([_UNSURE_LINE] if unsure else [])
        try:
            database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            database.compile(expressions=expressions, ids=list(range(len(expressions))),
                             elements=len(expressions), flags=[_FLAGS] * len(expressions))
        except hyperscan.error as exc:
            raise ValueError(f"Hyperscan refused the prefilter: {exc}") from None
        self.unsure = unsure
        self._database = database
        self._lock = threading.Lock()  # one scratch space per database: one scan at a time

    def line_ends(self, haystack: bytes | bytearray, start: int, stop: int) -> tuple[list[int], list[int]]:
        """The index of the newline ending each line of haystack[start:stop] where the regex matches,
        in order; and with `unsure`, the newline of each line holding a byte >= 0x80 or a '\\r' (else
        none). haystack[start] begins a line whatever precedes it."""
        found: tuple[list[int], list[int]] = ([], [])
        report = (found[0].append, found[1].append)
        with self._lock, memoryview(haystack) as view, view[start:stop] as block:
            # A buffer is scanned in place (the stubs say bytes or str only).
            self._database.scan(
                block,  # type: ignore[type-var]
                match_event_handler=lambda which, _f, to, _fl, _c: report[which](to),
            )
        last = start - 1  # a report at `to` (counted from the block's start) of a whole line: its newline
        ends, unsure = ([last + to for to in reported] for reported in found)
        if self._whole_lines:
            return ends, unsure
        lines: list[int] = []
        line_end = -1
        find = haystack.find
        for end in ends:  # the index of each match's last byte (a newline standing for a '$', or before one)
            if end > line_end:  # a match ending after the last line found ends in a later line
                line_end = find(b"\n", end, stop)
                lines.append(line_end)
        return lines, unsure


def line_finder(found: Superset) -> LineFinder | None:
    """The search for lines the superset regex matches in, or None when Hyperscan is not installed
    or refuses the regex (logged once)."""
    global _reported
    try:
        try:
            return LineFinder(found.regex, found.line_regex, unsure=found.exact)
        except ValueError:
            if found.line_regex is None:
                raise
            return LineFinder(found.regex, unsure=found.exact)  # Hyperscan may refuse the longer form only
    except ValueError as exc:
        if not _reported:
            _reported = True
            log.info("fast prefilter off for a pattern (%s); it decodes and searches every line", exc)
        return None


_MISSING = "the hyperscan package is not installed"
_reported = False

try:
    import hyperscan

    _FLAGS = hyperscan.HS_FLAG_MULTILINE
except ImportError:
    hyperscan = None  # type: ignore[assignment]
    _FLAGS = 0
