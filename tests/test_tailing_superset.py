"""The prefilter path for patterns without a literal (superset byte regex run by Hyperscan) counts
what decoding and searching every line counts, in every encoding it serves."""

from __future__ import annotations

import codecs
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch_exporter.tailing import superset as superset_module
from batch_exporter.tailing.encoding import resolve
from batch_exporter.tailing.scanner import PatternSet, _SupersetPlan
from batch_exporter.tailing.superset import high_span, superset

pytest.importorskip("hyperscan")

ATOMS = [
    r"\d",
    r"\w",
    r"\s",
    r"\W",
    r"[0-9]",
    r"[45]",
    r"[^4]",
    ".",
    "4",
    "k",
    "s",
    "x",
    "ア",
    "１",
    "٤",
    "é",
    " ",
    r"\b",
]
QUANTS = ["", "", "+", "*", "?", "{2}", "{1,3}", "+?"]
# Texts: ASCII digits and letters, fullwidth and Arabic-Indic digits, cp932 characters whose trail
# byte is an ASCII letter or '@[\]^_`{|}~' (ア = 0x83 0x41, ソ = 0x83 0x5c, ー = 0x81 0x5b), CRLF.
CHARS = list("0123456789 45kKsSx_-.:\t\r") + [
    "\u212a",
    "\u017f",
    "１",
    "５",
    "٤",
    "ア",
    "ソ",
    "ー",
    "表",
    "é",
    "、",
    "\ufffd",
]
ENCODINGS = ["cp932", "utf-8", "utf-16-le", "utf-16", "latin-1"]


def reference(text_lines: list[str], pattern: str) -> int:
    return sum(1 for line in text_lines if re.search(pattern, line.removesuffix("\r")))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    def piece() -> str:
        atom = draw(st.sampled_from(ATOMS))
        return atom if atom == r"\b" else atom + draw(st.sampled_from(QUANTS))

    alternatives = ["".join(piece() for _ in range(draw(st.integers(1, 4)))) for _ in range(draw(st.integers(1, 2)))]
    body = "|".join(alternatives)
    if len(alternatives) > 1 and draw(st.booleans()):
        body = r"\b(?:" + body + r")\b"
    # anchors: '$' ends the byte regex only when it ends the pattern (else the per-match form runs)
    body = draw(st.sampled_from(["", "", "^"])) + body + draw(st.sampled_from(["", "", "$"]))
    return draw(st.sampled_from(["", "(?i)", "(?a)"])) + body


def count(data: bytes, encoding: str, pattern: str, cuts: list[int]) -> tuple[int, int, bool]:
    """Lines and matches from the scanner, fed in blocks cut at the given line numbers."""
    pset = PatternSet({"p": pattern}, resolve(encoding), 1 << 20)
    scanner = pset.scanner_for(data[:4])
    counts = pset.new_counts()
    newline = scanner.encoding.newline
    start = len(scanner.encoding.bom) if data.startswith(scanner.encoding.bom) and scanner.encoding.bom else 0
    ends = [i + len(newline) for i in range(start, len(data), len(newline)) if data[i : i + len(newline)] == newline]
    pos = start
    for index, end in enumerate(ends):
        if index in cuts or end == ends[-1]:
            scanner.count_block(data, pos, end, counts)
            pos = end
    return counts.lines, counts.matches[0], isinstance(scanner._plans[0], _SupersetPlan)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=patterns(),
    lines=st.lists(st.text(st.sampled_from(CHARS), max_size=12), min_size=1, max_size=12),
    encoding=st.sampled_from(ENCODINGS),
    cuts=st.lists(st.integers(0, 12), max_size=3),
)
def test_superset_path_counts_what_decoding_counts(
    pattern: str, lines: list[str], encoding: str, cuts: list[int]
) -> None:
    text = "\n".join(lines) + "\n"
    data = codecs.encode(text, encoding, "replace")
    decoded = codecs.decode(data, encoding, "replace").split("\n")[:-1]
    got_lines, got, _ = count(data, encoding, pattern, cuts)
    assert (got_lines, got) == (len(decoded), reference(decoded, pattern))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=60), pattern=patterns(), encoding=st.sampled_from(["cp932", "utf-8", "latin-1"]))
def test_random_bytes_never_miscount(data: bytes, pattern: str, encoding: str) -> None:
    data = data.replace(b"\n", b"") + b"\n" + data[::-1] + b"\n"
    decoded = data.decode(encoding, "replace").split("\n")[:-1]
    assert count(data, encoding, pattern, [])[1] == reference(decoded, pattern)


@pytest.mark.parametrize("encoding", ["cp932", "utf-8", "utf-16-le", "latin-1"])
def test_status_code_pattern_takes_the_prefilter(encoding: str) -> None:
    lines = ["GET /a 404 12ms", "GET /b 200 4503ms", "rc=500", "ア404ア", "、451、", "４５０", "x 5００ y\r"]
    data = codecs.encode("\n".join(lines) + "\n", encoding, "replace")
    decoded = codecs.decode(data, encoding, "replace").split("\n")[:-1]
    got_lines, got, prefiltered = count(data, encoding, r"\b[45]\d\d\b", [])
    assert prefiltered
    assert (got_lines, got) == (7, reference(decoded, r"\b[45]\d\d\b")) == (7, reference(decoded, r"\b[45]\d\d\b"))


def test_without_hyperscan_the_plain_path_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(superset_module, "hyperscan", None)
    data = "a 404\nb 200\n".encode("cp932")
    assert count(data, "cp932", r"\b[45]\d\d\b", []) == (2, 1, False)


def test_what_is_refused() -> None:
    assert superset(r"(a)\1", "utf-8") is None  # back reference
    assert superset(r"x*", "utf-8") is None  # matches every line
    assert high_span("euc_jp") is None and high_span("gb18030") is None  # longer sequences
    assert high_span("cp932") == r"[\x80-\xff][^\n]?" and high_span("latin-1") == r"[\x80-\xff]"
    found = superset(r"\b[45]\d\d\b", "cp932")
    assert found is not None and found.exact
    looser = superset(r"a(?=b)\d", "utf-8")
    assert looser is not None and not looser.exact


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [(r"[^\x00-\x7f][^\x00-\x7f]", 3), (r"\w\W", 3), (r"^[^\x00-\x7f]{2}$", 1)],
)
def test_a_codec_whose_one_span_gives_two_characters_keeps_the_plain_path(pattern: str, expected: int) -> None:
    # big5hkscs decodes 0x88 0x62 to two characters (Ê and U+0304): a span per character would miss them
    data = b"\x88\x62\nx\x88\x62y\n\x88\x62\x88\x62\n"
    assert high_span("big5hkscs") is None
    assert count(data, "big5hkscs", pattern, []) == (3, expected, False)


def test_each_line_is_reported_once_however_many_matches_it_holds() -> None:
    found = superset(r"\b[45]\d\d\b", "cp932")
    assert found is not None and found.line_regex is not None
    finder = superset_module.LineFinder(found.regex, found.line_regex, unsure=True)
    data = "404 500 451 499\nok 200\nア404 x 503\r\n".encode("cp932")
    ends, unsure = finder.line_ends(b"xx" + data, 2, 2 + len(data))
    newlines = [i for i, byte in enumerate(b"xx" + data) if byte == 0x0A]
    assert ends == [newlines[0], newlines[2]]
    assert unsure == [newlines[2]]  # a byte >= 0x80 (and a '\r'): its answer needs decoding


@pytest.mark.parametrize(
    "pattern, ending",
    [
        (r"\b[45]\d\d\b", rb"[^\n]*\n)"),  # a closing \b: the newline, or a non-word byte and the rest
        (r"\d\d$", rb"\r?\n"),  # an end of line: the newline itself
        (r"\d\d", rb"[^\n]*\n"),  # no anchor: the rest of the line
        (r"x\d$|\d\dy", None),  # a '$' inside: each match is reported, and lines worked out from them
        (r"(4\d\d\b)", None),
    ],
)
def test_the_byte_regex_carried_to_its_line_end(pattern: str, ending: bytes | None) -> None:
    found = superset(pattern, "utf-8")
    assert found is not None
    if ending is None:
        assert found.line_regex is None
    else:
        assert found.line_regex is not None and found.line_regex.endswith(ending)
    lines = ["rc=12", "x4 and 77y", "x5", "405 407", "a 404b", "nothing", "rc=7\r"]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    assert count(data, "utf-8", pattern, [])[1:] == (reference(lines, pattern), True)


def test_a_line_form_hyperscan_refuses_falls_back_to_reporting_each_match() -> None:
    found = superset(r"\b[45]\d\d\b", "latin-1")
    assert found is not None
    finder = superset_module.line_finder(superset_module.Superset(found.regex, found.exact, line_regex=b"(unclosed"))
    assert finder is not None
    data = b"404 500\nok\n7 451\n"
    assert finder.line_ends(data, 0, len(data))[0] == [7, 16]


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp932"])
@pytest.mark.parametrize("pattern", [r"(\w\b\.$)", r"(\.$)(?<!x)", r"(a\b$)", r"(;$)|^\t"])
def test_a_dollar_inside_the_pattern_finds_the_blocks_last_line(encoding: str, pattern: str) -> None:
    """Hyperscan's multiline '$' misses some matches before a block's last newline once the block has 17
    bytes; a '$' inside the pattern is searched as the newline itself."""
    lines = ["2026-12-04 job 16 started", "2026-12-04 job 17 finished.", "GET /index.html took 12ms a",
             "x = 1;", "\tindented"]
    for last in range(len(lines)):
        text_lines = lines[: last + 1]
        data = ("\n".join(text_lines) + "\n").encode(encoding)
        found = superset(pattern, encoding)
        assert found is not None and found.line_regex is None and not found.exact and b"$" not in found.regex
        assert count(data, encoding, pattern, [])[1:] == (reference(text_lines, pattern), True), text_lines
