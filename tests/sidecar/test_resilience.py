"""Resilience: retries of idempotent requests on connect failure and 503, outlier ejection,
per-request timeouts and circuit breaking, all against real sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from smimesh.sidecar import settings
from tests.sidecar.conftest import config, service


async def test_idempotent_requests_are_retried_on_connect_failure(apps: Any, sidecars: Any) -> None:
    good = apps("good")
    # 127.0.0.2 has nothing listening on the good app's port: connecting is refused.
    cfg = config(
        outbound_services=(
            service("web", [("127.0.0.2", good.port, "gone"), ("127.0.0.1", good.port, "good")]),
        )
    )
    proxy = await sidecars(cfg)
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        statuses = [(await client.get("http://web/")).status_code for _ in range(30)]
    assert statuses == [200] * 30


async def test_503_is_retried_for_get_not_for_post_and_the_endpoint_is_ejected(
    apps: Any, sidecars: Any
) -> None:
    bad = apps("bad")
    bad.fail_with = 503
    # One target port, two loopback addresses: 127.0.0.1 is `bad`, 127.0.0.3 is `good`.
    good2 = apps("good", host="127.0.0.3", port=bad.port)
    cfg = config(
        outbound_services=(
            service("web", [("127.0.0.1", bad.port, "bad"), ("127.0.0.3", bad.port, "good")]),
        ),
        retries=2,
    )
    proxy = await sidecars(cfg)
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        posts = [(await client.post("http://web/", content=b"x")).status_code for _ in range(12)]
        gets = [(await client.get("http://web/")).status_code for _ in range(30)]
        ejected_at = len(bad.hits)
        more = [(await client.get("http://web/")).status_code for _ in range(30)]
    assert 503 in posts, posts  # not retried: a POST may not be idempotent
    assert set(gets) == {200}  # every GET that met the bad endpoint was retried
    assert set(more) == {200}
    assert len(bad.hits) == ejected_at, "the failing endpoint was ejected"
    assert len(good2.hits) >= 60


async def test_request_timeout_answers_504(apps: Any, sidecars: Any) -> None:
    slow = apps("slow")
    proxy = await sidecars(
        config(
            outbound_services=(service("web", [("127.0.0.1", slow.port, "slow")]),),
            request_timeout_seconds=0.3,
        )
    )
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        started = time.monotonic()
        response = await client.get("http://web/?sleep=2")
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert elapsed < 1.5


async def test_circuit_breaker_fails_fast_beyond_the_pending_limit(
    apps: Any, sidecars: Any
) -> None:
    slow = apps("slow")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", slow.port, "slow")]),)),
        limits=settings.Limits(max_connections_per_cluster=1, max_pending_per_cluster=1),
    )
    async with httpx.AsyncClient(proxy=proxy.proxy_url, timeout=10) as client:
        responses = await asyncio.gather(*(client.get("http://web/?sleep=0.5") for _ in range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 2
    assert 503 in statuses
    assert any("overflow" in r.text for r in responses if r.status_code == 503)


async def test_app_closing_connections_does_not_break_keep_alive_clients(
    apps: Any, sidecars: Any
) -> None:
    app = apps("closer")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "closer")]),))
    )
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        statuses = [(await client.get("http://web/?close=1")).status_code for _ in range(20)]
    assert statuses == [200] * 20


async def test_slowloris_client_is_cut_off_and_others_are_served(apps: Any, sidecars: Any) -> None:
    app = apps("one")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),)),
        limits=settings.Limits(header_timeout=0.5),
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["outbound"])
    writer.write(b"GET / HTTP/1.1\r\nHost: web\r\n")  # and never finish the head
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        assert (await client.get("http://web/")).status_code == 200
    answer = await asyncio.wait_for(reader.read(), 3)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()
