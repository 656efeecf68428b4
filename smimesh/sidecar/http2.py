"""The HTTP/2 filter chain (and so gRPC): serve a downstream h2 session, route each stream,
and relay it over a pooled, multiplexed upstream h2 session with flow control both ways.

Fed by `outbound` and `inbound` once `sniff` saw the client preface (prior knowledge: h2c in
plaintext, h2 inside mesh mTLS). Uses `h2sessions` for the protocol, `routes`/`clusters` for
the choice of endpoint, `authorizing` on the inbound side. The per-request deadline covers the
time to the response headers only, so long gRPC streams are not cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from smimesh._aio import streams, tasks
from smimesh.proxyconfig import workloads
from smimesh.sidecar import (
    authorizing,
    clusters,
    context,
    endpoints,
    h2sessions,
    matching,
    paths,
    routes,
    settings,
    tables,
    tracing,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# `te: trailers` is legal in HTTP/2 (and gRPC requires it); h2 refuses the others.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"upgrade"})


async def sniff(reader: asyncio.StreamReader, *, within: float = 10.0) -> bytes:
    """The first bytes of a connection, enough to tell the HTTP/2 preface from HTTP/1.1."""
    data = b""
    async with asyncio.timeout(within):
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return data
            data += chunk
            if len(data) >= len(PREFACE) or not PREFACE.startswith(data):
                return data


class Upstreams:
    """Multiplexed client sessions per endpoint; a new one only when all are full or gone.
    Callers that find none with room share one pending connect per endpoint: a burst of
    streams opens one connection, not one each."""

    def __init__(
        self, connector: endpoints.Connector, limits: settings.Limits | None = None
    ) -> None:
        self.connector = connector
        self.limits = limits if limits is not None else settings.Limits()
        self.sessions: dict[endpoints.Address, list[h2sessions.Session]] = {}
        self.connecting: dict[endpoints.Address, asyncio.Task[h2sessions.Session]] = {}
        self.running = tasks.Nursery("h2-upstreams")

    async def session_for(self, endpoint: endpoints.EndpointState) -> h2sessions.Session:
        address = endpoint.address
        for _ in range(3):  # the connect we waited for may be full or gone already
            pool = [s for s in self.sessions.get(address, []) if not s.closed]
            self.sessions[address] = pool
            for session in pool:
                if session.capacity > 0:
                    return session
            pending = self.connecting.get(address)
            if pending is None:
                pending = asyncio.get_running_loop().create_task(self._connect(address))
                self.connecting[address] = pending
                pending.add_done_callback(self._connected)
            await asyncio.shield(pending)
        raise ConnectionResetError(f"no h2 session to {address.host}:{address.port} has room")

    async def _connect(self, address: endpoints.Address) -> h2sessions.Session:
        conn = await self.connector.connect(address)
        session = h2sessions.Session(
            conn.reader, conn.writer, client=True, name="h2-upstream", limits=self.limits
        )
        session.start()
        self.running.start(session.run())
        self.sessions.setdefault(address, []).append(session)
        return session

    def _connected(self, task: asyncio.Task[h2sessions.Session]) -> None:
        for address, pending in list(self.connecting.items()):
            if pending is task:
                del self.connecting[address]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone meanwhile

    async def close(self) -> None:
        for pending in list(self.connecting.values()):
            pending.cancel()
        for pool in self.sessions.values():
            for session in pool:
                session.goaway()
                streams.abort(session.writer)
        await self.running.cancel()


def normalized(stream: h2sessions.Stream, *, merge_slashes: bool) -> paths.Target:
    """The stream's `:path` normalized by `paths` and written back into its headers, so that
    what `facts_of` matches is what `proxy_stream` forwards. Raises `paths.PathError`."""
    index = next((i for i, (key, _) in enumerate(stream.headers) if key == b":path"), -1)
    if index < 0:
        raise paths.PathError("no :path")
    value = stream.headers[index][1]
    method = stream.header(b":method") or "GET"
    target = paths.normalize(value, method=method, absolute=False, merge_slashes=merge_slashes)
    forwarded = target.origin_form
    if forwarded != value:
        stream.headers[index] = (b":path", forwarded)
    return target


def facts_of(stream: h2sessions.Stream, target: paths.Target) -> matching.RequestFacts:
    headers: dict[str, str] = {}
    for key, value in stream.headers:
        if not key.startswith(b":"):
            name, text = key.decode("latin-1"), value.decode("latin-1")
            headers[name] = f"{headers[name]},{text}" if name in headers else text
    return matching.RequestFacts(stream.header(b":method") or "GET", target.path, headers)


def respond(stream: h2sessions.Stream, status: int, text: str) -> None:
    body = (text + "\n").encode()
    session = stream.session
    session.send_headers(
        stream.stream_id,
        [
            (b":status", str(status).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    session.send_body(stream.stream_id, body)


async def serve(
    ctx: context.Context,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first: bytes,
    handler: Callable[[h2sessions.Stream], Awaitable[None]],
) -> None:
    """One downstream h2 connection; GOAWAY once draining and no stream is left."""

    async def handle(stream: h2sessions.Stream) -> None:
        try:
            await handler(stream)
        finally:
            if ctx.drain() and len(stream.session.streams) <= 1:
                stream.session.goaway()
                stream.session.writer.close()

    session = h2sessions.Session(
        reader, writer, client=False, on_request=handle, name="h2-down", limits=ctx.settings.limits
    )
    session.start(first)
    try:
        await session.run(idle_wait=ctx.drain.idle)
    finally:
        if ctx.drain():
            session.goaway()


async def proxy_stream(
    down: h2sessions.Stream,
    cluster: clusters.Cluster,
    upstreams: Upstreams,
    *,
    add: tuple[tuple[bytes, bytes], ...],
    drop: frozenset[bytes],
    deadline: float,
    retries: int,
) -> tuple[int, endpoints.Address | None]:
    """Relay one stream to `cluster`; returns (status, endpoint). Retries cover connecting
    only: nothing was sent yet, so any method is safe to send elsewhere."""
    tried: list[endpoints.EndpointState] = []
    session = None
    for _ in range(retries + 1):
        try:
            endpoint = cluster.pick(tried)
        except clusters.NoEndpointError:
            break
        tried.append(endpoint)
        try:
            session = await upstreams.session_for(endpoint)
            break
        except (OSError, TimeoutError):
            cluster.record(endpoint, False)
    if session is None:
        respond(down, 503, f"smimesh: no endpoint of {cluster.name} reachable")
        return 503, None
    headers = [(k, v) for k, v in down.headers if k not in HOP_BY_HOP and k not in drop]
    try:
        up = session.open([*headers, *add])
    except ConnectionResetError:
        respond(down, 503, f"smimesh: no endpoint of {cluster.name} reachable")
        return 503, None
    endpoint.in_flight += 1
    sending = asyncio.get_running_loop().create_task(_pump(down, up))
    status = 502
    gave_up = False  # the caller reset its stream: no verdict on the endpoint
    try:
        async with asyncio.timeout(deadline):
            assert up.response is not None
            response = await up.response
        status = int(dict(response).get(b":status", b"502"))
        down.session.send_headers(
            down.stream_id, [(k, v) for k, v in response if k not in HOP_BY_HOP]
        )
        await _pump(up, down)
        return status, endpoint.address
    except TimeoutError:
        status = 504
        session.reset(up.stream_id)
        respond(down, 504, f"smimesh: {cluster.name} timed out after {deadline:g}s")
        return 504, endpoint.address
    except ConnectionResetError:
        down.session.reset(down.stream_id)
        return status, endpoint.address
    except asyncio.CancelledError:
        gave_up = True
        session.reset(up.stream_id)  # frees the upstream stream for the next caller
        raise
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        session.forget(up.stream_id)
        endpoint.in_flight -= 1
        if not gave_up:
            cluster.record(endpoint, status < 500)


async def _pump(source: h2sessions.Stream, target: h2sessions.Stream) -> None:
    """Data, trailers, end or reset from one stream to the other, acknowledging as we go."""
    out = target.session
    while True:
        kind, payload = await source.events.get()
        if kind == "data":
            data, size = payload
            await out.send_data(target.stream_id, data)
            source.consumed(size)
        elif kind == "trailers":
            out.send_headers(target.stream_id, payload, end=True)
            return
        elif kind == "end":
            out.end(target.stream_id)
            return
        else:  # reset
            out.reset(target.stream_id)
            return


async def _traced(
    ctx: context.Context,
    stream: h2sessions.Stream,
    cluster: clusters.Cluster,
    upstreams: Upstreams,
    *,
    server: bool,
    add: tuple[tuple[bytes, bytes], ...],
    deadline: float,
    retries: int,
) -> tuple[int, endpoints.Address | None]:
    """`proxy_stream` inside a client or server span when tracing is on."""
    if not ctx.tracer.enabled:
        return await proxy_stream(
            stream, cluster, upstreams, add=add, drop=workloads.STATS_HEADERS, deadline=deadline,
            retries=retries,
        )  # fmt: skip
    method, path = stream.header(b":method") or "", stream.header(b":path") or ""
    attributes = {"http.request.method": method, "url.path": path, "smimesh.cluster": cluster.name}
    with ctx.tracer.span(
        f"{method} {cluster.name}", server=server, headers=stream.headers, attributes=attributes
    ) as span:
        status, endpoint = await proxy_stream(
            stream, cluster, upstreams, add=add + span.headers,
            drop=workloads.STATS_HEADERS | tracing.TRACE_HEADERS, deadline=deadline,
            retries=retries,
        )  # fmt: skip
        span.finish(status)
    return status, endpoint


# -- the two sides ---------------------------------------------------------------------------


async def serve_outbound(
    ctx: context.Context,
    upstreams: Upstreams,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first: bytes,
    resolve: Callable[[tables.Table], routes.Logical | None] | None,
) -> None:
    async def handle(stream: h2sessions.Stream) -> None:
        started = time.perf_counter()
        table = ctx.table
        if table is None:
            respond(stream, 503, "smimesh: no proxy config yet")
            return
        if resolve is not None:
            logical = resolve(table)
        else:
            logical = table.by_authority(stream.header(b":authority") or "", 80)
        if logical is None:
            respond(stream, 404, "smimesh: no such Service in the mesh")
            return
        try:
            target = normalized(stream, merge_slashes=ctx.settings.merge_slashes)
        except paths.PathError as exc:
            respond(stream, paths.STATUS, f"smimesh: bad path: {exc.reason}")
            root = logical.root
            service = workloads.Workload(root.service_namespace, "Service", root.service_name)
            millis = (time.perf_counter() - started) * 1000
            ctx.telemetry.request("client", ctx.me, service, paths.STATUS, millis)
            ctx.telemetry.route("", root.name, paths.STATUS)
            return
        try:
            concrete = routes.choose(logical, lambda: facts_of(stream, target))
        except routes.NoRouteError as exc:
            respond(stream, 503, f"smimesh: {exc}")
            return
        mesh = table.config.settings
        status, endpoint = await _traced(
            ctx, stream, concrete.cluster, upstreams, server=False, add=ctx.me.headers(),
            deadline=mesh.request_timeout_seconds, retries=mesh.retries,
        )  # fmt: skip
        cluster = concrete.cluster
        if endpoint is not None and endpoint.pod:
            destination = workloads.Workload.of_pod(cluster.service_namespace, endpoint.pod)
        else:
            destination = workloads.Workload(
                cluster.service_namespace, "Service", cluster.service_name
            )
        millis = (time.perf_counter() - started) * 1000
        ctx.telemetry.request("client", ctx.me, destination, status, millis)
        ctx.telemetry.route(concrete.split, cluster.name, status)

    await serve(ctx, reader, writer, first, handle)


async def serve_inbound(
    ctx: context.Context,
    upstreams: Upstreams,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first: bytes,
    policy: tables.InboundPolicy,
    identity: str | None,
    peer: workloads.Workload,
) -> None:
    async def handle(stream: h2sessions.Stream) -> None:
        started = time.perf_counter()
        try:
            target = normalized(stream, merge_slashes=ctx.settings.merge_slashes)
        except paths.PathError as exc:
            ctx.telemetry.denied(policy.port.port, "path")
            respond(stream, paths.STATUS, f"smimesh: bad path: {exc.reason}")
            millis = (time.perf_counter() - started) * 1000
            ctx.telemetry.request("server", peer, ctx.me, paths.STATUS, millis)
            return
        facts = facts_of(stream, target)
        source = workloads.Workload.from_headers(facts.headers, peer)
        # Per stream, the newest snapshot's rules: a pooled connection must see a
        # TrafficTarget added or removed (as http1 does per request).
        table = ctx.table
        current = table.inbound.get(policy.port.port) if table is not None else policy
        if current is None:
            decision = authorizing.Decision(False, "port no longer meshed")
        else:
            decision = authorizing.authorize(current, identity, facts)
        if current is None or not decision.allowed:
            ctx.telemetry.denied(policy.port.port, "http2")
            respond(stream, 403, f"smimesh: denied: {decision.reason}")
            status, source = 403, peer  # a denied caller's headers name nothing
        else:
            table = ctx.table
            deadline = table.config.settings.request_timeout_seconds if table else 15.0
            status, _ = await _traced(
                ctx, stream, current.app, upstreams, server=True, add=(), deadline=deadline,
                retries=0,
            )  # fmt: skip
        millis = (time.perf_counter() - started) * 1000
        ctx.telemetry.request("server", source, ctx.me, status, millis)

    await serve(ctx, reader, writer, first, handle)
