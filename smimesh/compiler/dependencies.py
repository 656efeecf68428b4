"""Which compiled units read which inputs: the dependency index of `incremental`.

`incremental` records, each time it compiles a unit (an outbound Service, a split root, a
proxy's workload, an inbound policy, a TrafficTarget's findings), the inputs it read; when
objects change it asks for the readers of the inputs they touch. Pure data, no mesh logic.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

Unit = TypeVar("Unit", bound=Hashable)
Input = TypeVar("Input", bound=Hashable)


class Dependencies(Generic[Unit, Input]):
    """A two-way multimap: unit -> the inputs it read, input -> the units that read it."""

    def __init__(self) -> None:
        self._reads: dict[Unit, frozenset[Input]] = {}
        self._readers: defaultdict[Input, set[Unit]] = defaultdict(set)

    def record(self, unit: Unit, inputs: Iterable[Input]) -> None:
        """`unit` now reads exactly `inputs` (what it read before is forgotten)."""
        self.forget(unit)
        read = frozenset(inputs)
        self._reads[unit] = read
        for item in read:
            self._readers[item].add(unit)

    def forget(self, unit: Unit) -> None:
        for item in self._reads.pop(unit, frozenset()):
            readers = self._readers[item]
            readers.discard(unit)
            if not readers:
                del self._readers[item]

    def readers(self, inputs: Iterable[Input]) -> set[Unit]:
        """Every unit that read one of `inputs`."""
        found: set[Unit] = set()
        for item in inputs:
            found |= self._readers.get(item, set())
        return found
