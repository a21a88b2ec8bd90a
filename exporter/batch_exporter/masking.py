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

`clean_line` also removes control and format characters first, so that ``4\x001\x001...`` cannot
split a number into single digits past the mask, and a terminal never receives escape sequences from
a log file.
"""
from __future__ import annotations

import re
import unicodedata
from collections import deque

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


def mask_digits(text: str, keep_last: int = KEEP_LAST) -> str:
    """`text` with every run of 12+ digits masked but for its last `keep_last` digits (0 to 4)."""
    if not 0 <= keep_last <= KEEP_LAST:
        raise ValueError(f"keep_last must be between 0 and {KEEP_LAST} (got {keep_last})")
    def masked(match: re.Match[str]) -> str:
        run = match.group()
        if _digit_count(run) < MIN_DIGITS or _IPV4_OF_12_DIGITS.fullmatch(run):
            return run
        return _mask_run(run, keep_last)

    return _GROUPED_RUN.sub(masked, text)


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
