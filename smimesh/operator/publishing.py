"""Turns index changes into compiled configs and hands each proxy its newest snapshot.

`Publisher.run` waits for `indexing.MeshIndex.changed`, lets a burst of changes settle
(coalescing: a hundred object changes become a few compilations), compiles off the event
loop, and wakes only the sessions whose config version changed. `serving` registers a
`Session` per connected proxy and records its ACKs/NACKs; `statuses` reads `Publisher` to
tell whether a compilation is Programmed (every connected proxy ACKed it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from smimesh.compiler import compiling
from smimesh.operator import indexing
from smimesh.proxyconfig import refs, snapshots

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One connected proxy: what it should hold, what it acknowledged, what it refused."""

    proxy: refs.ProxyRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: str | None = None
    acked: str | None = None
    nacked: tuple[str, str] | None = None


@dataclass
class Publisher:
    index: indexing.MeshIndex
    settle: float = 0.05
    max_delay: float = 0.5
    compilation: compiling.Compilation = field(
        default_factory=lambda: compiling.Compilation(configs={}, findings=())
    )
    compiled_generation: int = -1
    compilations: int = 0
    sessions: dict[refs.ProxyRef, list[Session]] = field(default_factory=dict)
    compiled: asyncio.Event = field(default_factory=asyncio.Event)

    def desired(self, proxy: refs.ProxyRef) -> snapshots.ProxyConfig | None:
        return self.compilation.configs.get(proxy)

    def attach(self, proxy: refs.ProxyRef) -> Session:
        session = Session(proxy)
        self.sessions.setdefault(proxy, []).append(session)
        session.wake.set()
        return session

    def detach(self, session: Session) -> None:
        peers = self.sessions.get(session.proxy, [])
        if session in peers:
            peers.remove(session)
        if not peers:
            self.sessions.pop(session.proxy, None)

    def programmed(self) -> bool:
        """Every connected proxy ACKed the config of the newest compilation."""
        for proxy, peers in self.sessions.items():
            config = self.desired(proxy)
            if config is None:
                continue
            if any(session.acked != config.version for session in peers):
                return False
        return True

    def pending(self) -> list[str]:
        """Proxies that do not hold their newest config yet (with the reason of a NACK),
        for status messages."""
        waiting = []
        for proxy, peers in sorted(self.sessions.items(), key=lambda item: str(item[0])):
            config = self.desired(proxy)
            if config is None:
                continue
            for session in peers:
                if session.acked == config.version:
                    continue
                refused = session.nacked
                if refused is not None and refused[0] == config.version:
                    waiting.append(f"{proxy} (refused it: {refused[1]})")
                else:
                    waiting.append(str(proxy))
                break
        return waiting

    async def compile_now(self) -> None:
        generation = self.index.generation
        mesh = self.index.snapshot()
        started = time.monotonic()
        result = await asyncio.to_thread(compiling.compile_mesh, mesh)
        before = self.compilation.configs
        self.compilation = result
        self.compiled_generation = generation
        self.compilations += 1
        changed = 0
        for proxy, peers in self.sessions.items():
            old, new = before.get(proxy), result.configs.get(proxy)
            if (old and old.version) != (new and new.version):
                changed += 1
                for session in peers:
                    session.wake.set()
        log.info(
            "compiled generation %d: %d proxies, %d findings, %d pushes in %.0f ms",
            generation,
            len(result.configs),
            len(result.findings),
            changed,
            (time.monotonic() - started) * 1000,
        )
        self.compiled.set()
        self.compiled = asyncio.Event()

    async def run(self) -> None:
        """Compile whenever the index changes; runs until cancelled."""
        while True:
            await self.index.changed.wait()
            deadline = time.monotonic() + self.max_delay
            # Let a burst settle: wait until no change for `settle`, at most `max_delay`.
            while time.monotonic() < deadline:
                self.index.changed.clear()
                try:
                    await asyncio.wait_for(self.index.changed.wait(), self.settle)
                except TimeoutError:
                    break
            self.index.changed.clear()
            await self.compile_now()
