"""Immutable results of one poll of one source."""
from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import BY_NAME

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a contract metric, labels in the contract's order."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True)
class Snapshot:
    """Everything one source learnt in one poll."""

    source: str
    samples: tuple[Sample, ...] = field(default_factory=tuple)


# each metric's label names in contract order, and as a set to check a sample's against
_LABELS = {spec.name: (spec.labels, frozenset(spec.labels)) for spec in BY_NAME.values()}


class SampleBuilder:
    """Collects samples for a snapshot, checking names and labels against the contract. A builder shares
    one (name, value) pair, and one set of labels, among its samples that carry it (a fleet holds 160,000
    samples)."""

    def __init__(self) -> None:
        self._samples: list[Sample] = []
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._labels: dict[Labels, Labels] = {}

    def add(self, name: str, value: float, **labels: str) -> None:
        order, names = _LABELS[name]
        if labels.keys() != names:
            raise ValueError(f"{name}: labels {sorted(labels)} do not match contract {list(order)}")
        pairs = self._pairs
        ordered = tuple([pairs.setdefault(pair, pair) for pair in [(key, str(labels[key])) for key in order]])
        self._samples.append(Sample(name, self._labels.setdefault(ordered, ordered), float(value)))

    def build(self, source: str) -> Snapshot:
        return Snapshot(source=source, samples=tuple(self._samples))
