"""The byte strings a line must hold to contain a literal in any case: prefilter needles for
case-insensitive literals (`(?i)error`), in one encoding.

Which characters a case-insensitive literal character matches is what Python's `re` says, not a
hand-made list: every code point is tested against the compiled character, so Python's own special
cases come along ('k' also matches KELVIN SIGN U+212A, 's' LONG S U+017F, 'i' U+0130 and U+0131,
the micro sign its Greek letters). A literal matched with IGNORECASE matches, character by character,
one of these variants (`re` folds no character into several, unlike 'ß' -> 'ss' in full folding).

Which bytes a character can come from is read from the codec itself: every one- and two-byte
sequence is decoded, so a character with two encodings (cp932's duplicated NEC/IBM characters) gets
both. A character that is only part of what a byte sequence decodes to (codecs that decode a pair of
bytes to two characters), or that may hide in longer sequences than those enumerated, has unknown
bytes: no needle is built over it. U+FFFD, which any undecodable byte becomes, never is either.

The needles over-approximate: a byte string can occur in a line whose decoded text does not hold the
literal (a cp932 trail byte is an ASCII letter: 'ア' is 0x83 'A'), so every candidate line is decoded
and matched by the real pattern, except where the scanner can prove the match (`scanner.py`).
"""

from __future__ import annotations

import array
import codecs
import functools
import itertools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .literals import MIN_LITERAL_BYTES

MAX_PIECE_NEEDLES = 64  # variants of one literal (2**6 for six letters); longer ones use a window
MAX_OPTION_NEEDLES = 256

Piece = tuple[str, bool]  # (text, matched case-insensitively)

_variants: dict[str, frozenset[str]] = {}
_variants_lock = threading.Lock()
_UNUSABLE = frozenset({"\ufffd", "\r", "\n"})


def case_variants(chars: Iterable[str]) -> dict[str, frozenset[str]]:
    """For each character, every character `re.compile(ch, re.IGNORECASE)` matches (itself included),
    found by testing every code point."""
    wanted = set(chars)
    with _variants_lock:
        missing = [ch for ch in wanted if ch not in _variants]
        if missing:
            # Every code point once (built through UTF-32: several times faster than chr() in a loop),
            # searched once for all the characters' variants together, then each candidate tested.
            every = array.array("I", range(0x110000)).tobytes().decode("utf-32-le", "surrogatepass")
            union = set(re.compile("[" + "".join(map(re.escape, missing)) + "]", re.IGNORECASE).findall(every))
            del every
            for ch in missing:
                single = re.compile(re.escape(ch), re.IGNORECASE)
                _variants[ch] = frozenset(x for x in union if single.fullmatch(x))
        return {ch: _variants[ch] for ch in wanted}


@dataclass(frozen=True)
class _Forms:
    forms: dict[str, frozenset[bytes]]  # every enumerated byte sequence that decodes to the character
    unknown: frozenset[str]  # characters also produced as part of a multi-character decoding
    ascii_only: bool  # the codec has sequences longer than two bytes: only ASCII forms are complete


@functools.cache
def _forms(codec: str) -> _Forms:
    found: dict[str, set[bytes]] = {}
    unknown: set[str] = set()
    longer = False

    def note(seq: bytes, text: str) -> None:
        if len(text) == 1:
            found.setdefault(text, set()).add(seq)
        else:
            unknown.update(text)

    leads: list[int] = []
    for byte in range(256):
        try:
            note(bytes([byte]), bytes([byte]).decode(codec))
        except UnicodeDecodeError:
            leads.append(byte)
    for lead in leads:
        for trail in range(256):
            seq = bytes([lead, trail])
            try:
                note(seq, seq.decode(codec))
            except UnicodeDecodeError as exc:
                if exc.start == 0 and ("incomplete" in exc.reason or "truncated" in exc.reason):
                    longer = True
    return _Forms({ch: frozenset(seqs) for ch, seqs in found.items()}, frozenset(unknown), longer)


def char_forms(ch: str, codec: str) -> frozenset[bytes] | None:
    """Every byte sequence of `codec` a decoded `ch` can come from (empty: it never occurs in
    decoded text); None when that is not known. "utf-8" also serves the UTF-8 copies of UTF-16/32
    text the scanner searches."""
    if ch in _UNUSABLE:
        return None
    if codec == "utf-8":
        try:
            return frozenset({ch.encode("utf-8")})
        except UnicodeEncodeError:  # a lone surrogate: never in text decoded with 'replace'
            return frozenset()
    table = _forms(codecs.lookup(codec).name)
    if ch in table.unknown or (table.ascii_only and not ch.isascii()):
        return None
    return table.forms.get(ch, frozenset())


def piece_needles(piece: Piece, codec: str) -> tuple[tuple[bytes, ...], bool] | None:
    """The needles of one literal, and whether they cover the whole literal (True) or only a window
    of it (its variants grow as the product of each character's); None when no window of at least
    MIN_LITERAL_BYTES has known bytes and at most MAX_PIECE_NEEDLES needles."""
    text, folded = piece
    variants = case_variants(text) if folded else {ch: frozenset({ch}) for ch in text}
    alternatives: list[frozenset[bytes] | None] = []
    for ch in text:
        seqs: set[bytes] = set()
        for variant in variants[ch]:
            forms = char_forms(variant, codec)
            if forms is None:
                seqs = set()
                alternatives.append(None)
                break
            seqs |= forms
        else:
            alternatives.append(frozenset(seqs))
    best: tuple[tuple[int, int, bool, int], int, int] | None = None
    for start in range(len(text)):
        count, min_bytes = 1, 0
        for stop in range(start + 1, len(text) + 1):
            alts = alternatives[stop - 1]
            if alts is None:
                break
            count *= len(alts)
            if count == 0 or count > MAX_PIECE_NEEDLES:
                break
            min_bytes += min(len(seq) for seq in alts)
            if min_bytes < MIN_LITERAL_BYTES:
                continue
            first = alternatives[start]
            assert first is not None
            then = alternatives[start + 1] if stop > start + 1 else None
            key = (-_start_commonness(first, then), min_bytes, start == 0 and stop == len(text), -count)
            if best is None or key > best[0]:
                best = (key, start, stop)
    if best is None:
        # a character that never occurs in decoded text (count 0) makes the literal impossible:
        # still, say nothing rather than a needle-less plan
        return None
    (_, _, whole, _), start, stop = best
    window = [alternatives[i] for i in range(start, stop)]
    needles = tuple(sorted(b"".join(combo) for combo in itertools.product(*(sorted(a or ()) for a in window))))
    return needles, whole


# Letters from the most to the least frequent in English (log messages are mostly English): the
# multi-literal search is slowest when its needles start with frequent byte pairs ("er" in "error"
# makes it twice as slow as "rr" in "rror"), so a window that starts on rarer letters is preferred.
_LETTERS = "etaoinsrhldcumfpgwybvkxjqz"


def _byte_commonness(byte: int) -> float:
    ch = chr(byte).lower()
    if ch in _LETTERS:
        return 1.0 - _LETTERS.index(ch) / len(_LETTERS)
    if byte >= 0x80:
        return 0.3
    if ch.isdigit() or ch == " ":
        return 1.0
    return 0.5


def _start_commonness(first: frozenset[bytes], then: frozenset[bytes] | None) -> int:
    """How often a window's first two bytes occur, in tenths (lower is rarer): the window starts
    with one of `first`, followed by one of `then` (None: nothing follows)."""
    seconds = {seq[1] for seq in first if len(seq) > 1}
    if then and any(len(seq) == 1 for seq in first):
        seconds |= {seq[0] for seq in then}
    score = max(_byte_commonness(seq[0]) for seq in first)
    if seconds:
        score *= max(_byte_commonness(b) for b in seconds)
    return round(score * 10)


def option_needles(option: Iterable[Piece], codec: str) -> tuple[tuple[bytes, ...], bool] | None:
    """The needles of a set of literals any match contains one of, and whether each covers its whole
    literal; None when one of them has none or there are more than MAX_OPTION_NEEDLES."""
    needles: set[bytes] = set()
    whole = True
    for piece in option:
        found = piece_needles(piece, codec)
        if found is None:
            return None
        needles.update(found[0])
        whole = whole and found[1]
    if not needles or len(needles) > MAX_OPTION_NEEDLES:
        return None
    return tuple(sorted(needles)), whole
