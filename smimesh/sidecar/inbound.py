"""Inbound (mesh -> app): terminate mTLS, learn the caller's identity from its certificate,
authorize each request (HTTP) or connection (TCP), and forward what is allowed to the local app.

Fed by `listeners`: in transparent mode one port receives everything (the port comes from
`SO_ORIGINAL_DST`), in explicit mode the sidecar binds each inbound port of the config itself.
Uses `authorizing` for decisions, `forwarding` (HTTP/1.1), `http2` and `tcp` to reach the app.
A denied HTTP request gets 403 with a short reason, decided on its head (before `100 Continue`;
with a body, the connection is closed and the body never read), and never reaches the app;
a denied TCP connection is closed. Plaintext is accepted only where the snapshot allows it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from smimesh.proxyconfig import workloads
from smimesh.sidecar import (
    authorizing,
    context,
    http1,
    http2,
    listeners,
    outbound,
    paths,
    relaying,
    tables,
    tracing,
    transparent,
)

log = logging.getLogger(__name__)
TLS_HANDSHAKE = 0x16


class Peer:
    """Who is calling: a verified SPIFFE id (mTLS) or nobody (plaintext)."""

    __slots__ = ("identity", "workload")

    def __init__(self, identity: str | None) -> None:
        self.identity = identity
        self.workload = _workload_of_identity(identity)


def _workload_of_identity(identity: str | None) -> workloads.Workload:
    # spiffe://<trust domain>/ns/<namespace>/sa/<service account>
    if identity is None:
        return workloads.Workload()
    parts = identity.split("/")
    try:
        return workloads.Workload(
            parts[parts.index("ns") + 1], "ServiceAccount", parts[parts.index("sa") + 1]
        )
    except (ValueError, IndexError):
        return workloads.Workload()


class Inbound:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.h2 = http2.Upstreams(ctx.connector, ctx.settings.limits)

    async def transparent_connection(self, conn: socket.socket) -> None:
        destination = transparent.original_destination(conn)
        if destination is None:
            return
        await self.port_connection(conn, destination[1])

    async def port_connection(self, conn: socket.socket, port: int) -> None:
        table = self.ctx.table
        policy = table.inbound.get(port) if table is not None else None
        if policy is None:
            return
        limits = self.ctx.settings.limits
        first = await listeners.peek(conn, 1, within=limits.header_timeout)
        if not first:
            return
        credentials = self.ctx.credentials
        if first[0] == TLS_HANDSHAKE and credentials is not None:
            server = credentials.server_context()
            if server is None:
                return
            reader, writer = await listeners.streams(conn, tls=server)
            peer = Peer(credentials.peer_identity(writer.get_extra_info("ssl_object")))
        elif policy.plaintext_ok:
            reader, writer = await listeners.streams(conn)
            peer = Peer(None)
        else:
            log.info("inbound %d: plaintext refused (mTLS is strict)", port)
            self.ctx.telemetry.denied(port, "plaintext")
            return
        if policy.port.protocol == "tcp":
            await self._tcp(reader, writer, policy, peer)
        else:
            await self._http(reader, writer, policy, peer)

    async def _tcp(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        policy: tables.InboundPolicy,
        peer: Peer,
    ) -> None:
        decision = authorizing.authorize(policy, peer.identity, None)
        if not decision.allowed:
            log.info("inbound tcp %d denied: %s", policy.port.port, decision.reason)
            self.ctx.telemetry.denied(policy.port.port, "tcp")
            await http1.close(writer)
            return
        await outbound.connect_and_relay(self.ctx, policy.app, reader, writer, retries=0)

    async def _http(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        policy: tables.InboundPolicy,
        peer: Peer,
    ) -> None:
        first = await http2.sniff(reader)
        if first.startswith(http2.PREFACE):
            await http2.serve_inbound(
                self.ctx, self.h2, reader, writer, first, policy, peer.identity, peer.workload
            )
            return

        def newest() -> tables.InboundPolicy | None:
            # Authorization follows the newest snapshot per request: a keep-alive connection
            # (the caller's sidecar pools them) must see a TrafficTarget added or removed.
            table = self.ctx.table
            return table.inbound.get(policy.port.port) if table is not None else policy

        def admit(request: http1.Request) -> http1.HttpError | None:
            # On the head: a denied caller gets no 100 Continue and its body is never read.
            latest = newest()
            if latest is None:
                return http1.HttpError(403, "smimesh: denied: port no longer meshed")
            try:
                request.normalize(merge_slashes=self.ctx.settings.merge_slashes)
                facts = request.facts()
            except paths.PathError as exc:
                self.ctx.telemetry.denied(latest.port.port, "path")
                self._record(peer.workload, paths.STATUS, time.perf_counter())
                return http1.HttpError(paths.STATUS, f"smimesh: bad path: {exc.reason}")
            decision = authorizing.authorize(latest, peer.identity, facts)
            if decision.allowed:
                return None
            self.ctx.telemetry.denied(latest.port.port, "http")
            self._record(peer.workload, 403, time.perf_counter())
            return http1.HttpError(403, f"smimesh: denied: {decision.reason}")

        async def handle(request: http1.Request, down: asyncio.StreamWriter) -> bool:
            latest = newest()
            if latest is None:
                down.write(request.answer(403, "smimesh: denied: port no longer meshed"))
                return False
            return await self.http(request, down, latest, peer)

        await http1.serve(
            reader, writer, handle, limits=self.ctx.settings.limits, draining=self.ctx.drain,
            first=first, idle=self.ctx.drain.idle, admit=admit,
        )  # fmt: skip

    async def http(
        self,
        request: http1.Request,
        writer: asyncio.StreamWriter,
        policy: tables.InboundPolicy,
        peer: Peer,
    ) -> bool:
        started = time.perf_counter()
        try:
            path = request.normalize(merge_slashes=self.ctx.settings.merge_slashes).origin_form
        except paths.PathError as exc:
            self.ctx.telemetry.denied(policy.port.port, "path")
            writer.write(request.answer(paths.STATUS, f"smimesh: bad path: {exc.reason}"))
            self._record(peer.workload, paths.STATUS, started)
            return True
        facts = request.facts()
        source = workloads.Workload.from_headers(facts.headers, peer.workload)
        decision = authorizing.authorize(policy, peer.identity, facts)
        if not decision.allowed:
            self.ctx.telemetry.denied(policy.port.port, "http")
            writer.write(request.answer(403, f"smimesh: denied: {decision.reason}"))
            self._record(peer.workload, 403, started)  # the identity's labels only
            return True
        table = self.ctx.table
        timeout = table.config.settings.request_timeout_seconds if table else 15.0
        tracer = self.ctx.tracer
        if not tracer.enabled:
            payload = relaying.encode_request(
                request, path=path, host=None, drop=workloads.STATS_HEADERS
            )
            result = await self.ctx.forwarder.forward(
                request, writer, cluster=policy.app, payload=payload, deadline=timeout, retries=0
            )
        else:
            attributes: dict[str, str | int] = {
                "http.request.method": request.method,
                "url.path": request.path,
                "smimesh.peer": peer.identity or "",
                "smimesh.port": policy.port.port,
            }
            with tracer.span(f"{request.method} :{policy.port.port}", server=True,
                             headers=request.headers, attributes=attributes) as span:  # fmt: skip
                payload = relaying.encode_request(
                    request, path=path, host=None, add=span.headers,
                    drop=workloads.STATS_HEADERS | tracing.TRACE_HEADERS,
                )  # fmt: skip
                result = await self.ctx.forwarder.forward(
                    request, writer, cluster=policy.app, payload=payload, deadline=timeout,
                    retries=0,
                )  # fmt: skip
                span.finish(result.status)
        self._record(source, result.status, started)
        return result.keep_alive

    def _record(self, source: workloads.Workload, status: int, started: float) -> None:
        millis = (time.perf_counter() - started) * 1000
        self.ctx.telemetry.request("server", source, self.ctx.me, status, millis)
