"""Route authorization against path tricks (issue 18, finding 2): a strict inbound port whose
one rule lets `web` `GET /public` only, in front of real apps (HTTP/1.1 and HTTP/2) that
record the target they receive. Every trick (dot segments, encoded dots, encoded slashes and
backslashes, absolute-form) is answered 403 or 400 and reaches no app; allowed requests reach
the app with the normalized path; a TrafficSplit matches the normalized path too."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import httpx
import pytest

from smimesh.proxyconfig import inbound, matches, refs
from tests.sidecar.conftest import NS, Pki, config, free_port, service, spiffe, split

API = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")

ATTACKS = [
    "/public/../admin",
    "/public/./../admin",
    "/public/x/../../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public%2f..%2fadmin",
    "/public%2F..%2Fadmin",
    "/public/..%2fadmin",
    "/public/..\\admin",
    "/public/..%5cadmin",
    "/public/..;/admin",
    "/public/%2e%2e;/admin",
    "http://api/admin",
    "http://api/public/../admin",
    "HTTPS://api/public/%2e%2e/admin",
]


def resolved(target: str) -> str:
    """What a lenient server (nginx-like) makes of a target: absolute-form reduced to its
    path, percent-decoded (slashes too), backslashes as slashes, dot segments resolved."""
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path = unquote(target.split("?", 1)[0]).replace("\\", "/")
    return posixpath.normpath(path.replace(";", ""))


def test_every_attack_resolves_to_admin_on_a_lenient_server() -> None:
    assert {resolved(target) for target in ATTACKS} == {"/admin"}


class H2App:
    """A real HTTP/2 app (h2 library, prior knowledge) recording the `:path` of each request."""

    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, bytes] = {}
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        path = dict(event.headers or [])[b":path"]
                        self.paths.append(path)
                        paths[event.stream_id or 0] = path
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id:
                        body = paths.pop(event.stream_id, b"")
                        conn.send_headers(
                            event.stream_id,
                            [(b":status", b"200"), (b"content-length", str(len(body)).encode())],
                        )
                        conn.send_data(event.stream_id, body, end_stream=True)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def h2_app() -> AsyncIterator[H2App]:
    app = H2App()
    app.server = await asyncio.start_server(app._connection, "127.0.0.1", 0)
    try:
        yield app
    finally:
        app.server.close()
        for writer in list(app.writers):
            writer.close()
        await asyncio.wait_for(app.server.wait_closed(), 5)


async def _server(
    apps: Any, sidecars: Any, pki: Pki, h2_port: int
) -> tuple[Any, int, int, ssl.SSLContext, Any]:
    """`api` behind a strict sidecar: port h1 -> HTTP/1.1 app, port h2 -> HTTP/2 app, one
    rule each: `web` may GET /public (the HTTPRouteGroup regex, anchored at the start)."""
    app = apps("api")
    h1_port, h2_inbound = free_port(), free_port()
    public = matches.HttpMatch(name="public", path_regex="/public", methods=("GET",))
    rules = (
        inbound.InboundRule(
            target=f"{NS}/web-to-api", sources=(spiffe(NS, "web"),), http_matches=(public,)
        ),
    )
    server = await sidecars(
        config(
            proxy=API,
            inbound_ports=(
                inbound.InboundPort(port=h1_port, app_port=app.port, protocol="http", rules=rules),
                inbound.InboundPort(
                    port=h2_inbound, app_port=h2_port, protocol="http2", rules=rules
                ),
            ),
        ),
        credentials=pki.credentials(NS, "api"),
        inbound_host="127.0.0.1",
    )
    web = pki.credentials(NS, "web").client_context()
    assert web is not None
    return app, h1_port, h2_inbound, web, server


async def _h1(port: int, context: ssl.SSLContext | None, target: str, host: str = "api") -> int:
    """One request (over mTLS when `context` is given) with the target sent byte for byte;
    the response's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1"))
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n")
            await reader.read()
        return int(head.split()[1])
    finally:
        writer.close()


async def _h2(
    port: int, context: ssl.SSLContext | None, target: str, authority: bytes = b"api"
) -> int | str:
    """One HTTP/2 request (over mTLS, or h2c with prior knowledge when `context` is None)
    with `:path` as given (no client-side checks)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        )
    )  # fmt: skip
    conn.initiate_connection()
    conn.send_headers(
        1,
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority),
         (b":path", target.encode("latin-1"))],
        end_stream=True,
    )  # fmt: skip
    writer.write(conn.data_to_send())
    status: int | str = "no answer"
    try:
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = int(dict(event.headers or [])[b":status"])
                    elif isinstance(event, h2.events.StreamReset):
                        return f"reset {event.error_code!r}"
                    elif isinstance(event, h2.events.StreamEnded):
                        return status
                writer.write(conn.data_to_send())
        return status
    finally:
        writer.close()


async def test_http1_path_tricks_never_reach_the_app(
    apps: Any, sidecars: Any, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with h2_app() as h2app:
        app, port, _, web, server = await _server(apps, sidecars, pki, h2app.port)
        answers = {target: await _h1(port, web, target) for target in ATTACKS}
        reached = [(path, resolved(path)) for _, path, _ in app.hits]
        assert not reached, f"reached the app (raw, as a lenient server resolves it): {reached}"
        assert all(status in (400, 403) for status in answers.values()), answers
        assert answers["/public/../admin"] == 403  # normalized to /admin: no rule allows it
        assert answers["/public%2f..%2fadmin"] == 400  # encoded slash: refused outright
        # Allowed requests reach the app with the path that was matched.
        for target, seen in [
            ("/public/./x/..", "/public/"),
            ("/public/a/../b?next=/../admin", "/public/b?next=/../admin"),
            ("/%70ublic/%7Ex", "/public/~x"),
            ("http://api/public/../public/y", "/public/y"),
        ]:
            assert await _h1(port, web, target) == 200, target
            assert app.hits[-1][1] == seen
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{server.ports['admin']}/metrics")).text
        assert f'smimesh_inbound_denied_total{{port="{port}",protocol="path"}}' in metrics
        assert 'response_code="400"' in metrics
        assert not [record for record in caplog.records if record.exc_info]


async def test_a_refused_path_keeps_the_http1_connection_usable(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    async with h2_app() as h2app:
        app, port, _, web, _ = await _server(apps, sidecars, pki, h2app.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=web)
        try:
            writer.write(b"GET /public%2fx HTTP/1.1\r\nHost: api\r\n\r\n")
            writer.write(b"GET /public/ok HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(5):
                answers = await reader.read(-1)
        finally:
            writer.close()
        assert answers.startswith(b"HTTP/1.1 400 ")
        assert b"smimesh: bad path: encoded slash" in answers
        assert answers.count(b"HTTP/1.1 200 ") == 1
        assert [hit[1] for hit in app.hits] == ["/public/ok"]


async def test_http2_path_tricks_never_reach_the_app(
    apps: Any, sidecars: Any, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with h2_app() as h2app:
        _, _, port, web, _ = await _server(apps, sidecars, pki, h2app.port)
        answers = {target: await _h2(port, web, target) for target in ATTACKS}
        reached = [(path, resolved(path.decode("latin-1"))) for path in h2app.paths]
        assert not reached, f"reached the app (raw, as a lenient server resolves it): {reached}"
        assert all(status in (400, 403) for status in answers.values()), answers
        assert answers["/public/../admin"] == 403
        assert answers["http://api/admin"] == 400  # :path is never absolute-form
        for target, seen in [
            ("/public/./x/..", b"/public/"),
            ("/public/a/../b?next=/../admin", b"/public/b?next=/../admin"),
            ("/%70ublic/%7Ex", b"/public/~x"),
        ]:
            assert await _h2(port, web, target) == 200, target
            assert h2app.paths[-1] == seen
        assert not [record for record in caplog.records if record.exc_info]


async def test_traffic_split_matches_route_by_the_normalized_path(apps: Any, sidecars: Any) -> None:
    main, admin = apps("main"), apps("admin")
    only_admin = (matches.HttpMatch(name="admin", path_regex="/admin"),)
    proxy = await sidecars(
        config(
            outbound_services=(
                service("api", [("127.0.0.1", main.port, "main-1")],
                        routes=(split("api-admin", {"api-admin": 100}, only=only_admin),)),
                service("api-admin", [("127.0.0.1", admin.port, "admin-1")]),
            )
        )
    )  # fmt: skip
    port = proxy.ports["outbound"]
    for target, seen in [
        ("/public/../admin/x", "/admin/x"),
        ("/%61dmin", "/admin"),
        ("/./admin?q=1", "/admin?q=1"),
        ("http://api/public/%2e%2e/admin", "/admin"),
    ]:
        assert await _h1(port, None, target) == 200, target
        assert admin.hits[-1][1] == seen, target
    assert [hit[1] for hit in main.hits] == []
    assert await _h1(port, None, "/public/./x") == 200
    assert [hit[1] for hit in main.hits] == ["/public/x"]
    assert await _h1(port, None, "/public%2fadmin") == 400
    assert len(main.hits) + len(admin.hits) == 5


async def test_merge_slashes_is_a_sidecar_setting_used_for_matching_and_forwarding(
    apps: Any, sidecars: Any
) -> None:
    main, admin = apps("main"), apps("admin")
    only_admin = (matches.HttpMatch(name="admin", path_regex="/admin/x"),)
    services = (
        service("api", [("127.0.0.1", main.port, "main-1")],
                routes=(split("api-admin", {"api-admin": 100}, only=only_admin),)),
        service("api-admin", [("127.0.0.1", admin.port, "admin-1")]),
    )  # fmt: skip
    kept = await sidecars(config(outbound_services=services))
    merging = await sidecars(config(outbound_services=services), merge_slashes=True)
    assert await _h1(kept.ports["outbound"], None, "/admin//x") == 200
    assert [hit[1] for hit in main.hits] == ["/admin//x"]
    assert await _h1(merging.ports["outbound"], None, "/admin//x") == 200
    assert [hit[1] for hit in admin.hits] == ["/admin/x"]


async def test_http2_traffic_split_matches_route_by_the_normalized_path(sidecars: Any) -> None:
    async with h2_app() as main, h2_app() as admin:
        only_admin = (matches.HttpMatch(name="admin", path_regex="/admin"),)
        proxy = await sidecars(
            config(
                outbound_services=(
                    service("api", [("127.0.0.1", main.port, "main-1")], protocol="http2",
                            routes=(split("api-admin", {"api-admin": 100}, only=only_admin),)),
                    service("api-admin", [("127.0.0.1", admin.port, "admin-1")],
                            protocol="http2"),
                )
            )
        )  # fmt: skip
        port = proxy.ports["outbound"]
        for target, seen in [
            ("/public/../admin/x", b"/admin/x"),
            ("/%61dmin?q=/../x", b"/admin?q=/../x"),
        ]:
            assert await _h2(port, None, target) == 200, target
            assert admin.paths[-1] == seen
        assert await _h2(port, None, "/public/./x") == 200
        assert main.paths == [b"/public/x"]
        assert await _h2(port, None, "/public%2fadmin") == 400
        assert len(main.paths) + len(admin.paths) == 3
