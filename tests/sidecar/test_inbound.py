"""Inbound: mTLS termination, authorization by identity, path, method and headers (403 and
never reaching the app), strict vs permissive plaintext, TCP denial closing the connection."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest

from smimesh.identity import authority
from smimesh.proxyconfig import inbound, matches, refs
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe

API = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")


def _caller(name: str) -> refs.ProxyRef:
    return refs.ProxyRef(namespace=NS, service_account=name, pod=f"{name}-6f9c8d7b5c-abc12")


async def _mesh(
    apps: Any, sidecars: Any, pki: Pki, *, protocol: str = "http", permissive: bool = False
) -> tuple[Any, dict[str, Any], int]:
    """An `api` app behind a server sidecar; client sidecars for `web` and `intruder`."""
    app = apps("api")
    port = free_port()
    rules = (
        inbound.InboundRule(
            target=f"{NS}/web-to-api",
            sources=(spiffe(NS, "web"),),
            http_matches=(
                matches.HttpMatch(name="read-api", path_regex="/api", methods=("GET", "HEAD")),
                matches.HttpMatch(
                    name="orders", path_regex="/orders$", methods=("POST",),
                    headers=(("x-tenant", "acme|globex"),),
                ),
            ) if protocol == "http" else (),
        ),
        inbound.InboundRule(
            target=f"{NS}/ops-to-api", sources=(spiffe(NS, "ops"),),
            http_matches=(matches.HttpMatch(name="all", path_regex=".*", methods=("*",)),),
        ),
    )  # fmt: skip
    server_config = config(
        proxy=API,
        inbound_ports=(
            inbound.InboundPort(
                port=port, app_port=app.port, protocol=protocol, permissive=permissive,  # type: ignore[arg-type]
                rules=rules,
            ),
        ),
    )  # fmt: skip
    server = await sidecars(
        server_config, credentials=pki.credentials(NS, "api"), inbound_host="127.0.0.1"
    )
    clients = {"server": server}
    for name in ("web", "intruder", "ops"):
        api_service = service(
            "api", [("127.0.0.1", port, API.pod)], meshed=True, identity=spiffe(NS, "api"),
            protocol=protocol,  # type: ignore[arg-type]
        )  # fmt: skip
        clients[name] = await sidecars(
            config(proxy=_caller(name), outbound_services=(api_service,)),
            credentials=pki.credentials(NS, name),
        )
    return app, clients, port


async def _closed_without_answer(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


async def _request_over_tls(port: int, context: ssl.SSLContext) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(b"GET /api HTTP/1.1\r\nHost: api\r\n\r\n")
        if not await reader.read():
            raise ConnectionError("closed without an answer")
    finally:
        writer.close()


async def _status(proxy: Any, method: str, path: str, **kw: Any) -> int:
    async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
        response = await client.request(method, f"http://api.shop{path}", **kw)
    if response.status_code == 403:
        assert response.text.startswith("smimesh: denied:"), response.text
    return response.status_code


MATRIX = [
    ("web", "GET", "/api/items", {}, 200),
    ("web", "GET", "/apiary", {}, 200),  # anchored at the start only
    ("web", "GET", "/v1/api", {}, 403),  # ... but anchored there
    ("web", "HEAD", "/api", {}, 200),
    ("web", "DELETE", "/api/items", {}, 403),  # method not in the match
    ("web", "POST", "/orders", {"x-tenant": "acme"}, 200),
    ("web", "POST", "/orders", {"x-tenant": "acme-evil"}, 403),  # header regex is whole-value
    ("web", "POST", "/orders", {}, 403),  # header required
    ("web", "POST", "/orders/1", {"x-tenant": "globex"}, 403),
    ("intruder", "GET", "/api/items", {}, 403),  # no TrafficTarget names it
    ("ops", "DELETE", "/anything", {}, 200),  # methods "*"
]


async def test_inbound_allow_deny_matrix(apps: Any, sidecars: Any, pki: Pki) -> None:
    app, clients, _ = await _mesh(apps, sidecars, pki)
    for caller, method, path, headers, expected in MATRIX:
        before = len(app.hits)
        status = await _status(clients[caller], method, path, headers=headers)
        assert status == expected, (caller, method, path, headers)
        reached = len(app.hits) - before
        assert reached == (1 if expected == 200 else 0), (caller, method, path)
    # the server side saw the caller's identity: osm-stats headers never reach the app
    assert all(not any(h.lower().startswith("osm-stats") for h in hit[2]) for hit in app.hits)


async def test_strict_mtls_refuses_plaintext_and_foreign_certificates(
    apps: Any, sidecars: Any, pki: Pki, tmp_path: Any
) -> None:
    app, _, port = await _mesh(apps, sidecars, pki)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api HTTP/1.1\r\nHost: api\r\n\r\n")
    assert await _closed_without_answer(reader)
    writer.close()
    foreign = Pki(tmp_path, "cluster.local")
    assert foreign.ca.root != pki.ca.root
    cert, key, _ = foreign.files(NS, "web")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _request_over_tls(port, context)
    assert not app.hits


async def test_permissive_port_accepts_plaintext(apps: Any, sidecars: Any, pki: Pki) -> None:
    _, _, port = await _mesh(apps, sidecars, pki, permissive=True)
    async with httpx.AsyncClient() as client:
        response = await client.delete(f"http://127.0.0.1:{port}/v1/anything")
    assert response.status_code == 200
    assert response.json()["app"] == "api"


async def test_denied_tcp_connection_is_closed(apps: Any, sidecars: Any, pki: Pki) -> None:
    app, clients, _ = await _mesh(apps, sidecars, pki, protocol="tcp")

    async def through(caller: str) -> bytes:
        proxy = clients[caller]
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["outbound"])
        writer.write(b"CONNECT api.shop:80 HTTP/1.1\r\nHost: api.shop:80\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            data = b""
        writer.close()
        return data

    assert (await through("web")).startswith(b"HTTP/1.1 200")
    assert await through("intruder") == b""
    assert len(app.hits) == 1


async def test_client_and_server_side_metrics_name_both_workloads(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    _, clients, _ = await _mesh(apps, sidecars, pki)
    assert await _status(clients["web"], "GET", "/api/x") == 200
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{clients['web'].ports['admin']}/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith("osm_request_total{"))
    assert 'destination_name="api"' in line
    assert 'destination_kind="Deployment"' in line
    assert 'source_name="web"' in line
    assert 'response_code="200"' in line
    async with httpx.AsyncClient() as client:
        text = (
            await client.get(f"http://127.0.0.1:{clients['server'].ports['admin']}/metrics")
        ).text
    line = next(line for line in text.splitlines() if line.startswith("osm_request_total{"))
    assert 'side="server"' in line
    assert 'source_name="web"' in line
    assert 'source_pod="web-6f9c8d7b5c-abc12"' in line
    assert 'destination_name="api"' in line


def test_authority_module_is_the_one_used() -> None:
    assert authority.create  # the sidecar uses smimesh.identity, not its own PKI


async def test_rotated_certificates_are_used_without_dropping_connections(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    _, clients, _ = await _mesh(apps, sidecars, pki)
    web = clients["web"]
    async with httpx.AsyncClient(proxy=web.proxy_url) as client:
        assert (await client.get("http://api.shop/api/a")).status_code == 200
        credentials = web.sidecar.ctx.credentials
        old_context = credentials.client_context()
        cert, key, bundle = pki.files(NS, "web")  # a fresh certificate for the same identity
        for target, source in zip(credentials.files, (cert, key, bundle), strict=True):
            target.write_bytes(source.read_bytes())
        assert credentials.reload()
        assert credentials.client_context() is not old_context
        # the pooled connection (old certificate) and new ones (new certificate) both work
        for _ in range(5):
            assert (await client.get("http://api.shop/api/b")).status_code == 200
        web.sidecar.registry.close_idle()  # new upstream connections: new handshakes
        assert (await client.get("http://api.shop/api/c")).status_code == 200


async def test_revoking_a_traffic_target_applies_to_pooled_connections(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    app, clients, port = await _mesh(apps, sidecars, pki)
    assert await _status(clients["web"], "GET", "/api/one") == 200
    revoked = config(
        proxy=API,
        inbound_ports=(inbound.InboundPort(port=port, app_port=app.port, protocol="http"),),
    )
    clients["server"].sidecar.apply(revoked)  # no rules left: deny by default
    async with httpx.AsyncClient(proxy=clients["web"].proxy_url) as client:
        response = await client.get("http://api.shop/api/two")
    assert response.status_code == 403
    assert [hit[1] for hit in app.hits] == ["/api/one"]
