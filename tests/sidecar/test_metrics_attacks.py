"""Attacks on the sidecar's metrics (issue 18, finding 3), against real sidecars on real
sockets with real mTLS: forged `osm-stats-*` headers from denied or foreign callers, a flood of
distinct label values, and a large registry rendered while live traffic flows."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from typing import Any

import httpx
import pytest

from smimesh.proxyconfig import inbound, matches, refs, workloads
from smimesh.sidecar import metrics, settings
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe

API = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")
ME = workloads.Workload.of_pod(NS, API.pod)


async def _server(apps: Any, sidecars: Any, pki: Pki, **overrides: Any) -> tuple[Any, int]:
    """An `api` app behind a strict-mTLS sidecar whose port lets `shop/web` and `other/web`
    (another namespace) `GET /public` and nobody anything else."""
    app = apps("api")
    port = free_port()
    rule = inbound.InboundRule(
        target=f"{NS}/web-to-api",
        sources=(spiffe(NS, "web"), spiffe("other", "web")),
        http_matches=(matches.HttpMatch(name="public", path_regex="/public$", methods=("GET",)),),
    )
    server = await sidecars(
        config(
            proxy=API,
            inbound_ports=(
                inbound.InboundPort(port=port, app_port=app.port, protocol="http", rules=(rule,)),
            ),
        ),
        credentials=pki.credentials(NS, "api"),
        inbound_host="127.0.0.1",
        **overrides,
    )
    async with asyncio.timeout(5):  # explicit mode binds inbound ports once the config is in
        while port not in server.sidecar.inbound_listeners:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)
    return server, port


class Caller:
    """One mTLS connection as `namespace/service_account`, sending pipelined requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, pki: Pki, port: int, namespace: str, account: str) -> Caller:
        context = pki.credentials(namespace, account).client_context()
        assert isinstance(context, ssl.SSLContext)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="api"
        )
        return cls(reader, writer)

    async def send(self, requests: list[bytes]) -> list[int]:
        self.writer.write(b"".join(requests))
        statuses = []
        for _ in requests:
            head = await self.reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await self.reader.readexactly(int(found[1]) if found else 0)
            statuses.append(int(head.split(b" ", 2)[1]))
        return statuses

    def close(self) -> None:
        self.writer.close()


def forged(path: str, namespace: str, name: str, pod: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: api\r\nosm-stats-namespace: {namespace}\r\n"
        f"osm-stats-kind: Deployment\r\nosm-stats-name: {name}\r\nosm-stats-pod: {pod}\r\n\r\n"
    ).encode()


async def _scrape(proxy: Any) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"http://127.0.0.1:{proxy.ports['admin']}/metrics")
    assert response.status_code == 200
    return response.text


def _request_series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("osm_request_total{")]


def _sources(series: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(namespace, kind, name, pod, response code) of each series' source."""
    found = []
    for line in series:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        found.append((labels["source_namespace"], labels["source_kind"], labels["source_name"],
                      labels["source_pod"], labels["response_code"]))  # fmt: skip
    return found


async def test_denied_caller_with_forged_headers_creates_no_series_naming_them(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    server, port = await _server(apps, sidecars, pki)
    intruder = await Caller.connect(pki, port, NS, "intruder")  # no TrafficTarget names it
    web = await Caller.connect(pki, port, NS, "web")  # allowed, but not on /admin
    assert await intruder.send(
        [forged("/public", NS, "payments", "payments-6f9c8d7b5c-abc12")]
    ) == [403]
    assert await web.send([forged("/admin", NS, "billing", "billing-6f9c8d7b5c-abc12")]) == [403]
    intruder.close()
    web.close()
    series = _request_series(await _scrape(server))
    assert not [line for line in series if "payments" in line or "billing" in line], series
    # recorded with what the certificates prove: namespace and ServiceAccount, no pod
    assert sorted(_sources(series)) == [
        (NS, "ServiceAccount", "intruder", "", "403"),
        (NS, "ServiceAccount", "web", "", "403"),
    ]


async def test_allowed_caller_cannot_claim_a_foreign_namespace(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    server, port = await _server(apps, sidecars, pki)
    foreigner = await Caller.connect(pki, port, "other", "web")  # allowed from namespace other
    neighbour = await Caller.connect(pki, port, NS, "web")
    assert await foreigner.send([forged("/public", NS, "web", "web-6f9c8d7b5c-abc12")]) == [200]
    assert await neighbour.send([forged("/public", NS, "web", "web-6f9c8d7b5c-zzz99")]) == [200]
    foreigner.close()
    neighbour.close()
    series = _request_series(await _scrape(server))
    # the foreigner is what its certificate proves; the neighbour may name its own pod
    assert sorted(_sources(series)) == [
        ("other", "ServiceAccount", "web", "", "200"),
        (NS, "Deployment", "web", "web-6f9c8d7b5c-zzz99", "200"),
    ]


def test_plaintext_callers_get_empty_source_labels() -> None:
    claimed = {"osm-stats-namespace": NS, "osm-stats-kind": "Deployment",
               "osm-stats-name": "web", "osm-stats-pod": "web-6f9c8d7b5c-abc12"}  # fmt: skip
    assert workloads.Workload.from_headers(claimed, workloads.Workload()) == workloads.Workload()
    verified = workloads.Workload(NS, "ServiceAccount", "web")
    assert (
        workloads.Workload.from_headers({**claimed, "osm-stats-pod": "x" * 300}, verified)
        == verified
    )


CAP = 100
FLOOD = 2_000  # distinct values an allowed same-namespace caller may legitimately refine to
DENIED_FLOOD = 5_000  # distinct values from a denied caller
MAX_METRICS_BYTES = 1_000_000  # 101 label sets of a counter and a 14-bucket histogram: ~700 kB


async def test_distinct_label_values_stop_at_the_cap_plus_one_overflow_series(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    server, port = await _server(apps, sidecars, pki, max_metric_series=CAP)
    web = await Caller.connect(pki, port, NS, "web")
    intruder = await Caller.connect(pki, port, NS, "intruder")
    async with asyncio.timeout(60):  # a bound on the whole flood, not an expectation
        for start in range(0, DENIED_FLOOD, 250):
            batch = [forged("/public", NS, f"f{i}", f"f{i}-6f9c8d7b5c-abc12")
                     for i in range(start, start + 250)]  # fmt: skip
            assert set(await intruder.send(batch)) == {403}
        for start in range(0, FLOOD, 100):
            batch = [forged("/public", NS, f"w{i}", f"w{i}-6f9c8d7b5c-abc12")
                     for i in range(start, start + 100)]  # fmt: skip
            assert set(await web.send(batch)) == {200}
    web.close()
    intruder.close()
    text = await _scrape(server)
    series = _request_series(text)
    assert len(series) == CAP + 1, len(series)  # the cap, plus the one overflow series
    overflow = [line for line in series if metrics.OVERFLOW in line]
    assert len(overflow) == 1
    assert sum(float(line.rsplit(" ", 1)[1]) for line in series) == FLOOD + DENIED_FLOOD
    assert not [line for line in series if 'source_name="f' in line]  # denied: nothing named
    assert len(text.encode()) < MAX_METRICS_BYTES, len(text.encode())


def test_twenty_thousand_distinct_sources_keep_metrics_bounded() -> None:
    telemetry = metrics.Telemetry()
    for i in range(20_000):
        source = workloads.Workload(NS, "Deployment", f"w{i}", f"w{i}-6f9c8d7b5c-abc12")
        telemetry.request("server", source, ME, 200, 3.0)
    text = telemetry.render()
    assert len(_request_series(text.decode())) == settings.MAX_METRIC_SERIES + 1
    # ~6 kB per label set (a counter and a histogram with their _created lines)
    assert len(text) < 8 * 1024 * 1024


def _fill(proxy: Any, count: int) -> None:
    """A large registry, made in-process: the render is the attack here, not the filling."""
    telemetry = proxy.sidecar.ctx.telemetry
    for i in range(count):
        source = workloads.Workload(NS, "Deployment", f"w{i}", f"w{i}-6f9c8d7b5c-abc12")
        telemetry.request("server", source, ME, 200, 3.0)


LARGE = 3_000  # label sets: ~18 MB of text, 1-3 s to render on this machine


async def test_rendering_a_large_registry_does_not_stall_live_traffic(
    apps: Any, sidecars: Any
) -> None:
    app = apps("one")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "one")]),)),
        max_metric_series=LARGE + 10,
    )
    _fill(proxy, LARGE)
    rendering = time.perf_counter()
    proxy.sidecar.ctx.telemetry.render()  # how long the loop would stall, were it rendered there
    bound = (time.perf_counter() - rendering) / 2  # any one request: half a render at most
    latencies: list[float] = []
    async with httpx.AsyncClient(proxy=proxy.proxy_url, timeout=10) as client:
        assert (await client.get("http://web/warm")).status_code == 200
        scraping = asyncio.create_task(_scrape(proxy))
        async with asyncio.timeout(60):
            while not scraping.done():
                started = time.perf_counter()
                assert (await client.get("http://web/live")).status_code == 200
                latencies.append(time.perf_counter() - started)
    assert len(_request_series(await scraping)) >= LARGE
    assert len(latencies) >= 5, latencies  # live traffic really ran during the render
    worst = max(latencies)
    print(f"{len(latencies)} requests during the scrape: max {worst * 1000:.0f} ms, bound "
          f"{bound * 1000:.0f} ms (half of one render)")  # fmt: skip
    assert worst < bound, sorted(latencies)[-5:]


async def test_a_large_metrics_answer_arrives_whole_to_a_slow_reader(sidecars: Any) -> None:
    proxy = await sidecars(config(), max_metric_series=2_100)
    _fill(proxy, 2_000)  # ~12 MB
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # little kernel buffering
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", proxy.ports["admin"]))
    reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    assert found is not None
    expected = int(found[1])
    assert expected > 10_000_000
    received = 0
    started = time.monotonic()
    async with asyncio.timeout(30):
        while chunk := await reader.read(65536):
            received += len(chunk)
            await asyncio.sleep(0.02)  # a slow scraper: ~3 MB/s at most, ~4 s for the whole
    writer.close()
    assert time.monotonic() - started > 2.0  # slower than the old 1 s drain + 1 s close
    assert received == expected


@pytest.mark.parametrize("value", ["shop", "other"])
def test_refinement_needs_the_verified_namespace(value: str) -> None:
    verified = workloads.Workload(NS, "ServiceAccount", "web")
    headers = {"osm-stats-namespace": value, "osm-stats-kind": "Deployment",
               "osm-stats-name": "web", "osm-stats-pod": "web-1"}  # fmt: skip
    found = workloads.Workload.from_headers(headers, verified)
    assert found == (
        workloads.Workload(NS, "Deployment", "web", "web-1") if value == NS else verified
    )


async def test_a_denied_http2_caller_with_forged_headers_creates_no_series_naming_them(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    server, port = await _server(apps, sidecars, pki)
    context = pki.credentials(NS, "intruder").client_context()
    headers = {"osm-stats-namespace": NS, "osm-stats-kind": "Deployment",
               "osm-stats-name": "payments", "osm-stats-pod": "payments-1"}  # fmt: skip
    async with httpx.AsyncClient(verify=context, http1=False, http2=True, timeout=10) as client:
        for i in range(3):
            response = await client.get(f"https://127.0.0.1:{port}/public?n={i}", headers=headers)
            assert (response.http_version, response.status_code) == ("HTTP/2", 403)
    series = _request_series(await _scrape(server))
    assert sorted(_sources(series)) == [(NS, "ServiceAccount", "intruder", "", "403")]
