"""Shards of a fleet: which exporter takes which job, the same answer on every host and every release.

A job belongs to shard `int(sha256(name).hexdigest()[:8], 16) % count` (the name's UTF-8 bytes): no
process state, no salt, no Python `hash()` (which changes with every process), so that any number of
exporters given the same `count` split a fleet without talking to each other.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_SHARDS = 1000
SHARD_HINT = f"'i/n': shard i (from 0) of n shards, e.g. 0/4; n from 1 to {MAX_SHARDS}"
_SHARD = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


def shard_of(job: str, count: int) -> int:
    """The shard (0 to count-1) that takes `job`."""
    if count < 1:
        raise ValueError(f"a fleet is split into at least 1 shard, got {count}")
    return int(hashlib.sha256(job.encode("utf-8")).hexdigest()[:8], 16) % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def takes(self, job: str) -> bool:
        return shard_of(job, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = Shard(0, 1)


def parse_shard(text: str) -> Shard:
    """'i/n' as a Shard; ValueError saying what is expected."""
    match = _SHARD.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected {SHARD_HINT}, got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"expected {SHARD_HINT}: {count} shards is out of range")
    if index >= count:
        raise ValueError(f"expected {SHARD_HINT}: shard {index} does not exist among {count} (0 to {count - 1})")
    return Shard(index, count)
