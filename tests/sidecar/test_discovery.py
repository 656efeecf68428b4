"""The config client against a real grpcio asyncio server on a real socket: Hello, ACK of an
applied snapshot, NACK with a reason for one that cannot be applied (the last good one stays),
traffic through an operator outage, and reconnection with a new Hello."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx

from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import proxyconfig_pb2_grpc as pb_grpc
from smimesh.proxyconfig import refs, snapshots
from tests.sidecar.conftest import ME, config, free_port, service


class FakeOperator(pb_grpc.ConfigDiscoveryServicer):
    """The operator's side of ConfigDiscovery.Stream, scripted by the test."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[pb.ProxyMessage] = asyncio.Queue()
        self.outgoing: asyncio.Queue[pb.ConfigSnapshot] = asyncio.Queue()

    async def Stream(  # noqa: N802 - the generated servicer's method name
        self, request_iterator: AsyncIterator[pb.ProxyMessage], context: Any
    ) -> AsyncIterator[pb.ConfigSnapshot]:
        async def read() -> None:
            async for message in request_iterator:
                await self.received.put(message)

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await self.outgoing.get()
        finally:
            reader.cancel()

    def push(
        self, cfg: snapshots.ProxyConfig | None, *, raw: bytes = b"", version: str = ""
    ) -> None:
        self.outgoing.put_nowait(
            pb.ConfigSnapshot(
                version=cfg.version if cfg else version,
                schema=snapshots.SCHEMA,
                config_json=cfg.to_json() if cfg else raw,
            )
        )

    async def next(self) -> pb.ProxyMessage:
        return await asyncio.wait_for(self.received.get(), 10)


async def _serve(operator: FakeOperator, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    pb_grpc.add_ConfigDiscoveryServicer_to_server(operator, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def test_config_client_acks_nacks_and_survives_the_operator(apps: Any, sidecars: Any) -> None:
    first, second = apps("first"), apps("second")
    good = config(outbound_services=(service("web", [("127.0.0.1", first.port, "first")]),))
    newer = config(outbound_services=(service("web", [("127.0.0.1", second.port, "second")]),))
    stranger = config(
        proxy=refs.ProxyRef(namespace="other", service_account="x", pod="x-1"),
        outbound_services=good.outbound,
    )
    port = free_port()
    operator = FakeOperator()
    server = await _serve(operator, port)
    proxy = await sidecars(proxy=ME, config_server=f"127.0.0.1:{port}")
    try:
        hello = await operator.next()
        assert hello.WhichOneof("kind") == "hello"
        assert (hello.hello.namespace, hello.hello.service_account, hello.hello.pod) == (
            ME.namespace,
            ME.service_account,
            ME.pod,
        )

        operator.push(good)
        assert (await operator.next()).ack.version == good.version
        assert proxy.sidecar.ctx.table.version == good.version

        operator.push(None, raw=b'{"not": "a config"}', version="bogus")
        nack = (await operator.next()).nack
        assert nack.version == "bogus"
        assert "ValidationError" in nack.reason
        operator.push(stranger)
        assert "config is for other/x-1" in (await operator.next()).nack.reason
        assert proxy.sidecar.ctx.table.version == good.version  # the last good one stays

        await server.stop(None)  # the operator goes away: traffic carries on
        async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
            for _ in range(5):
                assert (await client.get("http://web/")).json()["app"] == "first"

        operator = FakeOperator()
        server = await _serve(operator, port)  # back: the client reconnects and says hello
        assert (await operator.next()).WhichOneof("kind") == "hello"
        operator.push(newer)
        assert (await operator.next()).ack.version == newer.version
        async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
            assert (await client.get("http://web/")).json()["app"] == "second"
    finally:
        await server.stop(None)
