"""The operator benchmark's proxies: many config streams in one process, each the sidecar's
own `discovery.DiscoveryClient` (its Hello, TLS channel, ACK queue, reconnect backoff) with a
bench `answer` that records what arrived instead of building the sidecar's tables.

`Wire` is the only part that knows the message format (resource deltas: a proxy's whole
scope on connect, then only the resources that changed). Used by
`operator_propagation.py`; a bench module, outside the package (mypy it by path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc

from smimesh._aio import waiting
from smimesh.proxyconfig import outbound, refs, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.sidecar import discovery


class Wire:
    """What one received response means: its size on the wire, the outbound entry of a
    Service in it (if the delta carries that resource), and the answer the sidecar sends."""

    @staticmethod
    def size(message: pb.ConfigDelta) -> int:
        return message.ByteSize()

    @staticmethod
    def outbound_entry(
        message: pb.ConfigDelta, service: refs.ServiceRef
    ) -> outbound.OutboundService | None:
        """The Service's entry if this delta carries its `outbound/...` resource (only that
        body is parsed: thousands of proxies share this process)."""
        name = resources.outbound_name(service)
        for resource in message.resources:
            if resource.name == name:
                return outbound.OutboundService.model_validate_json(resource.body_json)
        return None

    @staticmethod
    def ack(message: pb.ConfigDelta) -> pb.ProxyMessage:
        return pb.ProxyMessage(ack=pb.Ack(nonce=message.nonce, version=message.version))


@dataclass(frozen=True)
class Holding:
    """What a proxy holds: the watched split's weight for the proxy's `backend` (None: no
    such route), since when, and when its last message arrived."""

    weight: int | None = None
    since: float = 0.0
    last: float = 0.0


def weight_of(entry: outbound.OutboundService | None, backend: str) -> int | None:
    if entry is None or not entry.routes:
        return None
    weights = {b.service.name: b.weight for b in entry.routes[0].backends}
    return weights.get(backend)


class _Unapplied:
    """The sink a bench proxy never calls (its `answer` records instead of applying)."""

    def apply(self, config: snapshots.ProxyConfig) -> None:
        raise AssertionError("a bench proxy applies nothing")


class BenchProxy(discovery.DiscoveryClient):
    """One proxy: the sidecar's config client, recording each message's arrival and size."""

    def __init__(
        self,
        target: str,
        hello: pb.Hello,
        credentials: grpc.ChannelCredentials,
        watched: refs.ServiceRef,
        backend: str,
    ) -> None:
        super().__init__(target, _Unapplied(), hello=lambda: hello, credentials=credentials)
        self.watched = watched
        self.backend = backend
        self.holding: waiting.Versioned[Holding] = waiting.Versioned(Holding())
        self.received_bytes = 0
        self.messages = 0

    async def answer(self, response: pb.ConfigDelta, workload: str) -> pb.ProxyMessage:
        now = time.monotonic()
        self.received_bytes += Wire.size(response)
        self.messages += 1
        before = self.holding.value
        entry = Wire.outbound_entry(response, self.watched)
        if entry is None and not response.full:  # a delta without the Service keeps it
            weight = before.weight
        else:
            weight = weight_of(entry, self.backend)
        since = before.since if weight == before.weight else now
        self.holding.set(Holding(weight, since, now))
        return Wire.ack(response)


class FleetError(RuntimeError):
    """Not every proxy got there in time; the message says how many did."""


class Fleet:
    """Proxies streaming concurrently on the running event loop; `async with` starts them and
    cancels every stream on the way out."""

    def __init__(self, proxies: Iterable[BenchProxy]) -> None:
        self.proxies = list(proxies)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Fleet:
        # Each stream that breaks logs a warning; a storm of a thousand says nothing new.
        logging.getLogger(discovery.__name__).setLevel(logging.ERROR)
        self._tasks = [asyncio.create_task(proxy.run()) for proxy in self.proxies]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def received_bytes(self) -> int:
        return sum(proxy.received_bytes for proxy in self.proxies)

    async def all_hold(self, weight: int, *, within: float) -> float:
        """Until every proxy holds `weight`; returns when the last one got it."""
        held = await self._every(lambda h: h.weight == weight, within, f"weight {weight}")
        return max(h.since for h in held)

    async def all_heard_after(self, moment: float, *, within: float) -> float:
        """Until every proxy received a message after `moment` (a new stream's first config);
        returns when the last one did."""
        held = await self._every(lambda h: h.last > moment, within, "a config again")
        return max(h.last for h in held)

    async def _every(
        self, predicate: Callable[[Holding], bool], within: float, what: str
    ) -> list[Holding]:
        try:
            async with asyncio.timeout(within):
                return list(
                    await asyncio.gather(*(proxy.holding.wait(predicate) for proxy in self.proxies))
                )
        except TimeoutError:
            there = sum(predicate(proxy.holding.value) for proxy in self.proxies)
            raise FleetError(
                f"{there} of {len(self.proxies)} proxies held {what} within {within:.0f}s"
            ) from None
