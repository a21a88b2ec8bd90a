"""Make text from logs and databases safe to show a person: card numbers and long digit runs hidden.

A run of 12 or more digits is treated as a possible card number (PAN), also when it is written in
groups the way card numbers are: groups of at least three digits joined by up to three separators,
any mix of
- spaces of any kind (no-break, thin, ideographic, tabs, line breaks);
- hyphens and dashes (``-``, U+2010..U+2015 from word processors, the minus sign, full-width and
  small forms, and the katakana prolonged-sound mark that Japanese input often types for a dash);
- dots, slashes, underscores and plus signs, with their full-width forms (``+`` is a space in a
  form-encoded URL), and the percent-escapes of space, dash, dot, slash, underscore and plus (``%20``);
- invisible control and format characters (zero-width space, soft hyphen, bidi controls).

Every digit of such a run but the last four becomes ``*``; separators stay. Groups of one or two
digits do not join a run, so that dates, times and addresses stay readable (``id=12 2026-11-27
02:00:01.123``, ``10.1.2.3``); an IPv4 address made of four three-digit parts (``192.168.100.200``)
is exempt as a whole, as no card number has only 12 digits written that way. The price of so many
separators, taken on purpose: 12 digits or more are masked also when they are a decimal
(``1732662000.123``), a compact stamp (``20261127_020001``) or an address followed by a number
(``192.168.100.200 5432``). Unicode digits count too (full-width ``４１１１`` in Japanese logs).

Card numbers are also found whatever separator a writer chose: a run of 13 to 19 digits in groups of
any size joined by the same separator each time (one to three characters that are not letters or
digits, or percent-escapes: ``4,111,111,111,111,111``, ``4111:1111:1111:1111``, ``4111%2C1111...``)
is masked when it passes the Luhn check and does not start with 0. Such a run is too rare by chance
to hide timestamps or amounts (1 in 10 runs of that length pass the check); `mask_cards` applies only
this rule, for text where other long numbers must stay readable (file paths in labels).

`clean_line` also removes control and format characters first, so that ``4\x001\x001...`` cannot
split a number into single digits past the mask, and a terminal never receives escape sequences from
a log file.
"""
from __future__ import annotations

import logging
import re
import unicodedata
from collections import deque
from collections.abc import Iterator
from itertools import pairwise

MIN_DIGITS = 12
KEEP_LAST = 4
DEFAULT_WIDTH = 200
# Longest piece of a line that is looked at; the rest is never shown (see clean_line).
_LOOK_AT = 4096

_SEPARATOR_CHARS = (
    "\\s\x00-\x1f\x7f-\x9f"  # every space and control character
    "\\-\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d\u30fc\uff70"  # hyphens, dashes, minus, prolonged sound
    "./_+\u00b7\u2024\u2027\u2044\u2215\u30fb\uff0b\uff0e\uff0f\uff3f\uff65"  # dots, slashes, _ and +
    "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"  # invisible format characters
)
_SEPARATOR = f"(?:[{_SEPARATOR_CHARS}]|%(?:20|2[BbDdEeFf]|5[Ff]))"
_SPLIT = re.compile(f"({_SEPARATOR})")
_GROUPED_RUN = re.compile(rf"\d{{3,}}(?:{_SEPARATOR}{{1,3}}\d{{3,}})*")
_DIGIT_CHAIN = re.compile(rf"\d(?:{_SEPARATOR}{{0,3}}\d)*{_SEPARATOR}{{0,3}}")
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9])"
_IPV4_OF_12_DIGITS = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# A digit run that is not the hex digits of a percent-escape (the 20 of %20 or the 2 of %2C).
_CARD_GROUP = re.compile(r"(?<!%)(?<!%[0-9A-Fa-f])\d+")
_CARD_SEPARATOR = re.compile(r"(?:%[0-9A-Fa-f]{2}|_|[^\w])(?:%[0-9A-Fa-f]{2}|_|[^\w]){0,2}")
CARD_DIGITS = (13, 19)
# Control characters that break a line or a word become a space, so that words on both sides stay apart.
_BLANKS = dict.fromkeys("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029", " ")


def _mask_run(run: str, keep_last: int) -> str:
    # Odd pieces are separators; their digits (the 20 of %20) are not the number's.
    pieces = _SPLIT.split(run)
    hide = _digit_count(run) - keep_last
    for i in range(0, len(pieces), 2):
        out = []
        for ch in pieces[i]:
            if ch.isdigit() and hide > 0:
                out.append("*")
                hide -= 1
            else:
                out.append(ch)
        pieces[i] = "".join(out)
    return "".join(pieces)


def _digit_count(run: str) -> int:
    return sum(ch.isdigit() for piece in _SPLIT.split(run)[::2] for ch in piece)


def luhn_valid(digits: str) -> bool:
    """True when the digits (any Unicode decimal digits) pass the Luhn check of card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        value = int(ch) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_windows(text: str) -> Iterator[list[re.Match[str]]]:
    """Digit groups of `text` that together read as a card number (see the module's text)."""
    groups = list(_CARD_GROUP.finditer(text))
    chain, gap = groups[:1], None
    for before, group in pairwise(groups):
        between = text[before.end():group.start()]
        if gap is not None and between == gap:
            chain.append(group)
            continue
        yield from _luhn_windows(chain)
        # a group that ends one chain may start the next: "2026-11-27 4111 1111 1111 1111"
        if _CARD_SEPARATOR.fullmatch(between):
            chain, gap = [before, group], between
        else:
            chain, gap = [group], None
    yield from _luhn_windows(chain)


def _luhn_windows(chain: list[re.Match[str]]) -> Iterator[list[re.Match[str]]]:
    low, high = CARD_DIGITS
    for start in range(len(chain)):
        digits = ""
        for end in range(start, len(chain)):
            digits += chain[end].group()
            if len(digits) > high:
                break
            if len(digits) >= low and digits[0] != "0" and luhn_valid(digits):
                yield chain[start:end + 1]


def _hide(positions: list[int], keep_last: int, into: set[int]) -> None:
    into.update(positions[: len(positions) - keep_last])


def _card_positions(text: str, keep_last: int, into: set[int]) -> None:
    for window in _card_windows(text):
        _hide([i for group in window for i in range(group.start(), group.end())], keep_last, into)


def _masked(text: str, hidden: set[int]) -> str:
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text)) if hidden else text


def _check_keep_last(keep_last: int) -> None:
    if not 0 <= keep_last <= KEEP_LAST:
        raise ValueError(f"keep_last must be between 0 and {KEEP_LAST} (got {keep_last})")


def mask_cards(text: str, keep_last: int = KEEP_LAST) -> str:
    """`text` with only the card numbers masked (13-19 Luhn-valid digits, any repeated separator)."""
    _check_keep_last(keep_last)
    hidden: set[int] = set()
    _card_positions(text, keep_last, hidden)
    return _masked(text, hidden)


def mask_path(path: str) -> str:
    """A file path fit for a metric label or a log: card numbers masked, other numbers (dates, sequence
    numbers) kept so that different files keep different labels where they can."""
    return mask_cards(path)


def mask_digits(text: str, keep_last: int = KEEP_LAST) -> str:
    """`text` with every card number and every run of 12+ digits masked but for its last `keep_last`
    digits (0 to 4)."""
    _check_keep_last(keep_last)
    hidden: set[int] = set()
    for match in _GROUPED_RUN.finditer(text):
        run = match.group()
        if _digit_count(run) < MIN_DIGITS or _IPV4_OF_12_DIGITS.fullmatch(run):
            continue
        positions, offset = [], match.start()
        for i, piece in enumerate(_SPLIT.split(run)):
            if i % 2 == 0:  # odd pieces are separators, whose digits (the 20 of %20) are not the number's
                positions += [offset + k for k, ch in enumerate(piece) if ch.isdigit()]
            offset += len(piece)
        _hide(positions, keep_last, hidden)
    _card_positions(text, keep_last, hidden)
    return _masked(text, hidden)


class MaskingFilter(logging.Filter):
    """Masks card numbers and long digit runs in every record a handler emits (message and arguments
    merged first, exception text included), so that the exporter's own log never shows one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = mask_digits(record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_digits(record.exc_text)
        record.msg, record.args = message, None
        return True


def _mask_trailing_run(text: str) -> str:
    """`text` with the digits (of any group size) that reach its very end all masked."""
    # The last of the non-overlapping chains, not a search anchored at the end: that one would start
    # over at every digit and take quadratic time on a line of digits and spaces.
    chains = deque(_DIGIT_CHAIN.finditer(text), maxlen=1)
    if not chains or chains[0].end() != len(text):
        return text
    return text[: chains[0].start()] + _mask_run(chains[0].group(), 0)


def strip_invisible(text: str) -> str:
    """Remove control and format characters (category Cc, Cf); tabs and line breaks become spaces."""
    return "".join(
        _BLANKS.get(ch, ch) for ch in text
        if ch in _BLANKS or unicodedata.category(ch) not in ("Cc", "Cf")
    )


def clean_line(text: str, width: int = DEFAULT_WIDTH) -> str:
    """One line of a log made fit to print: invisible characters removed, digit runs masked, cut to
    `width` characters (ending in '…' when cut).

    Only the first few KiB of a huge line are looked at; a digit run reaching that cut is masked
    whatever its length, since its true length is unknown.
    """
    cut = len(text) > _LOOK_AT
    visible = strip_invisible(text[:_LOOK_AT])
    visible = mask_digits(visible)
    if cut:
        visible = _mask_trailing_run(visible)
    visible = visible.rstrip()
    if len(visible) > width or cut:
        return visible[: max(1, width - 1)] + "…"
    return visible
