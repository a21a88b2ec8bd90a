"""The literal prefilter reads patterns with CPython's private `re._parser`. A Python release that
removes it, changes its nodes or breaks on a pattern must leave the scanner counting exactly what it
counts today (every regex on every line, slower), never crash and never miscount."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from batch_exporter.tailing import literals
from batch_exporter.tailing.encoding import resolve
from batch_exporter.tailing.scanner import Counts, PatternSet

ROOT = Path(__file__).resolve().parents[1]
REAL_PARSER = literals._parser


def _load_workload() -> ModuleType:
    spec = importlib.util.spec_from_file_location("logscan_workload", ROOT / "bench" / "logscan_workload.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


workload = _load_workload()

# The bench's patterns (their counts are known), and three that take the other fast paths.
PATTERNS = dict(
    workload.PATTERNS,
    nocase="(?i)issuer SLOW",  # no literal: whole-block search
    declined=r"rc=(?!00)\d\d",  # a lookahead: line by line
    jpy=r"amount=\d{6} JPY rc",
)


@pytest.fixture(scope="module", params=[("cp932", False), ("utf-8", True)], ids=["cp932", "utf8-crlf"])
def sample(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    jp_encoding, crlf = request.param
    path = tmp_path_factory.mktemp("sample") / "app.log"
    truth = workload.generate(path, 512 * 1024, seed=12, jp_encoding=jp_encoding, crlf=crlf)
    return path, truth


def count(path: Path, encoding: str) -> dict[str, int]:
    data = path.read_bytes()
    pattern_set = PatternSet(PATTERNS, resolve(encoding), 64 * 1024)
    counts: Counts = pattern_set.new_counts()
    pattern_set.scanner_for(data[:4]).count_block(data, 0, len(data), counts)
    return {"lines": counts.lines, **dict(zip(pattern_set.names, counts.matches, strict=True))}


@pytest.fixture(scope="module")
def fast_counts(sample: tuple[Path, dict[str, Any]]) -> dict[str, int]:
    path, truth = sample
    counts = count(path, truth["jp_encoding"])
    assert {k: counts[k] for k in ["lines", *workload.PATTERNS]} == {"lines": truth["lines"], **truth["matches"]}
    return counts


def test_the_fast_path_uses_the_parser() -> None:
    assert literals.literal_options(workload.PATTERNS["error"], str.isascii) == [frozenset({" ERROR "})]
    assert literals.line_local(PATTERNS["jpy"])


class _Raising:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def parse(self, pattern: str) -> Any:
        raise self.error


class _Rewriting:
    """The real parser, with every node of a tree passed through `rewrite` (nested ones too)."""

    def __init__(self, rewrite: Any, only: set[str] | None = None) -> None:
        self.rewrite, self.only = rewrite, only

    def parse(self, pattern: str) -> Any:
        tree = REAL_PARSER.parse(pattern)
        if self.only is None or pattern in self.only:
            _rewrite_tree(tree, self.rewrite)
        return tree


def _rewrite_tree(sub: Any, rewrite: Any) -> None:
    sre = literals.sre
    for i, (op, av) in enumerate(sub.data):
        if op is sre.SUBPATTERN:
            _rewrite_tree(av[3], rewrite)
        elif op is sre.BRANCH:
            for alternative in av[1]:
                _rewrite_tree(alternative, rewrite)
        elif op in literals._REPEATS:
            _rewrite_tree(av[2], rewrite)
        sub.data[i] = rewrite(op, av)


NEW_NODE = object()  # a node kind a future parser might add


def _shifted_literal(op: Any, av: Any) -> tuple[Any, Any]:
    """A parser whose LITERAL nodes mean something else: it parses fine, and answers wrongly."""
    return (op, av + 1) if op is literals.sre.LITERAL else (op, av)


def _new_node_for_literal(op: Any, av: Any) -> tuple[Any, Any]:
    return (NEW_NODE, av) if op is literals.sre.LITERAL else (op, av)


BROKEN_PARSERS = {
    "parse raises AttributeError": _Raising(AttributeError("'Pattern' object has no attribute 'state'")),
    "parse raises TypeError": _Raising(TypeError("parse() missing 1 required positional argument")),
    "parse raises IndexError": _Raising(IndexError("list index out of range")),
    "parse raises re.error": _Raising(re.error("bad escape")),
    "no parse function": object(),
    "literals mean something else": _Rewriting(_shifted_literal),
    "an unknown node everywhere": _Rewriting(_new_node_for_literal),
    # Past the self-check: the node appears only in the user's patterns.
    "an unknown node in user patterns": _Rewriting(_new_node_for_literal, only=set(PATTERNS.values())),
}


@pytest.mark.parametrize("broken", BROKEN_PARSERS.values(), ids=BROKEN_PARSERS.keys())
def test_a_broken_parser_turns_the_prefilter_off_and_counts_the_same(
    broken: object,
    sample: tuple[Path, dict[str, Any]],
    fast_counts: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, truth = sample
    monkeypatch.setattr(literals, "_parser", broken)
    with caplog.at_level(logging.INFO, logger=literals.__name__):
        assert count(path, truth["jp_encoding"]) == fast_counts
        assert count(path, truth["jp_encoding"]) == fast_counts
    assert literals.literal_options(workload.PATTERNS["error"], str.isascii) == []
    assert literals.pure_literals(workload.PATTERNS["payload"]) is None
    assert not literals.line_local(PATTERNS["jpy"])
    fallbacks = [r for r in caplog.records if r.name == literals.__name__]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.INFO
    assert "prefilter off" in fallbacks[0].getMessage()


SCAN_WITHOUT_RE_PARSER = """
import json, logging, re, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
del re._parser
sys.modules["re._parser"] = None  # as if this Python had no such module
sys.path.insert(0, sys.argv[1])
import test_prefilter_fallback as t
print(json.dumps(t.count(t.Path(sys.argv[2]), sys.argv[3])))
"""


def test_a_python_without_re_parser_counts_the_same(
    sample: tuple[Path, dict[str, Any]], fast_counts: dict[str, int]
) -> None:
    path, truth = sample
    done = subprocess.run(
        [sys.executable, "-c", SCAN_WITHOUT_RE_PARSER, str(ROOT / "tests"), str(path), truth["jp_encoding"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout) == fast_counts
    fallbacks = [line for line in done.stderr.splitlines() if line.startswith("INFO batch_exporter.tailing.literals")]
    assert len(fallbacks) == 1 and "re._parser is not usable" in fallbacks[0], done.stderr
