"""What a pattern promises before it runs, read from Python's own regex parser.

- `literal_options`: sets of strings such that every match contains at least one member, so that
  a fast substring search can find the few lines worth running the regex on.
- `pure_literals`: the pattern *is* a plain string or an alternation of plain strings.
- `folded_options`: the same for patterns whose literals are matched case-insensitively (`(?i)error`),
  each literal with whether it is; `folding.py` turns them into byte needles.
- `pure_folded`: the pattern is a case-insensitive string or alternation of such strings.
- `line_local`: the pattern never looks past the line it matches in (no \\A, \\Z, lookaround or
  scoped `(?-m:...)`), so a search over a block of lines finds what a search per line finds.

Uses `re._parser`, the parser behind `re.compile`: private, stable in shape since Python 3.11, and
promised by no one. When it cannot be imported, fails on a pattern, yields a node this module does
not know, or answers a few known patterns wrongly, every answer here becomes "nothing promised"
(no literals, not pure, not line-local): the scanner then runs every full regex on every line, which
is slower and counts the same. That is logged once, at INFO.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

MIN_LITERAL_BYTES = 3  # shorter literals hit nearly every line: not worth a prefilter

Literals = frozenset[str]
_M = TypeVar("_M")  # what a literal set holds: the literal, or the literal and its case flag

_IMPORT_FAILURE: str | None = None
_REPEAT_NAMES = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
try:
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    _REPEATS = tuple(getattr(sre, name) for name in _REPEAT_NAMES)
    _STRING_ANCHORS = (sre.AT_BEGINNING_STRING, sre.AT_END_STRING)
    # The nodes `re._parser.parse` puts in a sequence (3.11-3.13); any other stops the walk.
    _KNOWN_NODES = frozenset(
        getattr(sre, name)
        for name in (
            *("LITERAL", "NOT_LITERAL", "ANY", "IN", "AT", "BRANCH", "SUBPATTERN", "ATOMIC_GROUP"),
            *("GROUPREF", "GROUPREF_EXISTS", "ASSERT", "ASSERT_NOT", *_REPEAT_NAMES),
        )
    )
except (ImportError, AttributeError) as exc:
    _parser = None
    _IMPORT_FAILURE = f"re._parser is not usable here ({type(exc).__name__}: {exc})"


class _Unreadable(Exception):
    """The parser's answer is not one this module can trust."""


# Anything walking a parse tree of another shape can raise; none of it may escape to the scanner.
PARSE_FAILURES = (_Unreadable, AttributeError, TypeError, ValueError, LookupError, re.error, RecursionError)

_checked: tuple[object, str | None] | None = None  # (parser, why it failed the self-check or None)
_NOT_YET = object()
_reported: object = _NOT_YET  # the parser whose fallback was logged (so, once per process)


def literal_options(pattern: str, char_ok: Callable[[str], bool]) -> list[Literals]:
    """Every set of literals found such that each match contains at least one member of the set,
    built only from characters `char_ok` accepts and each member at least MIN_LITERAL_BYTES long.
    Empty when there is none, or when the parser cannot be trusted: the caller then scans without
    a prefilter."""
    try:
        return _literal_options(parse_checked(pattern), char_ok)
    except PARSE_FAILURES as exc:
        _fall_back(exc)
        return []


def rank(option: Literals) -> tuple[int, int, int]:
    """Sort key, best first: fewer literals, then longer ones (fewer literals and longer ones hit
    fewer lines, and every line hit is decoded and run through the full regex)."""
    sizes = [_utf8_size(lit) for lit in option]
    return len(sizes), -min(sizes), -sum(sizes)


def pure_literals(pattern: str) -> Literals | None:
    """The strings a pattern consists of when it is nothing but a case-sensitive string or an
    alternation of such strings (``ERROR|FATAL``); None otherwise, or when the parser cannot be
    trusted."""
    try:
        return _pure_literals(parse_checked(pattern))
    except PARSE_FAILURES as exc:
        _fall_back(exc)
        return None


def folded_options(pattern: str) -> list[frozenset[tuple[str, bool]]]:
    """Like `literal_options`, with case-insensitive literals kept (each as (text, True)) and no
    length or character filter (`folding.piece_needles` picks what it can search). Empty when the
    parser cannot be trusted."""
    try:
        parsed = parse_checked(pattern)
        return _folded(parsed.data, bool(parsed.state.flags & re.IGNORECASE))
    except PARSE_FAILURES as exc:
        _fall_back(exc)
        return []


def pure_folded(pattern: str) -> frozenset[str] | None:
    """The strings of a pattern that is nothing but a case-insensitive string or alternation of such
    strings (``(?i)error``, ``(?i)(fatal|panic)``), with Unicode folding (no ASCII flag); None
    otherwise, or when the parser cannot be trusted."""
    try:
        parsed = parse_checked(pattern)
    except PARSE_FAILURES as exc:
        _fall_back(exc)
        return None
    flags = parsed.state.flags
    items = list(parsed.data)
    while len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        _, add_flags, del_flags, sub = items[0][1]
        if (add_flags | del_flags) & re.ASCII or del_flags & re.IGNORECASE:
            return None
        flags |= add_flags
        items = list(sub.data)
    if flags & re.ASCII or not flags & re.IGNORECASE:
        return None
    return _plain_alternatives(items)


def line_local(pattern: str) -> bool:
    """True when the pattern never looks beyond the line it matches in; False when unsure."""
    try:
        return _line_local(parse_checked(pattern).data)
    except PARSE_FAILURES as exc:
        _fall_back(exc)
        return False


def parse_checked(pattern: str) -> Any:
    """The parse tree of a pattern, from a parser that passed the self-check."""
    global _checked
    parser = _parser
    if parser is None:
        raise _Unreadable(_IMPORT_FAILURE)
    if _checked is None or _checked[0] is not parser:
        _checked = (parser, _self_check_failure(parser))
    if _checked[1] is not None:
        raise _Unreadable(_checked[1])
    return parser.parse(pattern)


def _ascii(ch: str) -> bool:
    return ch.isascii()


def _fall_back(exc: BaseException) -> None:
    global _reported
    if _reported is not _parser:
        _reported = _parser
        reason = str(exc) if isinstance(exc, _Unreadable) else f"{type(exc).__name__}: {exc}"
        log.info("regex literal prefilter off, every pattern runs on every line (slower, same counts): %s", reason)


def _literal_options(parsed: Any, char_ok: Callable[[str], bool]) -> list[Literals]:
    ignorecase = bool(parsed.state.flags & re.IGNORECASE)
    return [
        option
        for option in _options(parsed.data, ignorecase, char_ok)
        if _min_bytes(option) >= MIN_LITERAL_BYTES
    ]


def _pure_literals(parsed: Any) -> Literals | None:
    if parsed.state.flags & re.IGNORECASE:
        return None
    items = list(parsed.data)
    while len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        _, add_flags, del_flags, sub = items[0][1]
        if (add_flags | del_flags) & re.IGNORECASE:
            return None
        items = list(sub.data)
    return _plain_alternatives(items)


def _plain_alternatives(items: list[Any]) -> frozenset[str] | None:
    """The strings a pattern that is nothing but one string, or an alternation of strings, matches; None
    when some branch is anything else, or empty."""
    if len(items) == 1 and items[0][0] is sre.BRANCH:
        alternatives = [_plain_string(alt.data) for alt in items[0][1][1]]
    else:
        alternatives = [_plain_string(items)]
    if any(not alt for alt in alternatives):
        return None
    return frozenset(alt for alt in alternatives if alt)


def _plain_string(items: Iterable[tuple[Any, Any]]) -> str | None:
    chars = []
    for op, av in items:
        if op is not sre.LITERAL:
            return None
        chars.append(chr(av))
    return "".join(chars)


def _utf8_size(literal: str) -> int:
    return len(literal.encode("utf-8", "surrogatepass"))


def _min_bytes(option: Literals) -> int:
    return min(_utf8_size(lit) for lit in option)


def _known(op: object) -> None:
    if op not in _KNOWN_NODES:
        raise _Unreadable(f"unknown regex node {op!r}")


def _options(
    items: Iterable[tuple[Any, Any]], ignorecase: bool, char_ok: Callable[[str], bool]
) -> list[Literals]:
    """Literal sets any match of this sequence of regex items must contain one member of: case-sensitive
    runs of characters `char_ok` takes."""
    return _walk(items, ignorecase, lambda ch, folded: not folded and char_ok(ch), lambda text, _: text,
                 lambda opt: (-_min_bytes(opt), len(opt)))


def _folded(items: Iterable[tuple[Any, Any]], ignorecase: bool) -> list[frozenset[tuple[str, bool]]]:
    """Literal sets (with their case flag) any match of this sequence of regex items contains one
    member of."""
    return _walk(items, ignorecase, lambda ch, folded: True, lambda text, folded: (text, folded),
                 lambda opt: (-min(len(text) for text, _ in opt), len(opt)))


def _walk(items: Iterable[tuple[Any, Any]], ignorecase: bool, takes: Callable[[str, bool], bool],
          member: Callable[[str, bool], _M], best: Callable[[frozenset[_M]], tuple[int, int]]
          ) -> list[frozenset[_M]]:
    """The sets of required literals of a sequence of regex items: runs of the literal characters `takes`
    (given whether case is ignored there), each made a set member by `member`; an alternation gives the
    union of each alternative's `best` set (the one whose key is least)."""
    options: list[frozenset[_M]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset({member("".join(run), ignorecase)}))
            run.clear()

    for op, av in items:
        _known(op)
        if op is sre.LITERAL and takes(chr(av), ignorecase):
            run.append(chr(av))
            continue
        flush()
        if op is sre.SUBPATTERN:
            _, add_flags, del_flags, sub = av
            inner = (ignorecase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
            options.extend(_walk(sub.data, inner, takes, member, best))
        elif op is sre.ATOMIC_GROUP:
            options.extend(_walk(av.data, ignorecase, takes, member, best))
        elif op is sre.BRANCH:
            # One set per alternative (its best), joined: a match contains one of them whichever
            # alternative it took.
            chosen = []
            for alternative in av[1]:
                found = [opt for opt in _walk(alternative.data, ignorecase, takes, member, best) if opt]
                if not found:
                    break
                chosen.append(min(found, key=best))
            else:
                options.append(frozenset().union(*chosen))
        elif op in _REPEATS:
            low, _, sub = av
            if low >= 1:
                options.extend(_walk(sub.data, ignorecase, takes, member, best))
    flush()
    return options


def _line_local(items: Iterable[tuple[Any, Any]]) -> bool:
    for op, av in items:
        _known(op)
        if op is sre.AT and av in _STRING_ANCHORS:
            return False
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            return False
        if op is sre.SUBPATTERN:
            _, _, del_flags, sub = av
            if del_flags & re.MULTILINE or not _line_local(sub.data):
                return False
        elif op is sre.ATOMIC_GROUP:
            if not _line_local(av.data):
                return False
        elif op is sre.BRANCH:
            if not all(_line_local(alt.data) for alt in av[1]):
                return False
        elif op in _REPEATS:
            if not _line_local(av[2].data):
                return False
        elif op is sre.GROUPREF_EXISTS:
            _, yes, no = av
            if not _line_local(yes.data) or (no is not None and not _line_local(no.data)):
                return False
    return True


def _options_ascii(tree: Any) -> object:
    return _literal_options(tree, _ascii)


def _line_local_tree(tree: Any) -> object:
    return _line_local(tree.data)


# Known answers that touch every node kind the walks read. A parser that still parses but has
# changed what its nodes mean would otherwise give wrong literals, and wrong counts, silently.
_SELF_CHECK: tuple[tuple[str, Callable[[Any], object], object], ...] = (
    (r"^\S+ \S+ ERROR ", _options_ascii, [frozenset({" ERROR "})]),
    ("(?i)timeout", _options_ascii, []),
    (
        r"at (?:timeout|deadline)x+ (?>abc)(?:def)+?(?:ghi)?+ ERR{2,}",
        _options_ascii,
        [frozenset({"at "}), frozenset({"timeout", "deadline"}), frozenset({"abc"}), frozenset({"def"}),
         frozenset({" ER"})],
    ),
    ("ERROR|FATAL", _pure_literals, frozenset({"ERROR", "FATAL"})),
    ("(?:abc)", _pure_literals, frozenset({"abc"})),
    (r"ERR\w", _pure_literals, None),
    ("(?i)ERROR", _pure_literals, None),
    (r"^ERROR (\d+)[^x]*.$", _line_local_tree, True),
    (r"(?<=x)ERROR", _line_local_tree, False),
    (r"a(?!b)|c", _line_local_tree, False),
    (r"\AERROR", _line_local_tree, False),
    (r"(?:x\Z)+", _line_local_tree, False),
    (r"(?-m:^x)", _line_local_tree, False),
    (r"(x)?(?(1)y|\Z)", _line_local_tree, False),
)


def _folded_tree(tree: Any) -> object:
    return _folded(tree.data, bool(tree.state.flags & re.IGNORECASE))


_SELF_CHECK += (
    ("(?i)error", _folded_tree, [frozenset({("error", True)})]),
    (r"^\S+ (?i:warn|fatal)x{2,}", _folded_tree,
     [frozenset({(" ", False)}), frozenset({("warn", True), ("fatal", True)}), frozenset({("x", False)})]),
)


def _self_check_failure(parser: Any) -> str | None:
    for pattern, answer, expected in _SELF_CHECK:
        try:
            got = answer(parser.parse(pattern))
        except PARSE_FAILURES as exc:
            return f"self-check on {pattern!r} raised {type(exc).__name__}: {exc}"
        if got != expected:
            return f"self-check on {pattern!r} answered {got!r}, expected {expected!r}"
    return None
