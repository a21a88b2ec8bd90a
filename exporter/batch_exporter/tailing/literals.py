"""What a pattern promises before it runs, read from Python's own regex parser.

- `literal_options`: sets of strings such that every match contains at least one member, so that
  a fast substring search can find the few lines worth running the regex on.
- `pure_literals`: the pattern *is* a plain string or an alternation of plain strings.
- `line_local`: the pattern never looks past the line it matches in (no \\A, \\Z, lookaround or
  scoped `(?-m:...)`), so a search over a block of lines finds what a search per line finds.

Uses `re._parser`, the parser behind `re.compile` (stable in shape since Python 3.11).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]

MIN_LITERAL_BYTES = 3  # shorter literals hit nearly every line: not worth a prefilter

_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_STRING_ANCHORS = (sre.AT_BEGINNING_STRING, sre.AT_END_STRING)

Literals = frozenset[str]


def literal_options(pattern: str, char_ok: Callable[[str], bool]) -> list[Literals]:
    """Every set of literals found such that each match contains at least one member of the set,
    built only from characters `char_ok` accepts and each member at least MIN_LITERAL_BYTES long.
    Empty when there is none: the caller then scans without a prefilter."""
    parsed = _parser.parse(pattern)
    ignorecase = bool(parsed.state.flags & re.IGNORECASE)
    return [
        option
        for option in _options(parsed.data, ignorecase, char_ok)
        if _min_bytes(option) >= MIN_LITERAL_BYTES
    ]


def rank(option: Literals) -> tuple[int, int, int]:
    """Sort key, best first: fewer literals, then longer ones (fewer literals and longer ones hit
    fewer lines, and every line hit is decoded and run through the full regex)."""
    sizes = [_utf8_size(lit) for lit in option]
    return len(sizes), -min(sizes), -sum(sizes)


def pure_literals(pattern: str) -> Literals | None:
    """The strings a pattern consists of when it is nothing but a case-sensitive string or an
    alternation of such strings (``ERROR|FATAL``); None otherwise."""
    parsed = _parser.parse(pattern)
    if parsed.state.flags & re.IGNORECASE:
        return None
    items = list(parsed.data)
    while len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        _, add_flags, del_flags, sub = items[0][1]
        if (add_flags | del_flags) & re.IGNORECASE:
            return None
        items = list(sub.data)
    if len(items) == 1 and items[0][0] is sre.BRANCH:
        alternatives = [_plain_string(alt.data) for alt in items[0][1][1]]
    else:
        alternatives = [_plain_string(items)]
    if any(not alt for alt in alternatives):
        return None
    return frozenset(alt for alt in alternatives if alt)


def line_local(pattern: str) -> bool:
    """True when the pattern never looks beyond the line it matches in."""
    return _line_local(_parser.parse(pattern).data)


def _plain_string(items: Iterable[tuple[object, object]]) -> str | None:
    chars = []
    for op, av in items:
        if op is not sre.LITERAL:
            return None
        chars.append(chr(av))  # type: ignore[arg-type]
    return "".join(chars)


def _utf8_size(literal: str) -> int:
    return len(literal.encode("utf-8", "surrogatepass"))


def _min_bytes(option: Literals) -> int:
    return min(_utf8_size(lit) for lit in option)


def _options(
    items: Iterable[tuple[object, object]], ignorecase: bool, char_ok: Callable[[str], bool]
) -> list[Literals]:
    """Literal sets any match of this sequence of regex items must contain one member of."""
    options: list[Literals] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is sre.LITERAL and not ignorecase and char_ok(chr(av)):  # type: ignore[arg-type]
            run.append(chr(av))  # type: ignore[arg-type]
            continue
        flush()
        if op is sre.SUBPATTERN:
            _, add_flags, del_flags, sub = av  # type: ignore[misc]
            inner = (ignorecase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
            options.extend(_options(sub.data, inner, char_ok))
        elif op is sre.ATOMIC_GROUP:
            options.extend(_options(av.data, ignorecase, char_ok))  # type: ignore[attr-defined]
        elif op is sre.BRANCH:
            # One set per alternative (its best), joined: a match contains one of them whichever
            # alternative it took.
            chosen = []
            for alternative in av[1]:  # type: ignore[index]
                found = [opt for opt in _options(alternative.data, ignorecase, char_ok) if opt]
                if not found:
                    break
                chosen.append(min(found, key=lambda opt: (-_min_bytes(opt), len(opt))))
            else:
                options.append(frozenset().union(*chosen))
        elif op in _REPEATS:
            low, _, sub = av  # type: ignore[misc]
            if low >= 1:
                options.extend(_options(sub.data, ignorecase, char_ok))
    flush()
    return options


def _line_local(items: Iterable[tuple[object, object]]) -> bool:
    for op, av in items:
        if op is sre.AT and av in _STRING_ANCHORS:
            return False
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            return False
        if op is sre.SUBPATTERN:
            _, _, del_flags, sub = av  # type: ignore[misc]
            if del_flags & re.MULTILINE or not _line_local(sub.data):
                return False
        elif op is sre.ATOMIC_GROUP:
            if not _line_local(av.data):  # type: ignore[attr-defined]
                return False
        elif op is sre.BRANCH:
            if not all(_line_local(alt.data) for alt in av[1]):  # type: ignore[index]
                return False
        elif op in _REPEATS:
            if not _line_local(av[2].data):  # type: ignore[index]
                return False
        elif op is sre.GROUPREF_EXISTS:
            _, yes, no = av  # type: ignore[misc]
            if not _line_local(yes.data) or (no is not None and not _line_local(no.data)):
                return False
    return True
