"""The admin listeners. The full one — `/ready` (a config applied, not draining), `/live`,
`/metrics` (Prometheus text), `/identity` (the current certificate's SPIFFE id and validity,
never the certificate itself), `/` (the endpoints and the version) and, only when the sidecar
runs with `--admin-config`, `/config` (the current snapshot as JSON: no secrets, but the
pod's allowed sources and every outbound endpoint) — binds 127.0.0.1 by default. The
metrics-only one (`--metrics-port`) serves `/metrics`, `/ready`, `/live` and `/` on the pod's
address, for Prometheus and kubelet.

Fed by `running` (which binds both); reads `context` (table, drain, telemetry). Served with the
same HTTP/1.1 codec as the data path. `/metrics` is rendered in a worker thread (a large
registry must not stall the data path on the event loop) and written in chunks, each drained,
within `METRICS_WRITE_SECONDS`, so a big answer arrives whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

from prometheus_client import exposition

import smimesh
from smimesh.sidecar import context, http1, listeners

log = logging.getLogger(__name__)
METRICS_WRITE_SECONDS = 30.0
"""How long one `/metrics` answer may take to reach a slow scraper before it is cut."""
CHUNK_BYTES = 256 * 1024
METRICS_ONLY = ("/ready", "/live", "/metrics")
FULL = ("/ready", "/live", "/metrics", "/identity")


class Admin:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx
        self._rendering = asyncio.Lock()  # one render at a time, however many scrapers

    @property
    def endpoints(self) -> tuple[str, ...]:
        return (*FULL, "/config") if self.ctx.settings.admin_config else FULL

    async def connection(self, conn: socket.socket) -> None:
        """The full admin listener."""
        await self._serve(conn, self.handle)

    async def metrics_connection(self, conn: socket.socket) -> None:
        """The metrics-only listener: nothing there reveals policy or endpoints."""
        await self._serve(conn, self.handle_metrics_only)

    async def _serve(self, conn: socket.socket, handler: http1.Handler) -> None:
        reader, writer = await listeners.streams(conn)
        await http1.serve(
            reader, writer, handler, limits=self.ctx.settings.limits, draining=lambda: False
        )

    async def handle_metrics_only(
        self, request: http1.Request, writer: asyncio.StreamWriter
    ) -> bool:
        path = request.path
        if path in METRICS_ONLY:
            return await self.handle(request, writer)
        if path == "/":
            return self._index(writer, METRICS_ONLY)
        writer.write(request.answer(404, "not found (this port serves /metrics only)"))
        return True

    async def handle(self, request: http1.Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path
        table = self.ctx.table
        if path == "/live":
            writer.write(request.answer(200, "live"))
        elif path == "/ready":
            if self.ctx.drain.active:
                writer.write(request.answer(503, "draining"))
            elif table is None:
                writer.write(request.answer(503, "no config yet"))
            else:
                writer.write(request.answer(200, f"ready {table.version}"))
        elif path == "/metrics":
            return await self._metrics(writer)
        elif path == "/config":
            if not self.ctx.settings.admin_config:
                text = "smimesh: /config is off (start the sidecar with --admin-config)"
                writer.write(request.answer(403, text))
                return True
            body = table.config.to_json() if table is not None else b"null"
            writer.write(http1.response_bytes(200, body, content_type=b"application/json"))
        elif path == "/identity":
            found = self.ctx.credentials.certificate() if self.ctx.credentials else None
            if found is None:
                writer.write(request.answer(404, "no certificate (yet)"))
            else:
                body = json.dumps(found.to_json()).encode()
                writer.write(http1.response_bytes(200, body, content_type=b"application/json"))
        elif path == "/":
            return self._index(writer, self.endpoints)
        else:
            writer.write(request.answer(404, "not found"))
        return True

    def _index(self, writer: asyncio.StreamWriter, endpoints: tuple[str, ...]) -> bool:
        index = {"endpoints": list(endpoints), "version": smimesh.__version__}
        body = json.dumps(index).encode()
        writer.write(http1.response_bytes(200, body, content_type=b"application/json"))
        return True

    async def _metrics(self, writer: asyncio.StreamWriter) -> bool:
        async with self._rendering:
            body = await asyncio.to_thread(self.ctx.telemetry.render)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
            exposition.CONTENT_TYPE_LATEST.encode(),
            len(body),
        )
        view = memoryview(body)
        try:
            async with asyncio.timeout(METRICS_WRITE_SECONDS):
                writer.write(head)
                for start in range(0, len(body), CHUNK_BYTES):
                    writer.write(view[start : start + CHUNK_BYTES])
                    await writer.drain()
        except TimeoutError:
            log.info(
                "/metrics: %d bytes not read within %.0fs; closing",
                len(body),
                METRICS_WRITE_SECONDS,
            )
            return False
        return True
