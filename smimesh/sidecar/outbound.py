"""Outbound (app -> mesh): the connection handlers of the outbound listeners and the HTTP
handler that routes each request to a Service.

Fed by `listeners` for three kinds of port: the explicit HTTP proxy (`HTTP_PROXY`; Host or
absolute-form target, CONNECT tunnels), a local port per Service, and the transparent port
(`SO_ORIGINAL_DST`, via `transparent`). Picks the filter chain (HTTP/1.1 `http1`, HTTP/2
`http2`, opaque `tcp`), resolves the Logical target in the snapshot it began with (`routes`),
and forwards with `forwarding`. Unknown transparent destinations pass through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from smimesh.proxyconfig import workloads
from smimesh.sidecar import (
    clusters,
    context,
    endpoints,
    http1,
    http2,
    listeners,
    paths,
    relaying,
    routes,
    tables,
    tcp,
    tracing,
    transparent,
)

log = logging.getLogger(__name__)

Resolve = Callable[[tables.Table], routes.Logical | None]


def origin_form(target: bytes) -> tuple[bytes | None, bytes]:
    """(authority, path-and-query) of an absolute-form target; (None, target) otherwise.
    Raw, for the Host routing and for egress (hosts outside the mesh get the target as
    sent); requests to a mesh Service are matched and forwarded with `Request.normalize`."""
    if target.startswith(b"/") or target == b"*":
        return None, target
    _, sep, rest = target.partition(b"://")
    if not sep:
        return None, target
    end = len(rest)
    for stop in (b"/", b"?"):
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, path = rest[:end], rest[end:]
    return authority, path if path.startswith(b"/") else b"/" + path


class Outbound:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self.h2 = http2.Upstreams(ctx.connector, ctx.settings.limits)
        self.egress = clusters.Registry(ctx.settings.limits, ctx.settings.outliers)
        self._egress: dict[tuple[str, int], clusters.Cluster] = {}

    def egress_cluster(self, authority: str, default_port: int) -> clusters.Cluster | None:
        """A host outside the mesh, asked for through the explicit proxy: passed through
        (as transparent mode passes unknown destinations), pooled, never given mesh headers.
        At most 1024 such hosts are remembered; beyond that the table starts afresh."""
        host, port = tables.split_authority(authority, default_port)
        if not host:
            return None
        found = self._egress.get((host, port))
        if found is None:
            if len(self._egress) >= 1024:
                self.egress.close()
                self.egress = clusters.Registry(
                    self.ctx.settings.limits, self.ctx.settings.outliers
                )
                self._egress.clear()
            found = self._egress[(host, port)] = self.egress.cluster(
                f"egress:{host}:{port}", namespace="", service=host,
                addresses=[endpoints.Address(host, port)],
            )  # fmt: skip
        return found

    # -- listeners' connection handlers ------------------------------------------------------

    async def proxy_connection(self, conn: socket.socket) -> None:
        reader, writer = await listeners.streams(conn)
        await self._serve_http(reader, writer, None)

    async def local_connection(self, conn: socket.socket, local_port: int) -> None:
        reader, writer = await listeners.streams(conn)
        table = self.ctx.table
        logical = table.local.get(local_port) if table is not None else None
        if logical is None:
            writer.close()
            return
        key = (str(logical.service.service), logical.port.port)
        if logical.port.protocol == "tcp":
            await self._tcp(reader, writer, logical)
        else:
            await self._serve_http(reader, writer, lambda t: t.by_service.get(key))

    async def transparent_connection(self, conn: socket.socket) -> None:
        destination = transparent.original_destination(conn)
        reader, writer = await listeners.streams(conn)
        if destination is None:
            writer.close()
            return
        table = self.ctx.table
        logical = table.by_address.get(destination) if table is not None else None
        if logical is None:
            await self._passthrough(reader, writer, destination)
        elif logical.port.protocol == "tcp":
            await self._tcp(reader, writer, logical)
        else:
            await self._serve_http(reader, writer, lambda t: t.by_address.get(destination))

    # -- filter chains -------------------------------------------------------------------------

    async def _serve_http(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resolve: Resolve | None
    ) -> None:
        first = await http2.sniff(reader)
        if first.startswith(http2.PREFACE):
            await http2.serve_outbound(self.ctx, self.h2, reader, writer, first, resolve)
            return
        limits = self.ctx.settings.limits

        async def handle(request: http1.Request, down: asyncio.StreamWriter) -> bool:
            return await self.http(request, down, resolve)

        await http1.serve(
            reader, writer, handle, limits=limits, draining=self.ctx.drain, first=first,
            tunnel=self._connect if resolve is None else None, idle=self.ctx.drain.idle,
        )  # fmt: skip

    async def http(
        self, request: http1.Request, writer: asyncio.StreamWriter, resolve: Resolve | None
    ) -> bool:
        started = time.perf_counter()
        table = self.ctx.table
        if table is None:
            writer.write(request.answer(503, "smimesh: no proxy config yet"))
            return True
        absolute, path = origin_form(request.target)
        authority = absolute.decode("latin-1") if absolute else request.header(b"host") or ""
        logical = resolve(table) if resolve is not None else table.by_authority(authority, 80)
        if logical is None:
            egress = None if resolve is not None else self.egress_cluster(authority, 80)
            if egress is None:
                writer.write(request.answer(404, "smimesh: no such Service in the mesh"))
                return True
            payload = relaying.encode_request(
                request, path=path, host=absolute, drop=workloads.STATS_HEADERS
            )
            mesh = table.config.settings
            passed = await self.ctx.forwarder.forward(
                request, writer, cluster=egress, payload=payload,
                deadline=mesh.request_timeout_seconds, retries=mesh.retries,
            )  # fmt: skip
            self.ctx.telemetry.route("", egress.name, passed.status)
            return passed.keep_alive
        try:
            path = request.normalize(merge_slashes=self.ctx.settings.merge_slashes).origin_form
        except paths.PathError as exc:
            writer.write(request.answer(paths.STATUS, f"smimesh: bad path: {exc.reason}"))
            self._record(logical.root, "", paths.STATUS, None, started)
            return True
        try:
            concrete = routes.choose(logical, request.facts)
        except routes.NoRouteError as exc:
            writer.write(request.answer(503, f"smimesh: {exc}"))
            self._record(logical.root, "", 503, None, started)
            return True
        mesh = table.config.settings

        async def send(add: tuple[tuple[bytes, bytes], ...], drop: frozenset[bytes]) -> Any:
            payload = relaying.encode_request(request, path=path, host=absolute, add=add, drop=drop)
            return await self.ctx.forwarder.forward(
                request,
                writer,
                cluster=concrete.cluster,
                payload=payload,
                deadline=mesh.request_timeout_seconds,
                retries=mesh.retries,
            )

        tracer = self.ctx.tracer
        if not tracer.enabled:
            result = await send(self.ctx.me.headers(), workloads.STATS_HEADERS)
        else:
            attributes = {
                "http.request.method": request.method,
                "url.path": request.path,
                "smimesh.cluster": concrete.cluster.name,
                "smimesh.split": concrete.split,
            }
            name = f"{request.method} {logical.name}"
            with tracer.span(name, server=False, headers=request.headers,
                             attributes=attributes) as span:  # fmt: skip
                result = await send(
                    self.ctx.me.headers() + span.headers,
                    workloads.STATS_HEADERS | tracing.TRACE_HEADERS,
                )
                span.finish(result.status)
        self._record(concrete.cluster, concrete.split, result.status, result.endpoint, started)
        return bool(result.keep_alive)

    def _record(
        self,
        cluster: clusters.Cluster,
        split: str,
        status: int,
        endpoint: endpoints.Address | None,
        started: float,
    ) -> None:
        telemetry = self.ctx.telemetry
        if endpoint is not None and endpoint.pod:
            destination = workloads.Workload.of_pod(cluster.service_namespace, endpoint.pod)
        else:
            destination = workloads.Workload(
                cluster.service_namespace, "Service", cluster.service_name
            )
        millis = (time.perf_counter() - started) * 1000
        telemetry.request("client", self.ctx.me, destination, status, millis)
        telemetry.route(split, cluster.name, status)

    async def _connect(
        self,
        request: http1.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        leftover: bytes,
    ) -> None:
        """CONNECT host:port through the explicit proxy: a TCP tunnel to the Service (or,
        for a host outside the mesh, straight to it)."""
        table = self.ctx.table
        target = request.target.decode("latin-1")
        logical = table.by_authority(target, 443) if table is not None else None
        egress = self.egress_cluster(target, 443) if logical is None and table else None
        if logical is None and egress is None:
            writer.write(http1.simple_response(404, "smimesh: no such Service", keep_alive=False))
            await http1.close(writer)
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if logical is not None:
            await self._tcp(reader, writer, logical, first=leftover)
        elif egress is not None:
            await connect_and_relay(self.ctx, egress, reader, writer, first=leftover, retries=0)

    async def _tcp(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        logical: routes.Logical,
        *,
        first: bytes = b"",
    ) -> None:
        """One TCP connection: one weighted choice, then one endpoint (retried on connect)."""
        try:
            cluster = routes.choose(logical, None).cluster
        except routes.NoRouteError as exc:
            log.info("tcp %s: %s", logical.name, exc)
            await http1.close(writer)
            return
        await connect_and_relay(self.ctx, cluster, reader, writer, first=first)

    async def _passthrough(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        destination: tuple[str, int],
    ) -> None:
        try:
            up = await self.ctx.connector.connect(endpoints.Address(*destination))
        except (OSError, TimeoutError):
            await http1.close(writer)
            return
        await tcp.relay(reader, writer, up.reader, up.writer)


async def connect_and_relay(
    ctx: context.Context,
    cluster: clusters.Cluster,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    first: bytes = b"",
    retries: int = 2,
) -> None:
    tried: list[endpoints.EndpointState] = []
    for _ in range(retries + 1):
        try:
            endpoint = cluster.pick(tried)
        except clusters.NoEndpointError:
            break
        tried.append(endpoint)
        try:
            up = await ctx.connector.connect(endpoint.address)
        except (OSError, TimeoutError):
            cluster.record(endpoint, False)
            continue
        cluster.record(endpoint, True)
        endpoint.in_flight += 1
        try:
            sent, received = await tcp.relay(reader, writer, up.reader, up.writer, first=first)
        finally:
            endpoint.in_flight -= 1
        ctx.telemetry.tcp_bytes(cluster.name, sent, received)
        return
    await http1.close(writer)
