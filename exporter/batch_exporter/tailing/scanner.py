"""Counting lines and pattern hits in blocks of bytes, with no Python loop over every line.

A block is a run of complete lines in a buffer. Lines are counted with `bytes.count`. Each pattern
is matched against the decoded text of a line (a trailing '\\r' removed), and counts once per
line however often it hits. How a pattern is run depends on what its regex promises:

- it requires a literal (`^\\S+ \\S+ ERROR ` requires " ERROR "): one multi-literal search
  (`LiteralLines`) over the raw block finds, in a single pass for all patterns, the few lines
  holding any of their literals, and only those are decoded and matched;
- it requires a literal matched case-insensitively (`(?i)error`, `(?i)(fatal|panic)`): the same
  search, for every byte string the literal's case variants can be in the file's encoding
  (`folding.py`; a window of the literal when it has too many variants); candidate lines are decoded
  and matched, unless the pattern is such literals only and the hit is provably one;
- otherwise the block is decoded (in pieces of PIECE_BYTES) and searched as a whole, or line by
  line when the pattern looks beyond its line (a lookbehind, \\A).

UTF-16/32 blocks are always decoded (their newlines count only at code unit boundaries); their
literals are searched in that text encoded as UTF-8, where a byte search is fast and exact.

A line longer than `max_line_bytes` is an oversized line: it counts as a line and as an oversized
line, and patterns see only its first `max_line_bytes` bytes, whether it arrives in one block or
over many polls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .encoding import EncodingSpec, LineEncoding
from .folding import option_needles
from .literal_lines import LineHit, LiteralLines
from .literals import Literals, folded_options, line_local, literal_options, pure_folded, pure_literals, rank
from .superset import LineFinder, line_finder, superset

Buffer = bytes | bytearray

PIECE_BYTES = 64 * 1024


@dataclass
class Counts:
    """Running totals the scanner adds to."""

    lines: int = 0
    oversized: int = 0
    matches: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _LiteralPlan:
    needles: tuple[bytes, ...]  # in the file's bytes; for UTF-16/32 files, in UTF-8
    regex: re.Pattern[str]
    pure: bool  # the pattern is just these literals: a line holding one (decoded as such) matches


@dataclass(frozen=True)
class _TextPlan:
    block: re.Pattern[str] | None  # MULTILINE twin for whole-block search; None: search line by line
    line: re.Pattern[str]


@dataclass(frozen=True)
class _SupersetPlan:
    finder: LineFinder  # runs of lines where a byte regex matching every matching line matches
    regex: re.Pattern[str]
    exact: bool  # on an ASCII line without '\r' the byte regex's answer is the pattern's
    text: _TextPlan  # how the candidate lines, decoded together, are searched


_Plan = _LiteralPlan | _TextPlan | _SupersetPlan
_Check = tuple[int, bool, Callable[[str], object]]  # (pattern index, pure, regex search)


class PatternSet:
    """The configured patterns of one log, compiled for its encoding."""

    def __init__(self, patterns: Mapping[str, str], encoding: EncodingSpec, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, got {max_line_bytes}")
        self.names: tuple[str, ...] = tuple(patterns)
        self.regexes: dict[str, str] = dict(patterns)
        self.encoding = encoding
        self.max_line_bytes = max_line_bytes
        self._compiled = tuple(re.compile(regex) for regex in patterns.values())
        self._scanners: dict[LineEncoding, LineScanner] = {}

    def new_counts(self) -> Counts:
        return Counts(matches=[0] * len(self.names))

    def scanner_for(self, head: bytes) -> LineScanner:
        """The scanner for a file that starts with `head` (the byte order mark picks UTF-16 order)."""
        layout = self.encoding.for_head(head)
        scanner = self._scanners.get(layout)
        if scanner is None:
            scanner = self._scanners[layout] = LineScanner(layout, self._compiled, self.max_line_bytes)
        return scanner


class LineScanner:
    """Counts lines and pattern hits for one concrete byte layout."""

    def __init__(
        self, encoding: LineEncoding, regexes: tuple[re.Pattern[str], ...], max_line_bytes: int
    ) -> None:
        self.encoding = encoding
        self.max_line_bytes = max_line_bytes
        self._regexes = regexes
        self._head_bytes = max(encoding.unit, max_line_bytes - max_line_bytes % encoding.unit)
        self._plans = _plans(regexes, encoding)
        self._needles = tuple(
            dict.fromkeys(n for p in self._plans if isinstance(p, _LiteralPlan) for n in p.needles)
        )
        # One pass finds every literal's lines; a literal pattern runs on a line when the line's
        # mask of literals shares a bit with the pattern's.
        self._finder = LiteralLines(self._needles) if self._needles else None
        bits = {needle: 1 << i for i, needle in enumerate(self._needles)}
        self._checks = tuple(
            ((i, p.pure, p.regex.search), sum(bits[n] for n in p.needles))
            for i, p in enumerate(self._plans)
            if isinstance(p, _LiteralPlan)
        )
        self._checks_by_mask: dict[int, tuple[_Check, ...]] = {}
        self._supersets = tuple((i, p) for i, p in enumerate(self._plans) if isinstance(p, _SupersetPlan))
        # How candidate lines are decoded: from the file's bytes, or (UTF-16/32) from the UTF-8
        # copy of text already decoded, whose '\r\n' are already '\n'.
        wide = encoding.wide
        self._line_codec = "utf-8" if wide else encoding.codec
        self._line_errors = "surrogatepass" if wide else "replace"
        self._cr_kept = not wide  # the raw line may end with the "\r" of "\r\n"
        self._ascii_transparent = wide or _ascii_transparent(encoding)
        self._boundary_always = wide or encoding.codec == "utf-8"
        self._any_text_plan = wide or any(isinstance(p, _TextPlan) for p in self._plans)

    def count_block(self, buf: Buffer, start: int, stop: int, counts: Counts) -> None:
        """Count buf[start:stop], which holds complete lines each ending with a newline."""
        unit = self.encoding.unit
        segment_start = start
        if stop - start > self.max_line_bytes:
            for line_start, line_end in self._long_lines(buf, start, stop):
                self._count_pieces(buf, segment_start, line_start, counts)
                counts.lines += 1
                counts.oversized += 1
                self._match_text(self._decode(buf[line_start : line_start + self._head_bytes]), counts)
                segment_start = line_end + unit
        self._count_pieces(buf, segment_start, stop, counts)

    def count_long_head(self, buf: Buffer, start: int, counts: Counts) -> None:
        """Count a line found to exceed the bound before its end arrived: one line, one oversized
        line, patterns matched against its first `max_line_bytes` bytes at buf[start:]."""
        counts.lines += 1
        counts.oversized += 1
        self._match_text(self._decode(buf[start : start + self._head_bytes]), counts)

    def count_tail(self, data: bytes, counts: Counts) -> None:
        """Count the unterminated last line of a file that has ended (rotated, truncated, gone)."""
        counts.lines += 1
        for index in self.tail_matches(data):
            counts.matches[index] += 1

    def tail_matches(self, data: bytes) -> tuple[int, ...]:
        """The patterns (by index) that `count_tail` would count for this unterminated line."""
        text = _strip_cr(self._decode(data))
        return tuple(index for index, regex in enumerate(self._regexes) if regex.search(text))

    def _decode(self, data: Buffer) -> str:
        return str(data, self.encoding.codec, "replace")

    def _match_text(self, text: str, counts: Counts) -> None:
        for index, regex in enumerate(self._regexes):
            if regex.search(text):
                counts.matches[index] += 1

    def _long_lines(self, buf: Buffer, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """(start, newline index) of each line longer than the bound in a block of complete lines.

        Probes windows of half the bound: a longer line always covers a whole window, so a window
        without a newline is the only place worth measuring a line. A few probes per block.
        """
        enc = self.encoding
        unit = enc.unit
        window = max(unit, (self.max_line_bytes // 2) // unit * unit)
        pos = start
        while pos < stop:
            probe_end = min(pos + window, stop)
            if enc.find_newline(buf, pos, probe_end) >= 0:
                pos = probe_end
                continue
            line_start = enc.rfind_newline(buf, start, pos)
            line_start = start if line_start < 0 else line_start + unit
            line_end = enc.find_newline(buf, pos, stop)
            if line_end - line_start > self.max_line_bytes:
                yield line_start, line_end
            pos = line_end + unit

    def _count_pieces(self, buf: Buffer, start: int, stop: int, counts: Counts) -> None:
        """Count complete lines in pieces of about PIECE_BYTES when text is decoded: large
        temporary strings of varying size fragment the C heap, and the process would keep growing."""
        if not self._any_text_plan:
            self._count_segment(buf, start, stop, counts)
            return
        enc = self.encoding
        while start < stop:
            cut = start + PIECE_BYTES
            if cut >= stop:
                end = stop
            else:
                newline = enc.rfind_newline(buf, start, cut)
                end = (newline if newline >= 0 else enc.find_newline(buf, cut, stop)) + enc.unit
            self._count_segment(buf, start, end, counts)
            start = end

    def _count_segment(self, buf: Buffer, start: int, stop: int, counts: Counts) -> None:
        """Count complete lines, none of them oversized."""
        if start >= stop:
            return
        text: str | None = None
        if self._any_text_plan:
            text = self.encoding.decode(buf[start:stop]).replace("\r\n", "\n")
            for index, plan in enumerate(self._plans):
                if isinstance(plan, _TextPlan):
                    counts.matches[index] += _count_text_plan(text, plan)
        if self.encoding.wide:
            assert text is not None
            counts.lines += text.count("\n")
            if self._finder is not None or self._supersets:
                utf8 = text.encode("utf-8", "surrogatepass")
                if self._finder is not None:
                    self._count_candidates(utf8, self._finder.find(utf8, 0, len(utf8)), counts)
                for index, plan in self._supersets:
                    counts.matches[index] += self._count_superset(utf8, 0, len(utf8), plan)
        else:
            counts.lines += buf.count(b"\n", start, stop)
            if self._finder is not None:
                self._count_candidates(buf, self._finder.find(buf, start, stop), counts)
            for index, plan in self._supersets:
                counts.matches[index] += self._count_superset(buf, start, stop, plan)

    def _count_superset(self, haystack: Buffer, start: int, stop: int, plan: _SupersetPlan) -> int:
        """Lines of haystack[start:stop] the pattern matches, among those its byte regex finds."""
        ends, unsure = plan.finder.line_ends(haystack, start, stop)
        if not ends:
            return 0
        matched = 0
        if plan.exact:
            # the byte regex's answer is the pattern's on the other lines: only these need decoding
            doubtful = set(unsure).intersection(ends)
            matched = len(ends) - len(doubtful)
            ends = sorted(doubtful)
            if not ends:
                return matched
        rfind = haystack.rfind
        lines = [haystack[rfind(b"\n", start, line_end) + 1 or start : line_end] for line_end in ends]
        # decoded together and searched as a text plan searches a block, unless the decoder took a
        # newline into a replaced sequence (then each line is decoded alone)
        codec, errors, cr_kept = self._line_codec, self._line_errors, self._cr_kept
        text = str(b"\n".join(lines) + b"\n", codec, errors)
        if text.count("\n") == len(lines):
            return matched + _count_text_plan(text.replace("\r\n", "\n") if cr_kept else text, plan.text)
        search = plan.regex.search
        for raw in lines:
            line = str(raw, codec, errors)
            if search(_strip_cr(line) if cr_kept else line):
                matched += 1
        return matched

    def _count_candidates(self, haystack: Buffer, lines: list[LineHit], counts: Counts) -> None:
        """Run the literal patterns on the lines holding one of their literals."""
        # A pure literal in a line is a match without decoding when it lies at a character
        # boundary: always so in UTF-8, and in other narrow codecs when the line is all ASCII.
        boundary_always, ascii_fast = self._boundary_always, self._ascii_transparent
        codec, errors, cr_kept = self._line_codec, self._line_errors, self._cr_kept
        matches = counts.matches
        for line_start, line_end, mask in lines:
            checks = self._checks_by_mask.get(mask)
            if checks is None:
                checks = self._checks_by_mask[mask] = tuple(
                    check for check, plan_mask in self._checks if plan_mask & mask
                )
            raw = haystack[line_start:line_end]
            ascii_line = raw.isascii()
            text: str | None = None
            for index, pure, search in checks:
                if pure and (boundary_always or ascii_line):
                    matches[index] += 1
                    continue
                if text is None:
                    text = raw.decode("ascii") if ascii_fast and ascii_line else str(raw, codec, errors)
                    if cr_kept and text.endswith("\r"):
                        text = text[:-1]
                if search(text):
                    matches[index] += 1


def _plans(regexes: tuple[re.Pattern[str], ...], encoding: LineEncoding) -> tuple[_Plan, ...]:
    """How to run each pattern. Where a pattern offers several literal sets, prefer one whose
    literals other patterns search anyway: fewer distinct literals, fewer candidate lines."""
    if encoding.wide:

        def char_ok(ch: str) -> bool:
            return ch not in "\ufffd\r\n"
    else:

        def char_ok(ch: str) -> bool:
            return encoding.literal_bytes(ch) is not None

    options = [literal_options(rx.pattern, char_ok) for rx in regexes]
    chosen: list[Literals | None] = [min(opts, key=rank) if opts else None for opts in options]
    for _ in range(2):
        for index, opts in enumerate(options):
            if not opts:
                continue
            others = frozenset().union(*(c for i, c in enumerate(chosen) if c is not None and i != index))
            chosen[index] = min(opts, key=lambda opt: (len(opt - others), rank(opt)))
    return tuple(_plan(rx, literals, encoding) for rx, literals in zip(regexes, chosen, strict=True))


def _plan(regex: re.Pattern[str], literals: Literals | None, encoding: LineEncoding) -> _Plan:
    pattern = regex.pattern
    if literals is not None:
        ordered = sorted(literals)
        pure = pure_literals(pattern) == literals
        if encoding.wide:
            utf8 = tuple(lit.encode("utf-8", "surrogatepass") for lit in ordered)
            return _LiteralPlan(needles=utf8, regex=regex, pure=pure)
        needles = tuple(encoding.literal_bytes(lit) for lit in ordered)
        if all(needle is not None for needle in needles):
            return _LiteralPlan(needles=needles, regex=regex, pure=pure)  # type: ignore[arg-type]
    folded = _folded_plan(regex, encoding)
    if folded is not None:
        return folded
    found = superset(pattern, "utf-8" if encoding.wide else encoding.codec)
    finder = line_finder(found) if found is not None else None
    block = re.compile(pattern, regex.flags | re.MULTILINE) if line_local(pattern) else None
    if found is not None and finder is not None:
        return _SupersetPlan(finder=finder, regex=regex, exact=found.exact, text=_TextPlan(block=block, line=regex))
    return _TextPlan(block=block, line=regex)


def _folded_plan(regex: re.Pattern[str], encoding: LineEncoding) -> _LiteralPlan | None:
    """A literal plan from the literals the pattern holds in any case, or None when it has none
    usable in this encoding. Among several, the fewest needles with the longest shortest one."""
    codec = "utf-8" if encoding.wide else encoding.codec
    if not (encoding.wide or _ascii_transparent(encoding)):
        return None  # an ASCII byte may not be its ASCII character: the needles would mean nothing
    best: tuple[tuple[int, int], tuple[bytes, ...], bool, frozenset[tuple[str, bool]]] | None = None
    for option in folded_options(regex.pattern):
        found = option_needles(option, codec)
        if found is None:
            continue
        needles, whole = found
        key = (-min(len(n) for n in needles), len(needles))
        if best is None or key < best[0]:
            best = (key, needles, whole, option)
    if best is None:
        return None
    _, needles, whole, option = best
    strings = pure_folded(regex.pattern)
    pure = whole and strings is not None and option == frozenset((text, True) for text in strings)
    return _LiteralPlan(needles=needles, regex=regex, pure=pure)


def _count_text_plan(text: str, plan: _TextPlan) -> int:
    """Lines of `text` (complete lines, '\\n'-terminated) that the pattern matches."""
    if plan.block is None:
        search = plan.line.search
        return sum(1 for line in text.split("\n")[:-1] if search(line))
    matched = 0
    pos, end = 0, len(text)
    block_search, line_search = plan.block.search, plan.line.search
    while pos < end:
        found = block_search(text, pos)
        if found is None or found.start() >= end:  # an empty match after the last newline is no line
            break
        line_start = text.rfind("\n", pos, found.start()) + 1 or pos
        line_end = text.find("\n", found.start())
        if line_end < 0:
            line_end = end
        # A match that stays within its line proves the line matches on its own (the pattern is
        # line-local); one that runs across lines is checked against the line alone, and so is an empty
        # match (`\B` matches between two newlines of a block, not in an empty line alone).
        if found.start() < found.end() <= line_end or line_search(text[line_start:line_end]):
            matched += 1
        pos = line_end + 1
    return matched


def _strip_cr(text: str) -> str:
    return text[:-1] if text.endswith("\r") else text


def _ascii_transparent(encoding: LineEncoding) -> bool:
    """True when pure-ASCII bytes decode to the same ASCII text (then the fast ASCII codec will do)."""
    if encoding.wide:
        return False
    ascii_bytes = bytes(range(128))
    try:
        return ascii_bytes.decode(encoding.codec) == ascii_bytes.decode("ascii")
    except UnicodeDecodeError:
        return False
