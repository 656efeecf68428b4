"""HTTP/2 and gRPC through the sidecars: a real grpcio client and server, unary and
bidirectional streaming, over client sidecar -> mTLS -> server sidecar -> app; and h2c with
httpx through the explicit proxy port with a TrafficSplit."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import grpc
import httpx
import pytest

from smimesh.proxyconfig import inbound, refs
from smimesh.sidecar import settings
from tests.sidecar.conftest import (
    NS,
    Pki,
    config,
    free_port,
    grpc_echo_server,
    service,
    spiffe,
    split,
)

ECHO = refs.ProxyRef(namespace=NS, service_account="echo", pod="echo-7c9d8f6b5d-qwert")


async def test_grpc_unary_and_streaming_through_a_meshed_pair(sidecars: Any, pki: Pki) -> None:
    server, _, app_port = await grpc_echo_server()
    try:
        port, local = free_port(), free_port()
        rule = inbound.InboundRule(target=f"{NS}/web-to-echo", sources=(spiffe(NS, "web"),))
        await sidecars(
            config(
                proxy=ECHO,
                inbound_ports=(
                    inbound.InboundPort(
                        port=port, app_port=app_port, protocol="http2", rules=(rule,)
                    ),
                ),
            ),
            credentials=pki.credentials(NS, "echo"),
            inbound_host="127.0.0.1",
        )
        target = service(
            "echo", [("127.0.0.1", port, ECHO.pod)], port=50051, protocol="http2",
            meshed=True, identity=spiffe(NS, "echo"),
        )  # fmt: skip
        await sidecars(
            config(outbound_services=(target,)),
            credentials=pki.credentials(NS, "web"),
            local_services=(settings.LocalService.parse(f"{local}=shop/echo:50051"),),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{local}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            for i in range(20):
                reply = await unary(f"hi{i}".encode(), metadata=(("x-who", "web"),))
                assert reply == f"echo:hi{i}:web".encode()
            big = b"x" * (3 << 20)  # beyond every flow-control window
            assert (await unary(big)).startswith(b"echo:xxxx")
            chat = channel.stream_stream("/test.Echo/Chat")
            call = chat()
            for word in (b"one", b"two", b"three"):
                await call.write(word)
                assert await call.read() == word.upper()
            await call.done_writing()
            assert await call.read() == grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
    finally:
        await server.stop(None)


async def test_grpc_call_denied_by_authorization_fails_with_permission_denied(
    sidecars: Any, pki: Pki
) -> None:
    server, echo, app_port = await grpc_echo_server()
    try:
        port, local = free_port(), free_port()
        rule = inbound.InboundRule(target=f"{NS}/ops-only", sources=(spiffe(NS, "ops"),))
        await sidecars(
            config(
                proxy=ECHO,
                inbound_ports=(
                    inbound.InboundPort(
                        port=port, app_port=app_port, protocol="http2", rules=(rule,)
                    ),
                ),
            ),
            credentials=pki.credentials(NS, "echo"),
            inbound_host="127.0.0.1",
        )
        target = service(
            "echo", [("127.0.0.1", port, ECHO.pod)], port=50051, protocol="http2",
            meshed=True, identity=spiffe(NS, "echo"),
        )  # fmt: skip
        await sidecars(
            config(outbound_services=(target,)),
            credentials=pki.credentials(NS, "web"),
            local_services=(settings.LocalService.parse(f"{local}=shop/echo:50051"),),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{local}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await channel.unary_unary("/test.Echo/Unary")(b"hi")
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert echo.calls == 0
    finally:
        await server.stop(None)


async def test_h2c_requests_are_split_per_request(apps: Any, sidecars: Any) -> None:
    # Apps speak HTTP/1.1; an h2 upstream needs an h2 app, so route h2c to grpc servers.
    servers = [await grpc_echo_server() for _ in range(2)]
    try:
        proxy = await sidecars(
            config(
                outbound_services=(
                    service("echo", port=80, protocol="http2",
                            routes=(split("echo-split", {"echo-a": 50, "echo-b": 50}),)),
                    service("echo-a", [("127.0.0.1", servers[0][2], "a")], protocol="http2"),
                    service("echo-b", [("127.0.0.1", servers[1][2], "b")], protocol="http2"),
                )
            )
        )  # fmt: skip
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{proxy.ports['outbound']}", options=(("grpc.default_authority", "echo"),)
        ) as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            for _ in range(200):
                await unary(b"x")
        counts = collections.Counter({"a": servers[0][1].calls, "b": servers[1][1].calls})
        assert counts["a"] + counts["b"] == 200
        assert 60 <= counts["a"] <= 140, counts  # 50/50 over 200: sd 7; 5.6 sd either side
    finally:
        for server, _, _ in servers:
            await server.stop(None)


async def test_httpx_http2_prior_knowledge_reaches_a_grpc_server(sidecars: Any) -> None:
    server, _, app_port = await grpc_echo_server()
    try:
        proxy = await sidecars(
            config(outbound_services=(service("echo", [("127.0.0.1", app_port, "e")]),))
        )
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            response = await client.post(
                f"http://127.0.0.1:{proxy.ports['outbound']}/test.Echo/Unary",
                headers={"host": "echo", "content-type": "application/grpc", "te": "trailers"},
                content=b"\x00\x00\x00\x00\x02hi",
            )
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.content.endswith(b"echo:hi:")
    finally:
        await server.stop(None)


async def test_drain_lets_an_in_flight_grpc_call_finish(sidecars: Any) -> None:
    release = asyncio.Event()

    async def slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await release.wait()
        return b"done:" + request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}
            ),
        )
    )
    app_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    local = free_port()
    try:
        proxy = await sidecars(
            config(outbound_services=(service("slow", [("127.0.0.1", app_port, "s")],
                                              protocol="http2"),)),
            local_services=(settings.LocalService.parse(f"{local}=shop/slow:80"),),
        )  # fmt: skip
        async with grpc.aio.insecure_channel(f"127.0.0.1:{local}") as channel:
            call = asyncio.ensure_future(channel.unary_unary("/test.Slow/Call")(b"x"))
            await asyncio.sleep(0.3)
            proxy.sidecar.stop()  # what SIGTERM does: drain
            await asyncio.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", local)
            release.set()
            assert await asyncio.wait_for(call, 5) == b"done:x"
        await asyncio.wait_for(proxy.task, 5)
    finally:
        await server.stop(None)
