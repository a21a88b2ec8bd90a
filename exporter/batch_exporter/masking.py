"""Make text from logs and databases safe to show a person: card numbers and long digit runs hidden.

A run of 12 or more digits is treated as a possible card number (PAN), also when it is written in
groups the way card numbers are (``4111 1111 1111 1111``, ``3782-822463-10005``, ``4111 - 1111 ...``:
groups of at least three digits joined by up to three spaces or dashes). Every digit but the last four
becomes ``*``; separators stay. Groups of one or two digits do not join a run, so that dates and times
next to a number (``id=12 2026-11-27 02:00``) stay readable. Unicode digits count too
(full-width ``４１１１`` in Japanese logs). Control and invisible format characters are removed first,
so that ``4\\x001\\x001...`` or zero-width spaces cannot split a number past the mask, and a terminal
never receives escape sequences from a log file.
"""
from __future__ import annotations

import re
import unicodedata

MIN_DIGITS = 12
KEEP_LAST = 4
DEFAULT_WIDTH = 200
# Longest piece of a line that is looked at; the rest is never shown (see clean_line).
_LOOK_AT = 4096

_SEPARATOR = "[ \\-\u3000\uff0d]"  # space, dash, ideographic space, full-width hyphen-minus
_GROUPED_RUN = re.compile(rf"\d{{3,}}(?:{_SEPARATOR}{{1,3}}\d{{3,}})*")
_TRAILING_RUN = re.compile(rf"\d(?:{_SEPARATOR}{{0,3}}\d)*{_SEPARATOR}{{0,3}}$")
_BLANKS = {"\t": " ", "\u2028": " ", "\u2029": " "}


def _mask_run(run: str, keep_last: int) -> str:
    digits = sum(1 for ch in run if ch.isdigit())
    hide = digits - keep_last
    out = []
    for ch in run:
        if ch.isdigit() and hide > 0:
            out.append("*")
            hide -= 1
        else:
            out.append(ch)
    return "".join(out)


def mask_digits(text: str, keep_last: int = KEEP_LAST) -> str:
    """`text` with every run of 12+ digits masked but for its last `keep_last` digits (0 to 4)."""
    if not 0 <= keep_last <= KEEP_LAST:
        raise ValueError(f"keep_last must be between 0 and {KEEP_LAST} (got {keep_last})")
    def masked(match: re.Match[str]) -> str:
        run = match.group()
        if sum(1 for ch in run if ch.isdigit()) < MIN_DIGITS:
            return run
        return _mask_run(run, keep_last)

    return _GROUPED_RUN.sub(masked, text)


def strip_invisible(text: str) -> str:
    """Remove control and format characters (category Cc, Cf); tabs and line separators become spaces."""
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
        visible = _TRAILING_RUN.sub(lambda m: _mask_run(m.group(), 0), visible)
    visible = visible.rstrip()
    if len(visible) > width or cut:
        return visible[: max(1, width - 1)] + "…"
    return visible
