"""Immutable results of one poll of one source."""
from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import BY_NAME

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
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


class SampleBuilder:
    """Collects samples for a snapshot, checking names and labels against the contract."""

    def __init__(self) -> None:
        self._samples: list[Sample] = []

    def add(self, name: str, value: float, **labels: str) -> None:
        spec = BY_NAME[name]
        if set(labels) != set(spec.labels):
            raise ValueError(f"{name}: labels {sorted(labels)} do not match contract {list(spec.labels)}")
        ordered = tuple((key, str(labels[key])) for key in spec.labels)
        self._samples.append(Sample(name, ordered, float(value)))

    def build(self, source: str) -> Snapshot:
        return Snapshot(source=source, samples=tuple(self._samples))
