"""The lines of a block that hold any of several literals, and which ones, in one pass.

One Aho-Corasick automaton (the `ahocorasick_rs` package: Python bindings of the Rust
`aho-corasick` crate, which uses SIMD prefilters for small literal sets) searches every literal at
once, so a block costs one pass however many literals the patterns need.

Its fast leftmost-first search reports hits that do not overlap: an occurrence of a literal that
starts inside a reported hit of another (" WARN " in "x ERROR WARN y", sharing a space) is not
reported. Where that can happen follows from the literals alone, so those few offsets are checked
directly after each hit, and every line's set of literals is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from ahocorasick_rs import BytesAhoCorasick, MatchKind

Buffer = bytes | bytearray
LineHit = tuple[int, int, int]  # (line start, index of its newline, bit i set: literal i is in the line)


class LiteralLines:
    """Finds, in blocks of complete b'\\n'-terminated lines, the lines holding each of a fixed set
    of byte literals (none of them holding a newline)."""

    def __init__(self, literals: Sequence[bytes]) -> None:
        if not literals:
            raise ValueError("LiteralLines needs at least one literal")
        if any(not lit or b"\n" in lit for lit in literals):
            raise ValueError("literals must be non-empty and hold no newline")
        self.literals = tuple(literals)
        self._automaton = BytesAhoCorasick(self.literals, matchkind=MatchKind.LeftmostFirst)
        # For each literal: (bit, other literal, offset) wherever a hit of it may hide the other.
        self._hidden = tuple(
            tuple(
                (1 << j, other, offset)
                for j, other in enumerate(self.literals)
                if j != i
                for offset in _overlap_offsets(lit, other)
            )
            for i, lit in enumerate(self.literals)
        )

    def find(self, haystack: Buffer, start: int, stop: int) -> list[LineHit]:
        """(line start, newline index, literal bit mask) for each line of haystack[start:stop]
        that holds at least one literal, in order. The block ends with a newline."""
        with memoryview(haystack) as view, view[start:stop] as block:
            matches = self._automaton.find_matches_as_indexes(block)
        found: list[LineHit] = []
        if not matches:
            return found
        rfind, find, startswith = haystack.rfind, haystack.find, haystack.startswith
        hidden = self._hidden
        line_start = line_end = -1
        mask = 0
        for index, hit, _ in matches:
            hit += start
            if hit > line_end:  # the first hit in another line
                if mask:
                    found.append((line_start, line_end, mask))
                line_start = rfind(b"\n", start, hit) + 1 or start
                line_end = find(b"\n", hit, stop)
                if line_end < 0:
                    line_end = stop
                mask = 0
            mask |= 1 << index
            for bit, other, offset in hidden[index]:
                if not mask & bit and startswith(other, hit + offset, line_end):
                    mask |= bit
        found.append((line_start, line_end, mask))
        return found


def _overlap_offsets(lit: bytes, other: bytes) -> tuple[int, ...]:
    """Offsets inside `lit` where `other` can start while overlapping it: where a hit of `lit`
    can hide an occurrence of `other` (offset 0 included: there the first listed literal wins)."""
    return tuple(
        offset
        for offset in range(len(lit))
        if lit[offset : offset + len(other)] == other[: len(lit) - offset]
    )
