"""Turns index changes into resource deltas and hands each proxy the ones of its scope.

`Publisher.run` waits for `indexing.MeshIndex.changed`, lets a burst of changes settle
(coalescing: a hundred object changes become one change set), feeds the change set to one
`compiler.incremental.IncrementalCompiler` off the event loop, and sends each session, through
its `delivering.ConfigSink`, only the resources of its scope that changed. A proxy's scope:
`settings`, every `outbound/...`, its own `proxy/<ns>/<pod>` and the inbound policies that
workload binds (never another pod's workload). A session that (re)connects, or refused a
delta, gets its whole scope in its next one.

`serving` attaches a `Session` per connected proxy and records its ACKs/NACKs; `statuses`
reads `Publisher` to tell whether the newest update is Programmed (every connected proxy ACKed
the version of its config, which is `resources.assemble`'s version of what it holds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Set
from dataclasses import dataclass, field

from smimesh._aio import waiting
from smimesh.compiler import findings, incremental, state
from smimesh.operator import delivering, indexing
from smimesh.proxyconfig import deltas, refs, resources, snapshots

log = logging.getLogger(__name__)

MAX_OUTSTANDING = 64
"""Deltas a session remembers unanswered (by nonce); an answer to an older one makes the
next delta the whole scope."""


@dataclass
class Session:
    """One connected proxy: what it was sent and holds, and its answers."""

    proxy: refs.ProxyRef
    sink: delivering.ConfigSink
    progress: waiting.Versioned[int] = field(default_factory=lambda: waiting.Versioned(0))
    """Shared by every session of a publisher: bumped by each answer (`Publisher.progress`)."""
    held: dict[str, str] | None = None
    """Name -> version of every resource sent; None: the next delta is the whole scope."""
    sent: str | None = None
    """The version of the config the proxy holds once it applied everything sent."""
    policies: frozenset[str] = frozenset()
    """The inbound policies among `held` (its workload's when last sent to)."""
    answers: waiting.Versioned[delivering.Answer] = field(
        default_factory=lambda: waiting.Versioned(delivering.Answer())
    )
    _nonces: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    @property
    def workload(self) -> str:
        return resources.workload_name(self.proxy.namespace, self.proxy.pod)

    @property
    def acked(self) -> str | None:
        return self.answers.value.acked

    @property
    def nacked(self) -> tuple[str, str] | None:
        return self.answers.value.nacked

    def deliver(self, delta: deltas.Delta, held: dict[str, str]) -> None:
        self.held, self.sent = held, delta.version
        self._nonces[delta.nonce] = delta.version
        while len(self._nonces) > MAX_OUTSTANDING:
            del self._nonces[next(iter(self._nonces))]
        self.sink.send(delta)

    def next_nonce(self) -> str:
        self._counter += 1
        return str(self._counter)

    def ack(self, nonce: str, version: str) -> None:
        """The proxy applied `nonce` and runs `version`."""
        if self._nonces.pop(nonce, None) != version:
            self.held = None  # it holds something else than we think: resend its scope
        self.answers.set(delivering.Answer(acked=version, nacked=None))
        self.progress.set(self.progress.value + 1)

    def nack(self, nonce: str, reason: str) -> None:
        """The proxy kept what it held before `nonce`: what we think it holds is wrong now."""
        version = self._nonces.pop(nonce, nonce)
        self.held = None
        self.answers.set(delivering.Answer(acked=self.acked, nacked=(version, reason)))
        self.progress.set(self.progress.value + 1)


@dataclass
class Publisher:
    index: indexing.MeshIndex
    settle: float = 0.05
    max_delay: float = 0.5
    compiler: incremental.IncrementalCompiler = field(init=False)
    latest: dict[str, resources.AnyResource] = field(init=False)
    """The loop's copy of the compiler's resources (the compiler's own is the worker's)."""
    findings: tuple[findings.Finding, ...] = ()
    compiled_generation: int = -1
    compilations: int = 0
    sessions: dict[refs.ProxyRef, list[Session]] = field(default_factory=dict)
    compiled: asyncio.Event = field(default_factory=asyncio.Event)
    progress: waiting.Versioned[int] = field(default_factory=lambda: waiting.Versioned(0))
    """Counts every answer, attach and detach: what `statuses` waits on to look again."""
    _section: resources.OutboundSection = field(init=False)

    def __post_init__(self) -> None:
        self.compiler = incremental.IncrementalCompiler(
            state.MeshState(settings=self.index.settings, default_access=self.index.default_access)
        )
        self.latest = dict(self.compiler.resources)
        self._section = resources.OutboundSection.of(self.latest)

    def desired(self, proxy: refs.ProxyRef) -> snapshots.ProxyConfig | None:
        """The config `proxy` should run now (None: the index has no meshed pod for it)."""
        workload = resources.workload_name(proxy.namespace, proxy.pod)
        if workload not in self.latest:
            return None
        return resources.assemble(self.latest, workload, section=self._section)

    def attach(self, proxy: refs.ProxyRef, sink: delivering.ConfigSink) -> Session:
        """A new session; it gets its whole scope at once if there is a config for it."""
        session = Session(proxy, sink, self.progress)
        self.sessions.setdefault(proxy, []).append(session)
        self._push(session, frozenset(), {})
        self.progress.set(self.progress.value + 1)
        return session

    def detach(self, session: Session) -> None:
        peers = self.sessions.get(session.proxy, [])
        if session in peers:
            peers.remove(session)
        if not peers:
            self.sessions.pop(session.proxy, None)
        self.progress.set(self.progress.value + 1)

    def programmed(self) -> bool:
        """Every connected proxy ACKed the config of the newest update."""
        return all(
            session.acked == session.sent
            for peers in self.sessions.values()
            for session in peers
            if session.sent is not None
        )

    def pending(self) -> list[str]:
        """Proxies that do not hold their newest config yet (with the reason of a NACK),
        for status messages."""
        waiting_for = []
        for proxy, peers in sorted(self.sessions.items(), key=lambda item: str(item[0])):
            for session in peers:
                if session.sent is None or session.acked == session.sent:
                    continue
                refused = session.nacked
                if refused is not None and refused[0] == session.sent:
                    waiting_for.append(f"{proxy} (refused it: {refused[1]})")
                else:
                    waiting_for.append(str(proxy))
                break
        return waiting_for

    def _in_scope(self, name: str, workload: str, policies: Set[str]) -> bool:
        return (
            name == resources.SETTINGS
            or name.startswith(resources.OUTBOUND_PREFIX)
            or name == workload
            or name in policies
        )

    def _push(
        self, session: Session, touched: Set[str], versions: dict[refs.ProxyRef, str]
    ) -> deltas.Delta | None:
        """Send `session` what of its scope differs from what it holds (the delta sent).
        `touched`: the names the update changed; `versions` memoizes each proxy's config
        version within one update."""
        workload = session.workload
        own = self.latest.get(workload)
        if own is None or not isinstance(own.body, resources.Workload):
            session.held = None  # no config for it now: when there is one, send it whole
            return None
        policies = resources.policies_of(own.body)
        held = session.held
        if held is None:
            changed = {
                name: resource
                for name, resource in self.latest.items()
                if self._in_scope(name, workload, policies)
            }
            removed: set[str] = set()
        else:
            candidates = {*touched, workload, *policies, *session.policies}
            changed, removed = {}, set()
            for name in candidates:
                resource = (
                    self.latest.get(name) if self._in_scope(name, workload, policies) else None
                )
                if resource is None:
                    if name in held:
                        removed.add(name)
                elif held.get(name) != resource.version:
                    changed[name] = resource
            if not changed and not removed:
                return None
        if session.proxy not in versions:
            config = resources.assemble(self.latest, workload, section=self._section)
            versions[session.proxy] = config.version
        delta = deltas.Delta(
            nonce=session.next_nonce(),
            version=versions[session.proxy],
            changed=changed,
            removed=frozenset(removed),
            full=held is None,
        )
        after = {} if held is None else {n: v for n, v in held.items() if n not in removed}
        after.update((name, resource.version) for name, resource in changed.items())
        session.policies = policies
        session.deliver(delta, after)
        return delta

    def publish(self, update: incremental.Update) -> tuple[int, int]:
        """Take `update` into the loop's resources and send every session its part; returns
        (sessions sent to, bytes of bodies sent)."""
        for name in update.delta.removed:
            self.latest.pop(name, None)
        self.latest.update(update.delta.changed)
        self.findings = update.findings
        touched = set(update.delta.changed) | update.delta.removed
        if any(name.startswith(resources.OUTBOUND_PREFIX) for name in touched):
            self._section = resources.OutboundSection.of(self.latest)
        versions: dict[refs.ProxyRef, str] = {}
        pushes = sent = 0
        for peers in self.sessions.values():
            for session in peers:
                if (delta := self._push(session, touched, versions)) is not None:
                    pushes += 1
                    sent += delta.size()
        return pushes, sent

    async def compile_now(self) -> None:
        generation = self.index.generation
        changes = self.index.take_changes()
        started = time.monotonic()
        update = await asyncio.to_thread(self.compiler.apply, changes)
        self.compiled_generation = generation
        self.compilations += 1
        pushes, sent = self.publish(update)
        log.info(
            "compiled generation %d: %d objects changed, %d resources changed, %d removed, "
            "%d findings, %d pushes of %d bytes in %.0f ms",
            generation,
            len(changes),
            len(update.delta.changed),
            len(update.delta.removed),
            len(update.findings),
            pushes,
            sent,
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
