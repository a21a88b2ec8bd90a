"""Case-insensitive patterns on the byte-needle path count exactly what decode-and-search counts."""

from __future__ import annotations

import codecs
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_exporter.sources.logscan import LogScanSource
from batch_exporter.tailing import scanner as scanner_module
from batch_exporter.tailing.encoding import resolve
from batch_exporter.tailing.folding import case_variants, char_forms, option_needles
from batch_exporter.tailing.literals import folded_options, pure_folded
from batch_exporter.tailing.scanner import PatternSet
from log_scan_config import LogCfg

# Patterns with no case-sensitive literal: before, each decoded and searched the whole text.
PATTERNS = {
    "error": "(?i)error",  # pure: a hit in an ASCII line (any line in UTF-8) is a match
    "fatal_panic": "(?i)(fatal|panic)",  # pure alternation
    "kiss": "(?i)kiss",  # K also as KELVIN SIGN, s also as LONG S: a window of the literal
    "ascii_only": "(?ai)kill",  # ASCII folding only: KELVIN SIGN does not match, so not pure
    "level": r"(?i)^\S+ \S+ (?:error|warn) ",  # needles, then the regex on the candidate
    "mixed": r"ERROR|(?i:timeout)",  # a case-sensitive and a case-insensitive alternative
    "dotless": "(?i)inf[oi]",  # 'i' also as U+0130 and U+0131
    "micro": "(?i)µs lag",  # the micro sign and both Greek mu
}

# Text that tries the needles: case variants from `re`, cp932 characters whose trail byte is an
# ASCII letter ('ア' is 83 41 'A', 'ゥ' 83 44 'D', 'ャ' 83 83, 'ソ' 83 5C '\\'), full-width letters
# (no case variant of an ASCII letter), CR before the newline.
PARTS = [
    "2024-01-01 00:00:00 ERROR boom", "2024-01-01 00:00:01 Warn slow", "error", "Error", "eRRoR",
    "fatal", "PANIC", "\u212aiss", "ki\u017fs", "KISS", "kill", "\u212aill", "info", "INFI",
    "\u0130nfo", "\u0131nfo", "\u00b5s lag", "\u039cS LAG", "\u03bcs lag", "TIMEOUT", "timeout",
    "ア", "ゥ", "ャ", "ソ", "エラー", "ＥＲＲＯＲ", "テスト商事", "rror", "erro", " ", "\r", "\t", "x",
]
ENCODINGS = ["cp932", "utf-8", "utf-16-le", "utf-16-be", "utf-16", "shift_jis", "latin-1"]

STATS: Counter[str] = Counter()


def reference(data: bytes, codec: str, patterns: dict[str, str]) -> tuple[int, dict[str, int]]:
    """Decode the whole file, split at newlines, drop a trailing CR, search each line."""
    text = codecs.decode(data, codec, "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    matches = dict.fromkeys(patterns, 0)
    for line in lines:
        line = line.removesuffix("\r")
        for name, pattern in patterns.items():
            if re.search(pattern, line):
                matches[name] += 1
    return len(lines), matches



def test_case_variants_come_from_re_itself() -> None:
    variants = case_variants("ksiµe")
    assert variants["k"] == {"k", "K", "\u212a"}
    assert variants["s"] == {"s", "S", "\u017f"}
    assert variants["i"] == {"i", "I", "\u0130", "\u0131"}
    assert variants["µ"] == {"\u00b5", "\u039c", "\u03bc"}
    assert variants["e"] == {"e", "E"}
    every = "".join(map(chr, range(0x110000)))
    for ch in "kσßǅ":  # each against every code point tested one pattern at a time
        assert case_variants(ch)[ch] == set(re.compile(re.escape(ch), re.IGNORECASE).findall(every)), ch


def test_byte_forms_are_read_from_the_codec() -> None:
    assert char_forms("\u212a", "utf-8") == frozenset({"\u212a".encode()})
    assert char_forms("\u212a", "cp932") == frozenset()  # no cp932 bytes decode to it
    assert char_forms("A", "cp932") == frozenset({b"A"})
    assert char_forms("\ufffd", "cp932") is None  # any undecodable byte
    assert char_forms("\u0130", "euc_jp") is None  # EUC-JP has 3-byte forms: not enumerated


def test_case_insensitive_patterns_take_the_needle_path() -> None:
    """Each pattern of the set gets needles (without them it would decode the whole text)."""
    for codec in ("cp932", "utf-8", "utf-16-le"):
        scanner = PatternSet(PATTERNS, resolve(codec), 1024).scanner_for(b"")
        kinds = [type(plan).__name__ for plan in scanner._plans]
        assert kinds == ["_LiteralPlan"] * len(PATTERNS), (codec, kinds)
        pure = dict(zip(PATTERNS, (getattr(plan, "pure", None) for plan in scanner._plans), strict=True))
        assert pure["fatal_panic"] and not pure["ascii_only"] and not pure["level"]
    assert pure_folded("(?i)(fatal|panic)") == frozenset({"fatal", "panic"})
    assert pure_folded("(?ai)error") is None
    assert folded_options("(?i)error") == [frozenset({("error", True)})]
    needles = option_needles(frozenset({("kiss", True)}), "utf-8")
    assert needles is not None and "\u212a".encode() in b"".join(needles[0])


def test_a_pattern_without_any_literal_still_decodes_and_searches() -> None:
    # (without a back reference it would take the superset prefilter: tests/test_tailing_superset.py)
    scanner = PatternSet({"n": r"\b([45])\1\d\b"}, resolve("cp932"), 1024).scanner_for(b"")
    assert type(scanner._plans[0]).__name__ == "_TextPlan"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.lists(st.sampled_from(PARTS), max_size=6).map("".join), min_size=1, max_size=25),
    encoding=st.sampled_from(ENCODINGS),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=4),
    unterminated=st.booleans(),
)
def test_needle_path_counts_what_decode_and_search_counts(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], encoding: str, cuts: list[int], unterminated: bool
) -> None:
    """Random lines in a random encoding, appended in random pieces (lines split across polls),
    counted by the log scan and by a plain decode-and-search of the whole file."""
    data = ("\n".join(lines) + ("" if unterminated else "\n")).encode(encoding, "replace")
    path = tmp_path_factory.mktemp("fold") / "app.log"
    path.write_bytes(b"")
    source = LogScanSource("b", "app", LogCfg(path=str(path), patterns=dict(PATTERNS), encoding=encoding), None)
    unit = 2 if encoding.startswith("utf-16") else 1
    offsets = sorted({min(len(data), c - c % unit) for c in cuts} | {len(data)})
    written = 0
    snapshot = source.poll()
    for offset in offsets:
        with path.open("ab") as f:
            f.write(data[written:offset])
        written = offset
        snapshot = source.poll()
    if unterminated and data:
        path.unlink()  # the file ends: its last line counts
        snapshot = source.poll()
    got = {dict(s.labels).get("pattern", s.name): s.value for s in snapshot.samples
           if s.name in ("batch_log_matches_total", "batch_log_lines_total")}
    want_lines, want = reference(data, encoding, PATTERNS)
    assert got["batch_log_lines_total"] == want_lines
    assert {name: int(got[name]) for name in PATTERNS} == want
    STATS["examples"] += 1
    STATS[f"encoding {encoding}"] += 1
    STATS["lines"] += want_lines
    STATS["matching lines"] += sum(want.values())
    STATS["non-ASCII lines"] += sum(1 for line in lines if not line.isascii())


def test_report_example_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints what the property test above tried (run with -s to see it)."""
    with capsys.disabled():
        print("\nfolding property test:", dict(sorted(STATS.items())))


def test_block_counts_match_with_crlf_and_every_encoding() -> None:
    """A fixed block through the scanner directly, CRLF line ends: the same counts as the reference."""
    text = "\r\n".join(PARTS) + "\r\n"
    for encoding in ENCODINGS:
        data = text.encode(encoding, "replace")
        patterns = PatternSet(PATTERNS, resolve(encoding), 1024)
        scanner = patterns.scanner_for(data[:4])
        counts = patterns.new_counts()
        start = len(scanner.encoding.bom) if data.startswith(scanner.encoding.bom or b"\xff\xff\xff") else 0
        scanner.count_block(data, start, len(data), counts)
        lines, want = reference(data[start:], scanner.encoding.codec, PATTERNS)
        assert counts.lines == lines
        assert dict(zip(PATTERNS, counts.matches, strict=True)) == want, encoding


def test_plain_path_is_kept_when_the_parser_cannot_be_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanner_module, "folded_options", lambda pattern: [])
    monkeypatch.setattr(scanner_module, "superset", lambda pattern, codec: None)
    scanner = PatternSet({"e": "(?i)error"}, resolve("cp932"), 1024).scanner_for(b"")
    assert type(scanner._plans[0]).__name__ == "_TextPlan"


def test_needles_never_hold_a_newline(tmp_path: Path) -> None:
    for codec in ENCODINGS[:2]:
        for pattern in PATTERNS.values():
            for option in folded_options(pattern):
                found = option_needles(option, codec)
                if found is not None:
                    assert all(b"\n" not in n and n for n in found[0])
