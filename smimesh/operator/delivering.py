"""The seam between the publisher and a connected proxy: a `ConfigSink` takes each
`deltas.Delta` meant for the proxy, and the proxy's answers come back as `Answer`s held in a
`waiting.Versioned` value tasks can wait on.

`publishing.Publisher` sends through a sink per session; `serving` implements it over
`ConfigDiscovery.Stream` (`serving.GrpcSink`, a `Mailbox` its stream drains) and
`MemorySink` here is the in-process one (fast tests, dry runs). A `Mailbox` holds at most one
delta: a delta sent before the proxy took the previous one is merged into it
(`deltas.merge`), so a slow proxy gets the latest state, never a backlog.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from smimesh.proxyconfig import deltas


class ConfigSink(Protocol):
    def send(self, delta: deltas.Delta) -> None:
        """Hand `delta` to the proxy (never blocks; merges with one not yet taken)."""


@dataclass(frozen=True)
class Answer:
    """A proxy's latest answer: the version it ACKed last, and the version and reason of a
    NACK since then (None once it ACKs again)."""

    acked: str | None = None
    nacked: tuple[str, str] | None = None


class Mailbox:
    """One slot: `send` fills or merges, `take_nowait`/`take` empty it."""

    def __init__(self) -> None:
        self._held: deltas.Delta | None = None
        self._ready = asyncio.Event()
        self.sends = 0
        self.merges = 0

    def send(self, delta: deltas.Delta) -> None:
        self.sends += 1
        if self._held is not None:
            self.merges += 1
            delta = deltas.merge(self._held, delta)
        self._held = delta
        self._ready.set()

    def take_nowait(self) -> deltas.Delta | None:
        held, self._held = self._held, None
        self._ready.clear()
        return held

    async def take(self) -> deltas.Delta:
        while self._held is None:
            await self._ready.wait()
        delta = self.take_nowait()
        assert delta is not None
        return delta


class MemorySink(Mailbox):
    """The in-process sink: what a proxy would receive waits in the slot for the reader."""
