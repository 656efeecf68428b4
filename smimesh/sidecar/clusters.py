"""Clusters: the endpoints of one Service port, load balancing across them and the circuit
breaking and outlier ejection that protect them.

Built by `tables` for each (Service, port) of a snapshot through `Registry`, which keeps the
mutable per-endpoint state alive across config swaps; used by `forwarding` (HTTP) and `tcp`.
Balancing is power-of-two-choices on in-flight requests, skipping ejected endpoints (all of
them, if every endpoint is ejected: Envoy's "panic" mode, better than failing everything).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from smimesh.sidecar import endpoints, settings


@dataclass(eq=False)
class Budget:
    """Circuit breaker of one cluster: at most `max_connections` requests upstream at once
    and `max_pending` waiting for a slot; beyond that, fail fast (503 overflow).

    Counters on the fast path; futures only for requests that actually have to wait."""

    max_connections: int
    max_pending: int
    active: int = 0
    _waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)

    @property
    def pending(self) -> int:
        return len(self._waiters)

    def overflowing(self) -> bool:
        return self.active >= self.max_connections and self.pending >= self.max_pending

    async def acquire(self) -> None:
        if self.active < self.max_connections and not self._waiters:
            self.active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot over: `active` is already counted
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted and cancelled at once: pass the slot on
            else:
                with contextlib.suppress(ValueError):  # release() may have dropped it
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class CircuitOpenError(Exception):
    """The cluster's circuit breaker is open."""


class NoEndpointError(Exception):
    """The cluster has no endpoint to send to."""


@dataclass(frozen=True, eq=False)
class Cluster:
    """One snapshot's view of a Service port: immutable list, shared live state."""

    name: str
    service_namespace: str
    service_name: str
    members: tuple[endpoints.EndpointState, ...]
    budget: Budget
    outliers: settings.Outliers
    http2: bool = False

    def pick(self, exclude: Collection[endpoints.EndpointState] = ()) -> endpoints.EndpointState:
        members = self.members
        if len(members) == 1 and not members[0].ejected_until:
            return members[0]  # the common case: nothing to choose
        candidates = self._candidates(exclude)
        if not candidates:
            raise NoEndpointError(f"no endpoint for {self.name}")
        if len(candidates) == 1:
            return candidates[0]
        count = len(candidates)
        first = candidates[int(random.random() * count)]
        second = candidates[int(random.random() * (count - 1))]
        if second is first:
            second = candidates[count - 1]
        return first if first.in_flight <= second.in_flight else second

    def _candidates(
        self, exclude: Collection[endpoints.EndpointState]
    ) -> list[endpoints.EndpointState]:
        now = time.monotonic()
        every = [ep for ep in self.members if ep not in exclude] or list(self.members)
        healthy = [ep for ep in every if not ep.ejected(now)]
        return healthy or every

    def record(self, endpoint: endpoints.EndpointState, ok: bool) -> None:
        """Account one result; eject the endpoint after too many consecutive failures."""
        endpoint.record(ok)
        if ok or endpoint.consecutive_failures < self.outliers.consecutive_failures:
            return
        now = time.monotonic()
        ejected = sum(1 for ep in self.members if ep.ejected(now))
        if (ejected + 1) > self.outliers.max_ejected_ratio * len(self.members) and ejected:
            return
        endpoint.ejections += 1
        endpoint.ejected_until = now + self.outliers.base_ejection * endpoint.ejections
        endpoint.consecutive_failures = 0


@dataclass(eq=False)
class Registry:
    """Live endpoint state and budgets, keyed so that a new snapshot finds the old ones."""

    limits: settings.Limits
    outliers: settings.Outliers
    _endpoints: dict[endpoints.Address, endpoints.EndpointState] = field(default_factory=dict)
    _budgets: dict[str, Budget] = field(default_factory=dict)
    _used: set[endpoints.Address] = field(default_factory=set)

    def cluster(
        self,
        name: str,
        *,
        namespace: str,
        service: str,
        addresses: Iterable[endpoints.Address],
        http2: bool = False,
    ) -> Cluster:
        states = []
        for address in addresses:
            state = self._endpoints.get(address)
            if state is None:
                state = self._endpoints[address] = endpoints.EndpointState(address)
            self._used.add(address)
            states.append(state)
        budget = self._budgets.get(name)
        if budget is None:
            budget = self._budgets[name] = Budget(
                self.limits.max_connections_per_cluster, self.limits.max_pending_per_cluster
            )
        return Cluster(name, namespace, service, tuple(states), budget, self.outliers, http2)

    def begin(self) -> None:
        """Start building a snapshot: track which endpoints it uses."""
        self._used = set()

    def prune(self) -> None:
        """After a swap: forget endpoints the new snapshot no longer names (requests in
        flight keep their own references; only idle pooled connections are closed)."""
        for address in list(self._endpoints):
            if address not in self._used:
                self._endpoints.pop(address).retire()

    def close_idle(self) -> None:
        """Close every pooled connection (new requests dial again: new TLS handshakes)."""
        for state in self._endpoints.values():
            state.close_idle()

    def close(self) -> None:
        for state in self._endpoints.values():
            state.retire()
