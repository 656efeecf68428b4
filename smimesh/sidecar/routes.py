"""The route stage: from what the caller asked for (Host/authority or original destination)
to a Logical target (a Service port), then through the TrafficSplit to a Concrete one (the
backend cluster).

Logical targets are built by `tables` from a snapshot; `outbound` resolves them per request
(HTTP) or per connection (TCP) and `forwarding`/`tcp` send to the Concrete target's cluster.
Weighted choice is a binary search over cumulative weights; a zero weight never wins.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass

from smimesh.proxyconfig import outbound
from smimesh.sidecar import clusters, matching


class NoRouteError(Exception):
    """No backend can take this request (unknown backend, all-zero weights)."""


@dataclass(frozen=True, slots=True)
class Backend:
    service: str  # namespace/name
    weight: int
    cluster: clusters.Cluster | None  # None: the backend Service is not in the snapshot


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    matches: tuple[matching.CompiledMatch, ...]
    backends: tuple[Backend, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def build(
        cls, name: str, matches: tuple[matching.CompiledMatch, ...], backends: tuple[Backend, ...]
    ) -> Split:
        running, cumulative = 0, []
        for backend in backends:
            running += backend.weight
            cumulative.append(running)
        return cls(name, matches, backends, tuple(cumulative))

    def applies(self, request: Callable[[], matching.RequestFacts] | None) -> bool:
        """An empty `matches` applies to everything; TCP (no request) only then."""
        if not self.matches:
            return True
        return request is not None and matching.first_match(self.matches, request()) is not None

    def choose(self) -> Backend:
        total = self.cumulative[-1] if self.cumulative else 0
        if total == 0:
            raise NoRouteError(f"TrafficSplit {self.name} gives every backend weight 0")
        point = random.randrange(total)
        return self.backends[bisect.bisect_right(self.cumulative, point)]


@dataclass(frozen=True, slots=True)
class Logical:
    """A Service port as the caller addressed it."""

    service: outbound.OutboundService
    port: outbound.ServicePort
    root: clusters.Cluster
    splits: tuple[Split, ...]

    @property
    def name(self) -> str:
        return f"{self.service.service}:{self.port.port}"


@dataclass(frozen=True, slots=True)
class Concrete:
    """Where this request (or connection) goes: a cluster, and the split that sent it."""

    cluster: clusters.Cluster
    split: str  # "" when no TrafficSplit applied


def choose(logical: Logical, request: Callable[[], matching.RequestFacts] | None) -> Concrete:
    """Apply the first TrafficSplit whose matches admit the request (whose facts are only
    computed when a split has matches); else the root. `None` for a TCP connection."""
    for split in logical.splits:
        if split.applies(request):
            backend = split.choose()
            if backend.cluster is None:
                raise NoRouteError(f"backend {backend.service} of {split.name} is not known")
            return Concrete(backend.cluster, split.name)
    return Concrete(logical.root, "")
