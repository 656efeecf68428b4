"""Opaque TCP: the TrafficSplit is applied once per connection (not per byte or message),
bytes are relayed both ways and counted, and half-closes reach the other side."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httpx

from smimesh.sidecar import settings
from tests.sidecar.conftest import config, free_port, service, split

CONNECTIONS = 400


async def _tcp_server(name: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client half-closes
        writer.write(name + b":" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_tcp_split_is_per_connection_and_bytes_are_counted(sidecars: Any) -> None:
    (a, port_a), (b, port_b) = await _tcp_server(b"a"), await _tcp_server(b"b")
    local = free_port()
    try:
        proxy = await sidecars(
            config(
                outbound_services=(
                    service("db", port=5432, protocol="tcp",
                            routes=(split("db-split", {"db-a": 25, "db-b": 75}),)),
                    service("db-a", [("127.0.0.1", port_a, "a")], port=5432, protocol="tcp"),
                    service("db-b", [("127.0.0.1", port_b, "b")], port=5432, protocol="tcp"),
                )
            ),
            local_services=(settings.LocalService.parse(f"{local}=shop/db:5432"),),
        )  # fmt: skip

        async def one(i: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            for part in (b"hello ", b"from ", str(i).encode()):  # several writes, one backend
                writer.write(part)
                await writer.drain()
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            return answer

        answers = []
        for start in range(0, CONNECTIONS, 50):
            answers += await asyncio.gather(*(one(i) for i in range(start, start + 50)))
        assert all(ans.endswith(b"hello from " + str(i).encode()) for i, ans in enumerate(answers))
        counts = collections.Counter(ans.split(b":")[0] for ans in answers)
        # 25 % of 400: sd 2.2 pp; ±8 pp is 3.7 sd (a false failure once in ~5,000 runs)
        assert abs(counts[b"a"] / CONNECTIONS - 0.25) <= 0.08, counts
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{proxy.ports['admin']}/metrics")).text
        assert 'smimesh_tcp_bytes_total{cluster="shop/db-a:5432",direction="sent"}' in text
    finally:
        a.close()
        b.close()
