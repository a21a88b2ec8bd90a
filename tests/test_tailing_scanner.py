"""Line and pattern counting over blocks of bytes, against a plain line-by-line reference."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_exporter.tailing import scanner as scanner_module
from batch_exporter.tailing.encoding import resolve
from batch_exporter.tailing.literal_lines import LiteralLines
from batch_exporter.tailing.literals import line_local, literal_options, pure_literals
from batch_exporter.tailing.scanner import Counts, PatternSet

PATTERNS = {
    "level_error": r"^\S+ \S+ ERROR ",  # literal prefilter + regex on candidates
    "bare_error": " ERROR ",  # pure literal
    "either": "FATAL|Exception",  # pure alternation, two literals
    "japanese": "エラー",  # non-ASCII literal
    "nocase": "(?i)timeout",  # no literal: whole-block search
    "lookbehind": r"(?<=id=)\d{3}",  # looks beyond the match: line by line
    "end": r"done$",  # anchored at the line end (a '\r' before the newline is not part of the line)
}

LINE_PARTS = [
    "2024-01-01 00:00:00 ERROR boom",
    "2024-01-01 00:00:01 INFO  previous state ERROR cleared",
    "2024-01-01 00:00:02 INFO  ok",
    " ERROR ",
    "FATAL",
    "java.lang.Exception: x",
    "エラーが発生しました",
    "Timeout",
    "TIMEOUT reached",
    "id=123",
    "id=12",
    "job done",
    "done\r",
    "",
    "\t... 3 more",
    "ＥＲＲＯＲ",
]


def reference(lines: list[bytes], codec: str, patterns: dict[str, str], max_line: int) -> Counts:
    """What a simple per-line loop counts: the meaning the scanner must reproduce."""
    compiled = [re.compile(p) for p in patterns.values()]
    counts = Counts(matches=[0] * len(compiled))
    for raw in lines:
        counts.lines += 1
        if len(raw) > max_line:
            counts.oversized += 1
            text = raw[:max_line].decode(codec, "replace")
        else:
            text = raw.decode(codec, "replace").removesuffix("\r")
        for index, rx in enumerate(compiled):
            if rx.search(text):
                counts.matches[index] += 1
    return counts


def scan(data: bytes, encoding: str, patterns: dict[str, str], max_line: int, cuts: list[int]) -> Counts:
    """Scan `data` (complete lines) as blocks ending at line ends chosen by `cuts`."""
    pattern_set = PatternSet(patterns, resolve(encoding), max_line)
    scanner = pattern_set.scanner_for(data[:4])
    enc = scanner.encoding
    counts = pattern_set.new_counts()
    buf = bytearray(b"\xff" * 3 + data + b"\xff" * 3)  # blocks never start at index 0 of the buffer
    start, end = 3, 3 + len(data)
    for cut in sorted(cuts):
        stop = enc.rfind_newline(buf, start, min(end, 3 + cut))
        if stop >= start:
            scanner.count_block(buf, start, stop + enc.unit, counts)
            start = stop + enc.unit
    scanner.count_block(buf, start, end, counts)
    return counts


line_text = st.lists(st.sampled_from(LINE_PARTS), min_size=0, max_size=3).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(line_text, max_size=40),
    encoding=st.sampled_from(["utf-8", "cp932", "utf-16-le", "euc-jp"]),
    max_line=st.integers(8, 200),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    piece=st.sampled_from([16, 100, scanner_module.PIECE_BYTES]),
)
def test_counts_equal_a_line_by_line_reference(
    texts: list[str], encoding: str, max_line: int, cuts: list[int], piece: int
) -> None:
    codec = resolve(encoding).default.codec
    unit = resolve(encoding).default.unit
    max_line -= max_line % unit
    lines = [t.encode(codec) for t in texts]
    data = b"".join(line + "\n".encode(codec) for line in lines)
    default_piece = scanner_module.PIECE_BYTES
    scanner_module.PIECE_BYTES = piece  # small pieces: decoded text is processed a piece at a time
    try:
        assert scan(data, encoding, PATTERNS, max_line, cuts) == reference(lines, codec, PATTERNS, max_line)
    finally:
        scanner_module.PIECE_BYTES = default_piece


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    encoding=st.sampled_from(["utf-8", "cp932", "shift_jis", "euc-jp", "latin-1"]),
    max_line=st.integers(2, 40),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
)
def test_random_bytes_never_raise_and_still_count_exactly(
    lines: list[bytes], encoding: str, max_line: int, cuts: list[int]
) -> None:
    codec = resolve(encoding).default.codec
    data = b"".join(line + b"\n" for line in lines)
    assert scan(data, encoding, PATTERNS, max_line, cuts) == reference(lines, codec, PATTERNS, max_line)


@settings(max_examples=200, deadline=None)
@given(
    units=st.lists(
        st.sampled_from([b"\n\x00", b"A\x0a", b"\x00\xd8", b"\x00\xdc", b"E\x00", b"\x0a\x00"])
        | st.binary(min_size=2, max_size=2),
        max_size=60,
    )
)
def test_utf16_counts_only_aligned_newlines(units: list[bytes]) -> None:
    data = b"".join(units)
    if not data.endswith(b"\n\x00"):
        data += b"\n\x00"
    lines, start = [], 0
    for pos in range(0, len(data), 2):
        if data[pos : pos + 2] == b"\n\x00":
            lines.append(data[start:pos])
            start = pos + 2
    assert scan(data, "utf-16-le", PATTERNS, 40, [7, 31]) == reference(lines, "utf-16-le", PATTERNS, 40)


@pytest.mark.parametrize(
    "codec", ["utf-8", "cp932", "shift_jis", "big5", "cp949", "euc_kr", "gbk", "latin-1"]
)
def test_block_decoding_equals_line_by_line_decoding(codec: str) -> None:
    """The codecs decoded a block at a time must agree with decoding each line alone."""
    layout = resolve(codec).default
    assert layout.block_safe
    rnd = random.Random(7)
    alphabet = [0x0A, 0x0A, 0x0D, 0x81, 0x82, 0x8F, 0x5C, 0xE3, 0xA1, 0xFE, 0x30, 0x41]
    for _ in range(3000):
        raw = bytes(rnd.choice(alphabet + [rnd.randrange(256)]) for _ in range(rnd.randrange(40)))
        per_line = "\n".join(part.decode(layout.codec, "replace") for part in raw.split(b"\n"))
        assert layout.decode(raw) == per_line


def test_level_anchored_pattern_ignores_info_lines_that_quote_error() -> None:
    lines = [
        b"2024-05-01 02:00:00.001 ERROR [auth-1] Service - txn=1 result=DECLINED",
        b"2024-05-01 02:00:00.002 INFO  [auth-2] RetryHandler - previous state ERROR cleared",
        b"2024-05-01 02:00:00.003 INFO  [auth-3] Service - ok",
    ]
    patterns = {"anchored": r"^\S+ \S+ ERROR ", "bare": "ERROR"}
    counts = scan(b"\n".join(lines) + b"\n", "utf-8", patterns, 1024, [])
    assert counts.lines == 3
    assert counts.matches == [1, 2]


def test_a_line_with_two_hits_counts_once_per_pattern() -> None:
    counts = scan(b"ERROR ERROR ERROR\nok\n", "utf-8", {"error": "ERROR", "rx": "E+R"}, 100, [])
    assert counts.matches == [1, 1]


def test_oversized_lines_count_once_and_match_on_their_head() -> None:
    long_hit = b"ERROR " + b"x" * 500
    long_miss = b"x" * 500 + b" ERROR"  # the hit lies beyond the bound: not seen
    counts = scan(b"short\n" + long_hit + b"\n" + long_miss + b"\nERROR\n", "utf-8", {"e": "ERROR"}, 100, [])
    assert (counts.lines, counts.oversized, counts.matches) == (4, 2, [2])


def test_japanese_pattern_matches_cp932_and_utf16_text() -> None:
    text = ["2024-05-01 02:00:00 ERROR 与信エラー: カード有効期限切れ", "2024-05-01 02:00:01 INFO  正常終了"]
    patterns = {"expired": "有効期限切れ", "error": r"^\S+ \S+ ERROR ", "kana": r"[ァ-ヶー]{3,}"}
    for encoding in ("cp932", "shift_jis", "utf-16-le", "utf-16-be", "utf-8"):
        codec = resolve(encoding).default.codec
        data = "".join(line + "\r\n" for line in text).encode(codec)
        counts = scan(data, encoding, patterns, 1024, [])
        assert (counts.lines, counts.matches) == (2, [1, 1, 1]), encoding


def test_cp932_character_with_two_encodings_is_matched_from_either() -> None:
    # 'Ⅰ' is 0x8754 (NEC) and 0xFA4A (IBM) in cp932: a byte search for one would miss the other.
    data = b"step \x87\x54\nstep \xfa\x4a\n"
    assert data.decode("cp932").count("Ⅰ") == 2
    assert scan(data, "cp932", {"roman": "Ⅰ"}, 100, []).matches == [2]


def test_literal_options() -> None:
    def ok(ch: str) -> bool:
        return True

    assert literal_options(r"^\S+ \S+ ERROR ", ok) == [frozenset({" ERROR "})]
    assert frozenset({"ERROR", "FATAL"}) in literal_options("ERROR|FATAL", ok)
    assert literal_options("(?i)error", ok) == []
    assert literal_options("ab|cdef", ok) == []  # 'ab' is too short to be worth a pass
    assert frozenset({"name="}) in literal_options("name=(?:山田|佐藤)", ok)
    assert pure_literals("(?:ERROR|FATAL)") == frozenset({"ERROR", "FATAL"})
    assert pure_literals(r"ERROR\b") is None
    assert line_local(r"^\S+ ERROR$") and not line_local(r"(?<=a)b") and not line_local(r"\AERROR")


def test_patterns_sharing_a_literal_list_it_once() -> None:
    pattern_set = PatternSet(
        {"a": r"^\S+ ERROR ", "b": " ERROR ", "c": r"^INFO .* ERROR "}, resolve("utf-8"), 100
    )
    scanner = pattern_set.scanner_for(b"")
    assert scanner._needles == (b" ERROR ",)


# Literal patterns that share literals, overlap each other's literals and not: one multi-literal
# pass must find every line each of them needs.
LITERAL_PATTERNS = {
    "level_error": r"^\S+ \S+ ERROR ",
    "bare_error": " ERROR ",  # the same literal as level_error and decoy
    "decoy": r"^\S+ \S+ INFO .* ERROR ",
    "warn": r"^\S+ \S+ WARN ",  # " WARN " and " ERROR " overlap on a space: " WARN ERROR "
    "word": "ERROR",  # inside every " ERROR " hit
    "plural": "ERRORS",  # starts where ERROR starts
    "stack": r"^(?:\tat |Caused by: |\S+Exception: )",
    "expired": "有効期限切れ",
    "name": "name=(?:山田|佐藤)",
    "tail": "ORS x",  # overlaps the end of ERRORS
}

LITERAL_LINE_PARTS = [
    "2024-01-01 00:00:00 ERROR boom",
    "2024-01-01 00:00:01 INFO  state ERROR cleared",
    "2024-01-01 00:00:02 WARN ERROR ",
    " WARN ",
    "ERRORS x",
    "ERR",
    "OR ",
    "\tat a.B(C.java:1)",
    "Caused by: x",
    "a.BException: y",
    "カード有効期限切れ",
    "name=山田",
    "name=鈴木",
    "ウRROR",  # in cp932 b'\x83ERROR': the bytes of ERROR inside a character, not the text
    "",
    "\r",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.lists(st.sampled_from(LITERAL_LINE_PARTS), max_size=4).map("".join), max_size=30),
    encoding=st.sampled_from(["utf-8", "cp932", "utf-16-le", "utf-16-be", "euc-jp"]),
    cuts=st.lists(st.integers(0, 3000), max_size=6),
)
def test_many_literal_patterns_equal_a_line_by_line_reference(
    texts: list[str], encoding: str, cuts: list[int]
) -> None:
    codec = resolve(encoding).default.codec
    lines = [t.encode(codec) for t in texts]
    data = b"".join(line + "\n".encode(codec) for line in lines)
    expected = reference(lines, codec, LITERAL_PATTERNS, 1000)
    assert scan(data, encoding, LITERAL_PATTERNS, 1000, cuts) == expected


@settings(max_examples=500, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab x", max_size=12).map(str.encode), max_size=12),
    first=st.text(alphabet="ab ", min_size=1, max_size=4).map(str.encode),
    more=st.lists(st.text(alphabet="ab ", min_size=1, max_size=4).map(str.encode), max_size=5),
    before=st.text(alphabet="ab\n", max_size=4).map(str.encode),
    after=st.text(alphabet="ab\n", max_size=4).map(str.encode),
)
def test_literal_lines_reports_every_literal_of_every_line(
    lines: list[bytes], first: bytes, more: list[bytes], before: bytes, after: bytes
) -> None:
    """Against `in` on each line, with literals that overlap and lines made of their letters;
    bytes outside the block (a literal's other half included) must not count."""
    needles = list(dict.fromkeys([first, *more]))
    block = b"".join(line + b"\n" for line in lines)
    buf = before + block + after
    expected = []
    pos = len(before)
    for line in lines:
        mask = sum(1 << i for i, needle in enumerate(needles) if needle in line)
        if mask:
            expected.append((pos, pos + len(line), mask))
        pos += len(line) + 1
    assert LiteralLines(needles).find(buf, len(before), len(before) + len(block)) == expected


def test_overlapping_literals_are_all_reported() -> None:
    finder = LiteralLines([b" ERROR ", b" WARN ", b"ERRORS", b"ERROR"])
    data = b"x WARN ERROR y\nERRORS\nz ERROR\n"
    assert finder.find(data, 0, len(data)) == [(0, 14, 0b1011), (15, 21, 0b1100), (22, 29, 0b1000)]


@pytest.mark.parametrize(
    ("before", "block", "after"),
    [
        (b"x ERROR \nx ERR", b"OR \nt ERROR \n", b" ERROR \n"),  # a literal cut by the block's start
        (b"x\nzz", b" ERROR y\nt ERROR \n", b" ERROR "),  # a hit in the first line, at the start
        (b"", b" ERROR y\nt ERROR \n", b""),  # the block fills the buffer
    ],
)
def test_hits_at_block_edges_and_outside_the_block(before: bytes, block: bytes, after: bytes) -> None:
    """Only the block's lines count: not the bytes around it in the buffer, whatever they hold."""
    patterns = {"error": " ERROR ", "level": r"^\S+ ERROR "}
    pattern_set = PatternSet(patterns, resolve("utf-8"), 100)
    counts = pattern_set.new_counts()
    buf = bytearray(before + block + after)
    pattern_set.scanner_for(b"").count_block(buf, len(before), len(before) + len(block), counts)
    lines = block.split(b"\n")[:-1]
    assert counts == reference(lines, "utf-8", patterns, 100)
    assert counts.matches[1] == 1


def test_a_match_across_a_line_break_does_not_count() -> None:
    text = "2024-01-01 00:00:00 ERR\nOR x\n2024-01-01 00:00:01 ERROR\n  code=7\nname=\n山田\nERROR \n"
    patterns = {
        "level": r"^\S+ \S+ ERROR ",  # its literal " ERROR " is cut by the first newline
        "spanning": r"ERROR\s+code",  # \s would match the newline if lines were not kept apart
        "word": "ERROR",
        "name": "name=山田",
    }
    for encoding in ("utf-8", "cp932", "utf-16-le", "utf-16-be"):
        counts = scan(text.encode(encoding), encoding, patterns, 100, [9, 40])
        assert (counts.lines, counts.matches) == (7, [0, 0, 2, 0]), encoding


def test_a_literals_bytes_inside_a_cp932_character_do_not_match() -> None:
    data = "ウRROR\nERROR\n".encode("cp932")  # b'\x83ERROR\nERROR\n'
    assert scan(data, "cp932", {"word": "ERROR", "rx": "ERRORS?"}, 100, []).matches == [1, 1]


def test_unsupported_encodings_are_refused() -> None:
    for name in ("utf-7", "cp037", "iso2022_jp", "no-such-codec"):
        with pytest.raises(ValueError):
            resolve(name)


@pytest.mark.parametrize("name", ["raw_unicode_escape", "unicode_escape"])
def test_escape_codecs_are_refused_with_their_reason(name: str) -> None:
    # b"\\u0034\\u0030\\u0034" is the text "404": a byte-level search could never count it right
    with pytest.raises(ValueError, match="backslash escapes make an ASCII byte stand for another character"):
        resolve(name)


def test_a_codec_that_cannot_replace_a_bad_byte_is_refused() -> None:
    # idna decodes b"xn--bcher-kva" as "bücher" and raises on what it cannot read, whatever the handler
    with pytest.raises(ValueError, match="idna.*cannot replace an undecodable byte"):
        resolve("idna")


@pytest.mark.parametrize("pattern", [r"\B", r"^\B$", r"\B|zz"])
def test_an_empty_line_matches_only_what_it_matches_alone(pattern: str) -> None:
    # searched as a block, \B matches between the two newlines around an empty line; alone, it does not
    data = b"a\n\nbb\n\n"
    lines = data.decode().split("\n")[:-1]
    expected = sum(1 for line in lines if re.search(pattern, line))
    assert scan(data, "utf-8", {"p": pattern}, 100, []).matches == [expected]
