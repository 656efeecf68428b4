"""The admin listener: `/ready` (a config applied, not draining), `/live`, `/metrics`
(Prometheus text), `/config` (the current snapshot as JSON; it carries no secrets: keys
and certificates live in files, never in the config), `/identity` (the current certificate's
SPIFFE id and validity, never the certificate itself) and `/` (the endpoints and the version).

Fed by `listeners`; reads `context` (table, drain, telemetry). Served with the same HTTP/1.1
codec as the data path, on the mesh's metrics port by default so Prometheus finds it.
"""

from __future__ import annotations

import asyncio
import json
import socket

from prometheus_client import exposition

import smimesh
from smimesh.sidecar import context, http1, listeners


class Admin:
    def __init__(self, ctx: context.Context) -> None:
        self.ctx = ctx

    async def connection(self, conn: socket.socket) -> None:
        reader, writer = await listeners.streams(conn)
        await http1.serve(
            reader, writer, self.handle, limits=self.ctx.settings.limits, draining=lambda: False
        )

    async def handle(self, request: http1.Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path
        table = self.ctx.table
        if path == "/live":
            writer.write(http1.simple_response(200, "live"))
        elif path == "/ready":
            if self.ctx.drain.active:
                writer.write(http1.simple_response(503, "draining"))
            elif table is None:
                writer.write(http1.simple_response(503, "no config yet"))
            else:
                writer.write(http1.simple_response(200, f"ready {table.version}"))
        elif path == "/metrics":
            writer.write(
                http1.response_bytes(
                    200,
                    self.ctx.telemetry.render(),
                    content_type=exposition.CONTENT_TYPE_LATEST.encode(),
                )
            )
        elif path == "/config":
            body = table.config.to_json() if table is not None else b"null"
            writer.write(http1.response_bytes(200, body, content_type=b"application/json"))
        elif path == "/identity":
            found = self.ctx.credentials.certificate() if self.ctx.credentials else None
            if found is None:
                writer.write(http1.simple_response(404, "no certificate (yet)"))
            else:
                body = json.dumps(found.to_json()).encode()
                writer.write(http1.response_bytes(200, body, content_type=b"application/json"))
        elif path == "/":
            endpoints = ["/ready", "/live", "/metrics", "/config", "/identity"]
            index = {"endpoints": endpoints, "version": smimesh.__version__}
            writer.write(
                http1.response_bytes(
                    200, json.dumps(index).encode(), content_type=b"application/json"
                )
            )
        else:
            writer.write(http1.simple_response(404, "not found"))
        return True
