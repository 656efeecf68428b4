"""Traces: with a tracing endpoint in the mesh settings, the client and server sidecars each
export a span over OTLP/HTTP (JSON) to a real collector socket, joined into the caller's
trace by W3C traceparent, and the app receives the server span as its parent."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx

from smimesh._aio import waiting
from smimesh.proxyconfig import inbound, refs
from smimesh.sidecar import settings
from tests.sidecar.conftest import NS, Pki, config, free_port, grpc_echo_server, service, spiffe

API = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def test_spans_join_the_callers_trace_across_both_sidecars(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    app, collector = apps("api"), apps("collector")
    endpoint = f"http://127.0.0.1:{collector.port}"
    port = free_port()
    await sidecars(
        config(
            proxy=API, tracing_endpoint=endpoint,
            inbound_ports=(
                inbound.InboundPort(
                    port=port, app_port=app.port, protocol="http",
                    rules=(inbound.InboundRule(target=f"{NS}/all", sources=(spiffe(NS, "web"),)),),
                ),
            ),
        ),
        credentials=pki.credentials(NS, "api"), inbound_host="127.0.0.1",
    )  # fmt: skip
    client = await sidecars(
        config(
            tracing_endpoint=endpoint,
            outbound_services=(
                service("api", [("127.0.0.1", port, API.pod)], meshed=True,
                        identity=spiffe(NS, "api")),
            ),
        ),
        credentials=pki.credentials(NS, "web"),
    )  # fmt: skip
    async with httpx.AsyncClient(proxy=client.proxy_url) as http:
        response = await http.get(
            "http://api.shop/orders", headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
        )
    assert response.status_code == 200
    spans = await _both_spans(collector)
    by_kind = {span["kind"]: span for span in spans}
    client_span, server_span = by_kind[3], by_kind[2]
    assert {client_span["traceId"], server_span["traceId"]} == {TRACE_ID}
    assert client_span["parentSpanId"] == CALLER_SPAN
    assert server_span["parentSpanId"] == client_span["spanId"]
    received = app.hits[-1][2]
    assert received["traceparent"] == f"00-{TRACE_ID}-{server_span['spanId']}-01"
    assert all(hit[1] == "/v1/traces" for hit in collector.hits)


def _spans(collector: Any) -> list[dict[str, Any]]:
    return [
        span
        for body in list(collector.bodies)
        for resource in json.loads(body)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


async def _both_spans(collector: Any) -> list[dict[str, Any]]:
    """Until the collector holds two spans (the client's and the server's; it has no event
    to wait on)."""
    return await waiting.eventually(
        lambda: spans if len(spans := _spans(collector)) >= 2 else None,
        timeout=10,
        message=lambda: f"the collector never got both spans: {_spans(collector)}",
        interval=0.1,
        error=AssertionError,
    )


async def test_grpc_calls_are_traced_too(apps: Any, sidecars: Any, pki: Pki) -> None:
    collector = apps("collector")
    endpoint = f"http://127.0.0.1:{collector.port}"
    server, _, app_port = await grpc_echo_server()
    port, local = free_port(), free_port()
    try:
        await sidecars(
            config(
                proxy=API, tracing_endpoint=endpoint,
                inbound_ports=(
                    inbound.InboundPort(
                        port=port, app_port=app_port, protocol="http2",
                        rules=(inbound.InboundRule(target=f"{NS}/all",
                                                   sources=(spiffe(NS, "web"),)),),
                    ),
                ),
            ),
            credentials=pki.credentials(NS, "api"), inbound_host="127.0.0.1",
        )  # fmt: skip
        await sidecars(
            config(
                tracing_endpoint=endpoint,
                outbound_services=(
                    service("api", [("127.0.0.1", port, API.pod)], port=50051, protocol="http2",
                            meshed=True, identity=spiffe(NS, "api")),
                ),
            ),
            credentials=pki.credentials(NS, "web"),
            local_services=(settings.LocalService.parse(f"{local}=shop/api:50051"),),
        )  # fmt: skip
        async with grpc.aio.insecure_channel(f"127.0.0.1:{local}") as channel:
            assert await channel.unary_unary("/test.Echo/Unary")(b"hi") == b"echo:hi:"
        by_kind = {span["kind"]: span for span in await _both_spans(collector)}
        assert by_kind[2]["parentSpanId"] == by_kind[3]["spanId"]
        assert by_kind[2]["traceId"] == by_kind[3]["traceId"]
        assert by_kind[3]["name"] == "POST shop/api:50051"
    finally:
        await server.stop(None)
