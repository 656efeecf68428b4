"""Protocol upgrades (WebSocket) through a meshed pair: the handshake is routed, authorized
and forwarded like any request, then after 101 the bytes flow both ways, including bytes the
client sent right behind its handshake."""

from __future__ import annotations

import asyncio
from typing import Any

from smimesh.proxyconfig import inbound, matches, refs
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe

CHAT = refs.ProxyRef(namespace=NS, service_account="chat", pod="chat-6f9c8d7b5c-xyz12")
HANDSHAKE = (
    b"GET /socket HTTP/1.1\r\nHost: chat.shop\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def _upgrading_app() -> tuple[asyncio.Server, list[bytes]]:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        while data := await reader.read(1024):
            writer.write(data.upper())
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), heads


async def test_websocket_upgrade_through_a_meshed_pair(sidecars: Any, pki: Pki) -> None:
    app, heads = await _upgrading_app()
    app_port = app.sockets[0].getsockname()[1]
    port = free_port()
    try:
        await sidecars(
            config(
                proxy=CHAT,
                inbound_ports=(
                    inbound.InboundPort(
                        port=port, app_port=app_port, protocol="http",
                        rules=(inbound.InboundRule(
                            target=f"{NS}/web-to-chat", sources=(spiffe(NS, "web"),),
                            http_matches=(matches.HttpMatch(path_regex="/socket"),),
                        ),),
                    ),
                ),
            ),
            credentials=pki.credentials(NS, "chat"), inbound_host="127.0.0.1",
        )  # fmt: skip
        client = await sidecars(
            config(
                outbound_services=(
                    service("chat", [("127.0.0.1", port, CHAT.pod)], meshed=True,
                            identity=spiffe(NS, "chat")),
                )
            ),
            credentials=pki.credentials(NS, "web"),
        )  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", client.ports["outbound"])
        writer.write(HANDSHAKE + b"early bytes;")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(b"and more")
        echoed = b""
        while len(echoed) < len(b"EARLY BYTES;AND MORE"):
            echoed += await asyncio.wait_for(reader.read(100), 5)
        assert echoed == b"EARLY BYTES;AND MORE"
        writer.close()
        assert b"upgrade: websocket" in heads[0].lower()
        assert b"sec-websocket-key" in heads[0].lower()
    finally:
        app.close()
