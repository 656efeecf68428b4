"""The probe listener kubelet talks to: `/ready` and `/live` of the sidecar itself, and
`/app-health/<container>/<livez|readyz|startupz>`, which runs the app's original probe on
kubelet's behalf (httpGet, tcpSocket or gRPC health) against the local app.

The injector (`smimesh.webhooks.injection.probes`) rewrote the pod's probes to these paths and
put the originals in the `smimesh.dev/original-probes` annotation, handed to the sidecar as the
`SMIMESH_APP_PROBES` env var; `commands` parses it into `settings.app_probes`. Served by
`running` with the `http1` codec; answers from `admin` for the sidecar's own health.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import grpc

from smimesh.sidecar import admin, context, http1, listeners

PROBE_TIMEOUT = 1.0
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


def parse(text: str) -> dict[str, dict[str, Any]]:
    """The annotation's JSON: `{"<container>/<kind>": {"httpGet": {...}}, ...}`."""
    if not text.strip():
        return {}
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("SMIMESH_APP_PROBES must be a JSON object")
    return {str(key): dict(value) for key, value in loaded.items()}


class Probes:
    def __init__(self, ctx: context.Context, originals: Mapping[str, Mapping[str, Any]]) -> None:
        self.ctx = ctx
        self.originals = originals
        self.admin = admin.Admin(ctx)

    async def connection(self, conn: socket.socket) -> None:
        reader, writer = await listeners.streams(conn)
        await http1.serve(
            reader, writer, self.handle, limits=self.ctx.settings.limits, draining=lambda: False
        )

    async def handle(self, request: http1.Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path
        if not path.startswith("/app-health/"):
            if path in ("/ready", "/live"):
                return await self.admin.handle(request, writer)
            writer.write(request.answer(404, "not found"))
            return True
        original = self.originals.get(path.removeprefix("/app-health/"))
        if original is None:
            writer.write(request.answer(404, "no such probe"))
            return True
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                ok, detail = await self.run(original)
        except TimeoutError:
            ok, detail = False, f"timed out after {PROBE_TIMEOUT:g}s"
        writer.write(request.answer(200 if ok else 503, detail))
        return True

    async def run(self, original: Mapping[str, Any]) -> tuple[bool, str]:
        host = self.ctx.settings.app_host
        if "tcpSocket" in original:
            port = int(original["tcpSocket"]["port"])
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                return False, f"tcp {port}: {exc}"
            writer.close()
            return True, f"tcp {port}: connected"
        if "httpGet" in original:
            return await _http_get(host, original["httpGet"])
        if "grpc" in original:
            return await _grpc_health(host, original["grpc"])
        return False, "unknown probe action"


async def _http_get(host: str, action: Mapping[str, Any]) -> tuple[bool, str]:
    port, path = int(action["port"]), str(action.get("path") or "/")
    tls = None
    if str(action.get("scheme", "HTTP")).upper() == "HTTPS":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # kubelet does not verify probe certificates either
    headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in action.get("httpHeaders") or ())
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    except OSError as exc:
        return False, f"GET {path} on {port}: {exc}"
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/smimesh\r\n"
            f"{headers}Connection: close\r\n\r\n".encode()
        )
        status_line = await reader.readline()
    finally:
        writer.close()
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        return False, f"GET {path} on {port}: malformed response"
    # kubelet: 200 <= status < 400 is success
    return 200 <= status < 400, f"GET {path} on {port}: {status}"


async def _grpc_health(host: str, action: Mapping[str, Any]) -> tuple[bool, str]:
    port, service = int(action["port"]), str(action.get("service") or "")
    request = b"\x0a" + bytes([len(service)]) + service.encode() if service else b""
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/grpc.health.v1.Health/Check"
        )
        try:
            reply = await check(request)
        except grpc.aio.AioRpcError as exc:
            return False, f"grpc {port}: {exc.code().name}"
    return reply == SERVING, f"grpc {port}: {'SERVING' if reply == SERVING else 'NOT_SERVING'}"
