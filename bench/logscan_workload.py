#!/usr/bin/env python3
"""A synthetic card-authorization batch log whose every count is known: the log bench's workload.

`generate` writes, deterministically from a seed, log records in a Logback-like layout
(`2026-11-28 03:00:00.123 ERROR [auth-batch-3] logger - message`) and, beside the log,
`<log>.truth.json` with the number of lines and, for each pattern of `PATTERNS`, the number of lines
it matches. Every kind of line is built so that the patterns it matches are known by construction:

- INFO and DEBUG chatter, WARN records, ERROR records (half of them followed by a Java stack trace);
- INFO lines whose message quotes " ERROR " (decoys: a bare ' ERROR ' search over-counts on them);
- PayloadLogger lines carrying a 2-8 KiB JSON body;
- Japanese customer text in `jp_encoding` (cp932 by default, as Japanese enterprise systems write it,
  which is not valid UTF-8), with and without one of the names the `japanese_name` pattern lists.

`crlf=True` ends lines with CRLF (the counts stay the same: patterns see a line without its '\\r').

Usage: bench/logscan_workload.py OUT [--size-mib 128] [--seed 42] [--jp-encoding cp932|utf-8] [--crlf]
       bench/logscan_workload.py --self-test   (a small log, recounted line by line with `re`)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# Bump when the output for a given seed changes: the bench regenerates logs of another version.
VERSION = 1

JAPANESE_NAMES = (
    "山田太郎",
    "佐藤花子",
    "鈴木一郎",
    "株式会社テスト商事",
    "東京都千代田区丸の内１－１",
    "カード有効期限切れ",
)
PATTERNS = {
    "error": r"^\S+ \S+ ERROR ",
    "error_anywhere": " ERROR ",
    "warn": r"^\S+ \S+ WARN ",
    "decoy": r"^\S+ \S+ INFO .* ERROR ",
    "stack": r"^(?:\tat |\t\.\.\. \d+ more|Caused by: |\S+Exception: )",
    "payload": "PayloadLogger",
    "japanese_name": f"name=(?:{'|'.join(JAPANESE_NAMES)})",
}

_THREADS = tuple(f"auth-batch-{i}" for i in range(1, 7)) + ("settle-1", "settle-2", "main", "scheduler-1")
_CURRENCIES = ("JPY", "USD", "EUR", "KRW")
_FRAMES = (
    "jp.example.pay.auth.Authorizer.authorize(Authorizer.java:{})",
    "jp.example.pay.issuer.IssuerClient.call(IssuerClient.java:{})",
    "jp.example.pay.batch.ChunkWriter.write(ChunkWriter.java:{})",
    "org.springframework.batch.core.step.item.ChunkOrientedTasklet.execute(ChunkOrientedTasklet.java:{})",
    "java.base/java.util.concurrent.FutureTask.run(FutureTask.java:{})",
    "java.base/java.lang.Thread.run(Thread.java:{})",
)
_START = dt.datetime(2026, 11, 28)
_STATUSES = ("active", "suspended", "review")
_REASONS = ("カード有効期限切れ", "限度額超過", "暗証番号相違")  # declined reasons, never after "name="

# Which patterns each kind of line matches (the truth is counted from these, not by matching).
_KIND_MATCHES: dict[str, tuple[str, ...]] = {
    "info": (),
    "debug": (),
    "warn": ("warn",),
    "error": ("error", "error_anywhere"),
    "stack": ("stack",),
    "decoy": ("decoy", "error_anywhere"),
    "payload": ("payload",),
    "jp_name": ("japanese_name",),
    "jp_other": (),
}


class _Writer:
    """Timestamps, one random source, and the line and match counts of what was written."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.millis = 0
        self._second = -1
        self._second_text = ""
        self.lines = 0
        self.matches = dict.fromkeys(PATTERNS, 0)
        self.out: list[str] = []

    def stamp(self) -> str:
        self.millis += self.rnd.randrange(0, 40)
        second, ms = divmod(self.millis, 1000)
        if second != self._second:
            self._second = second
            self._second_text = f"{_START + dt.timedelta(seconds=second):%Y-%m-%d %H:%M:%S}"
        return f"{self._second_text}.{ms:03d}"

    def record(self, kind: str, level: str, logger: str, message: str) -> None:
        thread = self.rnd.choice(_THREADS)
        self.line(kind, f"{self.stamp()} {level:<5} [{thread}] {logger} - {message}")

    def line(self, kind: str, text: str) -> None:
        self.out.append(text)
        self.lines += 1
        for name in _KIND_MATCHES[kind]:
            self.matches[name] += 1


def _card(rnd: random.Random) -> str:
    return f"****{rnd.randrange(10000):04d}"


def _info(w: _Writer) -> None:
    r = w.rnd
    if r.random() < 0.5:
        message = (
            f"authorized card={_card(r)} amount={r.randrange(100, 500000)} {r.choice(_CURRENCIES)} "
            f"rc=00 latency_ms={r.randrange(2, 900)}"
        )
    else:
        message = f"chunk {r.randrange(1, 5000)} committed rows={r.randrange(1, 500)} skipped=0"
    w.record("info", "INFO", "jp.example.pay.batch.AuthStep", message)


def _debug(w: _Writer) -> None:
    r = w.rnd
    w.record("debug", "DEBUG", "jp.example.pay.db.RunDao", f"fetch size=500 cursor={r.getrandbits(48):012x}")


def _warn(w: _Writer) -> None:
    r = w.rnd
    message = f"issuer slow: {r.randrange(1000, 3000)} ms for card={_card(r)}, retrying"
    w.record("warn", "WARN", "jp.example.pay.issuer.IssuerClient", message)


def _error(w: _Writer) -> None:
    r = w.rnd
    w.record("error", "ERROR", "jp.example.pay.auth.Authorizer", f"authorization failed card={_card(r)} rc=91")
    if r.random() < 0.5:
        _stack_trace(w)


def _stack_trace(w: _Writer) -> None:
    r = w.rnd
    w.line("stack", f"jp.example.pay.issuer.IssuerTimeoutException: no answer in {r.randrange(1, 9)}000 ms")
    for frame in r.sample(_FRAMES, r.randrange(3, len(_FRAMES) + 1)):
        w.line("stack", "\tat " + frame.format(r.randrange(20, 900)))
    if r.random() < 0.5:
        w.line("stack", "Caused by: java.net.SocketTimeoutException: Read timed out")
        w.line("stack", "\tat " + r.choice(_FRAMES).format(r.randrange(20, 900)))
        w.line("stack", f"\t... {r.randrange(5, 40)} more")


def _decoy(w: _Writer) -> None:
    r = w.rnd
    message = f"settlement file {r.randrange(1, 99):02d}: previous attempt ended in ERROR state, resuming"
    w.record("decoy", "INFO", "jp.example.pay.settle.SettleStep", message)


def _payload(w: _Writer) -> None:
    r = w.rnd
    target = r.randrange(2048, 8192)
    items: list[str] = []
    size = 0
    while size < target:
        item = f'{{"sku":"{r.getrandbits(32):08X}","qty":{r.randrange(1, 9)},"price":{r.randrange(100, 99999)}}}'
        items.append(item)
        size += len(item) + 1
    body = f'{{"txn":"{r.getrandbits(64):016x}","items":[{",".join(items)}]}}'
    w.record("payload", "INFO", "jp.example.pay.PayloadLogger", f"request={body}")


def _japanese(w: _Writer) -> None:
    r = w.rnd
    if r.random() < 0.5:
        message = f"customer name={r.choice(JAPANESE_NAMES)} status={r.choice(_STATUSES)}"
        w.record("jp_name", "INFO", "jp.example.pay.CustomerService", message)
    else:
        message = f"declined card={_card(r)} reason={r.choice(_REASONS)}"
        w.record("jp_other", "INFO", "jp.example.pay.CustomerService", message)


_RECORDS: tuple[tuple[Callable[[_Writer], None], float], ...] = (
    (_info, 80.0),
    (_debug, 10.0),
    (_warn, 3.0),
    (_error, 0.6),
    (_decoy, 0.05),
    (_payload, 1.5),
    (_japanese, 4.0),
)


def generate(
    path: Path, size_bytes: int, *, seed: int = 42, jp_encoding: str = "cp932", crlf: bool = False
) -> dict[str, object]:
    """Write whole records to `path` until it holds at least `size_bytes`; write and return its truth."""
    rnd = random.Random(seed)
    writer = _Writer(rnd)
    makers = [maker for maker, _ in _RECORDS]
    weights = [weight for _, weight in _RECORDS]
    newline = "\r\n" if crlf else "\n"
    written = 0
    with path.open("wb") as f:
        while written < size_bytes:
            for maker in rnd.choices(makers, weights, k=2000):
                maker(writer)
            chunk = (newline.join(writer.out) + newline).encode(jp_encoding)
            writer.out.clear()
            f.write(chunk)
            written += len(chunk)
    truth: dict[str, object] = {
        "version": VERSION,
        "seed": seed,
        "jp_encoding": jp_encoding,
        "crlf": crlf,
        "file_size": written,
        "lines": writer.lines,
        "matches": writer.matches,
    }
    truth_path(path).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def truth_path(path: Path) -> Path:
    return path.with_name(path.name + ".truth.json")


def recount(path: Path, jp_encoding: str) -> dict[str, object]:
    """The truth's counts found the plain way: each line decoded and searched with each regex."""
    compiled = {name: re.compile(rx) for name, rx in PATTERNS.items()}
    matches = dict.fromkeys(PATTERNS, 0)
    lines = 0
    with path.open("rb") as f:
        for raw in f:
            lines += 1
            text = raw.decode(jp_encoding).removesuffix("\n").removesuffix("\r")
            for name, rx in compiled.items():
                if rx.search(text):
                    matches[name] += 1
    return {"lines": lines, "matches": matches}


def _self_test() -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for jp_encoding, crlf in (("cp932", False), ("utf-8", True)):
            path = Path(tmp) / "sample.log"
            truth = generate(path, 2 * 2**20, seed=7, jp_encoding=jp_encoding, crlf=crlf)
            found = recount(path, jp_encoding)
            same = {k: truth[k] for k in found} == found
            failures += not same
            print(f"{jp_encoding} crlf={crlf}: {truth['lines']:,} lines, {truth['matches']} {'OK' if same else found}")
            assert all(truth["matches"][name] for name in PATTERNS), "every pattern matches some line"  # type: ignore[index]
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--size-mib", type=float, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jp-encoding", default="cp932")
    parser.add_argument("--crlf", action="store_true")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return _self_test()
    if args.out is None:
        parser.error("OUT is required")
    truth = generate(
        args.out, int(args.size_mib * 2**20), seed=args.seed, jp_encoding=args.jp_encoding, crlf=args.crlf
    )
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
