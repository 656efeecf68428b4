"""Outbound HTTP/1.1 through the explicit proxy: routing by Host, TrafficSplit weights and
matches, keep-alive and pipelining, and the proxy's own answers."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httpx

from smimesh.proxyconfig import matches
from tests.sidecar.conftest import config, raw_outbound, read_response, service, split

REQUESTS = 4000
TOLERANCE = 0.03  # ±3 percentage points; a binomial sd at p=0.2, n=4000 is 0.63 pp


async def _fetch_many(client: httpx.AsyncClient, url: str, count: int, **kw: Any) -> list[str]:
    names: list[str] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            response = await client.get(url, **kw)
            assert response.status_code == 200, response.text
            names.append(response.json()["app"])

    await asyncio.gather(*(worker(count // 8) for _ in range(8)))
    return names


def _web_split(apps: Any, *, only: tuple[matches.HttpMatch, ...] = ()) -> Any:
    v1, v2, root = apps("v1"), apps("v2"), apps("root")
    return config(
        outbound_services=(
            service("web", [("127.0.0.1", root.port, "web-root-aaaaaaaaa-aaaaa")],
                    routes=(split("web-canary", {"web-v1": 80, "web-v2": 20}, only=only),)),
            service("web-v1", [("127.0.0.1", v1.port, "web-v1-aaaaaaaaa-aaaaa")]),
            service("web-v2", [("127.0.0.1", v2.port, "web-v2-aaaaaaaaa-aaaaa")]),
        )
    )  # fmt: skip


async def test_split_sends_traffic_by_weight(apps: Any, sidecars: Any) -> None:
    proxy = await sidecars(_web_split(apps))
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        names = await _fetch_many(client, "http://web.shop/", REQUESTS)
    counts = collections.Counter(names)
    assert set(counts) == {"v1", "v2"}
    assert abs(counts["v2"] / len(names) - 0.20) <= TOLERANCE, counts


async def test_matches_restrict_the_split_to_matching_requests(apps: Any, sidecars: Any) -> None:
    only = (matches.HttpMatch(name="canary-users", headers=(("x-canary", "yes"),)),)
    proxy = await sidecars(_web_split(apps, only=only))
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        plain = await _fetch_many(client, "http://web.shop/", 200)
        canary = await _fetch_many(client, "http://web.shop/", 800, headers={"x-canary": "yes"})
    assert set(plain) == {"root"}
    assert set(canary) == {"v1", "v2"}


async def test_zero_weight_backend_gets_no_requests(apps: Any, sidecars: Any) -> None:
    v1, v2 = apps("v1"), apps("v2")
    proxy = await sidecars(
        config(
            outbound_services=(
                service("web", routes=(split("s", {"web-v1": 1, "web-v2": 0}),)),
                service("web-v1", [("127.0.0.1", v1.port, "v1-aaaaaaaaa-aaaaa")]),
                service("web-v2", [("127.0.0.1", v2.port, "v2-aaaaaaaaa-aaaaa")]),
            )
        )
    )
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        names = await _fetch_many(client, "http://web/", 400)
    assert set(names) == {"v1"}


async def test_all_zero_weights_answer_503(apps: Any, sidecars: Any) -> None:
    v1 = apps("v1")
    proxy = await sidecars(
        config(
            outbound_services=(
                service("web", routes=(split("s", {"web-v1": 0}),)),
                service("web-v1", [("127.0.0.1", v1.port, "v1-aaaaaaaaa-aaaaa")]),
            )
        )
    )
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        response = await client.get("http://web/")
    assert response.status_code == 503
    assert "weight 0" in response.text
    assert not v1.hits


async def test_hosts_outside_the_mesh_pass_through_without_mesh_headers(
    apps: Any, sidecars: Any
) -> None:
    outside = apps("outside")
    proxy = await sidecars(config())
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        response = await client.get(f"http://127.0.0.1:{outside.port}/x")
        unknown = await client.get("http://nowhere.invalid/")
    assert response.json()["app"] == "outside"
    assert not any(name.startswith("osm-stats") for name in response.json()["headers"])
    assert unknown.status_code == 503  # the name does not resolve: nothing to connect to


async def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    apps: Any, sidecars: Any
) -> None:
    app, reader, writer = await raw_outbound(apps, sidecars)
    pipelined = b"".join(f"GET /n{i} HTTP/1.1\r\nHost: web.shop\r\n\r\n".encode() for i in range(5))
    writer.write(pipelined)
    seen = []
    for _ in range(5):
        status, body = await read_response(reader, "GET")
        assert status == 200
        seen.append(body)
    assert [b'"/n%d"' % i in s for i, s in enumerate(seen)] == [True] * 5
    writer.close()
    # and the upstream connection was pooled: five requests, one upstream connection
    assert len(app.hits) == 5
    assert app.accepted == 1


async def test_local_port_per_service_routes_without_a_host(apps: Any, sidecars: Any) -> None:
    from smimesh.sidecar import settings
    from tests.sidecar.conftest import free_port

    app = apps("one")
    local = free_port()
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "p")]),)),
        local_services=(settings.LocalService.parse(f"{local}=shop/web:80"),),
    )
    assert proxy
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{local}/hello")
    assert response.json()["app"] == "one"
    assert response.json()["path"] == "/hello"


async def test_malformed_and_oversized_requests_get_400_and_431(sidecars: Any) -> None:
    proxy = await sidecars(config())
    port = proxy.ports["outbound"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nbad header line\r\n\r\n")
    assert (await reader.read(100)).startswith(b"HTTP/1.1 400")
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n")
    assert (await reader.read(100)).startswith(b"HTTP/1.1 431")
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    apps: Any, sidecars: Any
) -> None:
    app, reader, writer = await raw_outbound(apps, sidecars)
    writer.write(
        b"POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(b"hello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert app.bodies == [b"hello"]
    assert "expect" not in {name.lower() for name in app.hits[0][2]}
