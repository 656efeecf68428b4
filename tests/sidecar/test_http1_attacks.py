"""HTTP/1.1 attacks on real sidecars over real sockets: an app writing bytes past its framed
response (after a HEAD answer, past Content-Length, a 204/304 with a body, late bytes on an
idle pooled connection) never reaches another caller nor the same caller's next request; a
denied caller gets 403 on its head, no `100 Continue`, and its body is never read."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from smimesh.proxyconfig import inbound, matches, refs
from smimesh.sidecar import http1
from tests.sidecar.conftest import (
    NS,
    Pki,
    config,
    free_port,
    raw_outbound,
    read_response,
    service,
    spiffe,
    until_ready,
)

API = refs.ProxyRef(namespace=NS, service_account="api", pod="api-6f9c8d7b5c-xyz12")
SMUGGLED = http1.response_bytes(200, b'{"path": "/smuggled"}')
LATE_DELAY = 0.02  # the app writes its late bytes this long after the response
ROUNDS = 36  # each shape six times, every round followed by an honest caller's request
MIB = 1 << 20
SMIMESH = str(Path(sys.executable).with_name("smimesh"))


def _ours(path: str) -> bytes:
    return json.dumps({"path": path}).encode()


class LyingApp:
    """A real HTTP/1.1 app on a loopback socket that writes more than it frames, by path."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.late_written = asyncio.Event()
        self.connections = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                await self._answer(writer, method.decode(), path.decode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        body = _ours(path)
        framed = http1.response_bytes(200, body)
        if path == "/head":  # a body after a HEAD answer
            writer.write(framed)
        elif path == "/over":  # more bytes than Content-Length
            writer.write(http1.response_bytes(200, b"hello") + SMUGGLED)
        elif path == "/nocontent":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED)
        elif path == "/notmodified":
            writer.write(b"HTTP/1.1 304 Not Modified\r\n\r\n" + SMUGGLED)
        elif path == "/chunked":  # a whole second response behind the last chunk
            chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            writer.write(chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + SMUGGLED)
        elif path == "/late":  # a response, then, while the connection idles, another
            writer.write(framed)
            await writer.drain()
            await asyncio.sleep(LATE_DELAY)
            writer.write(SMUGGLED)
            await writer.drain()
            self.late_written.set()
        else:
            writer.write(framed if method != "HEAD" else framed[: framed.index(b"\r\n\r\n") + 4])
        await writer.drain()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def lying_app() -> AsyncIterator[LyingApp]:
    app = LyingApp()
    await app.start()
    yield app
    app.close()


SHAPES: list[tuple[str, str, int, bytes]] = [  # method, path, status, body the caller gets
    ("GET", "/late", 200, _ours("/late")),
    ("HEAD", "/head", 200, b""),
    ("GET", "/over", 200, b"hello"),
    ("GET", "/nocontent", 204, b""),
    ("GET", "/notmodified", 304, b""),
    ("GET", "/chunked", 200, _ours("/chunked")),
]


async def _meshed_entry(sidecars: Any, pki: Pki, app_port: int) -> int:
    """A server sidecar (`api`, allowing `web` everything) in front of the app, and a client
    sidecar for `web`; returns the client's outbound port."""
    port = free_port()
    rule = inbound.InboundRule(
        target=f"{NS}/web-to-api", sources=(spiffe(NS, "web"),),
        http_matches=(matches.HttpMatch(name="all", path_regex=".*", methods=("*",)),),
    )  # fmt: skip
    await sidecars(
        config(proxy=API, inbound_ports=(
            inbound.InboundPort(port=port, app_port=app_port, protocol="http", rules=(rule,)),
        )),
        credentials=pki.credentials(NS, "api"), inbound_host="127.0.0.1",
    )  # fmt: skip
    api = service("api", [("127.0.0.1", port, API.pod)], meshed=True, identity=spiffe(NS, "api"))
    client = await sidecars(
        config(outbound_services=(api,)), credentials=pki.credentials(NS, "web")
    )
    return int(client.ports["outbound"])


@pytest.mark.parametrize("topology", ["outbound-to-app", "meshed-pair"])
async def test_bytes_past_a_response_never_reach_the_next_caller(
    lying_app: LyingApp, sidecars: Any, pki: Pki, topology: str
) -> None:
    if topology == "outbound-to-app":
        api = service("api", [("127.0.0.1", lying_app.port, API.pod)])
        entry = int((await sidecars(config(outbound_services=(api,)))).ports["outbound"])
    else:
        entry = await _meshed_entry(sidecars, pki, lying_app.port)
    # Two callers, each on its own keep-alive connection; one upstream pool behind them.
    liar = await asyncio.open_connection("127.0.0.1", entry)
    honest = await asyncio.open_connection("127.0.0.1", entry)
    try:
        for round_ in range(ROUNDS):
            method, path, status, body = SHAPES[round_ % len(SHAPES)]
            lying_app.late_written.clear()
            liar[1].write(f"{method} {path} HTTP/1.1\r\nHost: api.shop\r\n\r\n".encode())
            assert await read_response(liar[0], method) == (status, body), (round_, path)
            if path == "/late":  # the late bytes now wait on the idle pooled connection
                await asyncio.wait_for(lying_app.late_written.wait(), 5)
            mine = f"/n{round_}"
            honest[1].write(f"GET {mine} HTTP/1.1\r\nHost: api.shop\r\n\r\n".encode())
            assert await read_response(honest[0], "GET") == (200, _ours(mine)), (round_, path)
    finally:
        for _, writer in (liar, honest):
            writer.close()
    # Each lie cost its upstream connection (never pooled), and only that.
    assert lying_app.connections <= ROUNDS + 2


# -- admission on the head --------------------------------------------------------------------


def _guarded_config(app_port: int, port: int) -> Any:
    """The `api` proxy's config: `web` may POST /upload, no one else anything."""
    rule = inbound.InboundRule(
        target=f"{NS}/web-to-api", sources=(spiffe(NS, "web"),),
        http_matches=(matches.HttpMatch(name="upload", path_regex="/upload$", methods=("POST",)),),
    )  # fmt: skip
    return config(proxy=API, inbound_ports=(
        inbound.InboundPort(port=port, app_port=app_port, protocol="http", rules=(rule,)),
    ))  # fmt: skip


async def _guarded_api(apps: Any, sidecars: Any, pki: Pki) -> tuple[Any, int]:
    """The `api` app behind an in-process server sidecar with `_guarded_config`."""
    app = apps("api")
    port = free_port()
    await sidecars(
        _guarded_config(app.port, port),
        credentials=pki.credentials(NS, "api"), inbound_host="127.0.0.1",
    )  # fmt: skip
    return app, port


def _tls(pki: Pki, service_account: str) -> ssl.SSLContext:
    context = pki.credentials(NS, service_account).client_context()
    assert context is not None
    return context


def _upload_head(length: int, *, expect: bool) -> bytes:
    head = f"POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: {length}\r\n"
    return (head + ("Expect: 100-continue\r\n" if expect else "") + "\r\n").encode()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except (ConnectionError, ssl.SSLError):
        return b""


async def test_denied_caller_gets_403_not_100_continue_and_the_connection_closes(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    app, port = await _guarded_api(apps, sidecars, pki)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_tls(pki, "intruder"))
    try:
        writer.write(_upload_head(15 * MIB, expect=True))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 403"), head
        assert b"connection: close" in head.lower()
        # closed with the answer, before a single body byte was sent
        rest = await _until_closed(reader)
        assert rest.startswith(b"smimesh: denied:"), rest
    finally:
        writer.close()
    assert not app.hits


async def test_allowed_caller_gets_100_continue_and_its_upload_reaches_the_app(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    app, port = await _guarded_api(apps, sidecars, pki)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_tls(pki, "web"))
    try:
        writer.write(_upload_head(11, expect=True))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello world")
        assert (await read_response(reader, "POST"))[0] == 200
    finally:
        writer.close()
    assert app.bodies == [b"hello world"]


def _memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {name: int(value.split()[0]) * 1024 for name, value in fields.items()}


@pytest.fixture
def api_process(apps: Any, pki: Pki, tmp_path: Path) -> Iterator[tuple[Any, int, int]]:
    """`smimesh sidecar run` (a process of its own, so that its memory is its own) in front
    of the `api` app, letting `web` POST /upload; yields (app, inbound port, pid)."""
    app = apps("api")
    port, admin = free_port(), free_port()
    path = tmp_path / "proxy.json"
    path.write_bytes(_guarded_config(app.port, port).to_json())
    cert, key, bundle = pki.files(NS, "api")
    stderr = tmp_path / "sidecar.err"
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [SMIMESH, "sidecar", "run", "--config", str(path), "--outbound-port", str(free_port()),
             "--admin-port", str(admin), "--admin-host", "127.0.0.1", "--inbound-host", "127.0.0.1",
             "--cert", str(cert), "--key", str(key), "--trust-bundle", str(bundle)],
            stdout=subprocess.DEVNULL, stderr=sink, text=True,
        )  # fmt: skip
    try:
        until_ready(process, admin, inbound=port, output=lambda: stderr.read_text()[-2000:])
        yield app, port, process.pid
    finally:
        process.kill()
        process.wait()


ATTEMPTS = 30
BODY = 15 * MIB
# The sidecar's peak growth: measured 22-50 MiB (TLS connections and their buffers), 524 MiB
# before the fix (every body buffered, 450 MiB); the bound leaves room for a loaded machine.
RSS_BOUND = 128 * MIB


async def test_denied_bodies_are_never_read_into_memory(
    api_process: tuple[Any, int, int], pki: Pki
) -> None:
    """30 denied callers each push a 15 MiB upload at once, without waiting for 100 Continue;
    the sidecar answers each on its head and reads none of the bodies: its peak RSS (VmHWM)
    stays within RSS_BOUND of its RSS before the attack."""
    app, port, pid = api_process
    context = _tls(pki, "intruder")
    piece = b"x" * (256 * 1024)
    outcomes: list[str] = []

    async def answer_of(reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return b""

    async def attempt() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        answer = asyncio.ensure_future(answer_of(reader))
        try:
            writer.write(_upload_head(BODY, expect=False))
            for _ in range(BODY // len(piece)):
                if answer.done():
                    break
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            outcomes.append("403" if (await answer).startswith(b"HTTP/1.1 403") else "reset")
            writer.close()

    before = _memory(pid)["VmRSS"]
    async with asyncio.timeout(60):
        await asyncio.gather(*(attempt() for _ in range(ATTEMPTS)))
    grown = _memory(pid)["VmHWM"] - before
    assert len(outcomes) == ATTEMPTS
    assert "403" in outcomes, outcomes  # the others may see the reset of the close first
    assert grown < RSS_BOUND, f"sidecar peak RSS grew {grown / MIB:.0f} MiB"
    assert not app.hits


async def test_outbound_refuses_an_oversized_upload_before_inviting_it(
    apps: Any, sidecars: Any
) -> None:
    app, reader, writer = await raw_outbound(apps, sidecars)
    try:
        writer.write(_upload_head(17 * MIB, expect=True).replace(b"Host: api", b"Host: web"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413"), head
        await _until_closed(reader)
    finally:
        writer.close()
    assert not app.hits


async def test_a_refused_pipelined_request_is_answered_after_the_one_before_it(
    apps: Any, sidecars: Any, pki: Pki
) -> None:
    """An allowed request, then a denied one with a body, in one write: answers in order,
    then the close (the denied body unread)."""
    app, port = await _guarded_api(apps, sidecars, pki)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_tls(pki, "web"))
    try:
        denied = b"DELETE /upload HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        writer.write(_upload_head(2, expect=False) + b"ok" + denied)
        assert (await read_response(reader, "POST"))[0] == 200
        assert (await read_response(reader, "DELETE"))[0] == 403
        assert await _until_closed(reader) == b""
    finally:
        writer.close()
    assert app.bodies == [b"ok"]


@pytest.mark.parametrize(
    ("host", "status"),
    [("web.shop", 503), ("", 404)],
    ids=["no-endpoint-503", "no-service-named-404"],
)
async def test_the_proxys_own_answer_to_a_head_has_no_body(
    sidecars: Any, host: str, status: int
) -> None:
    """An answer the sidecar makes itself (no endpoint, no such Service) for a HEAD: the next
    request on the same connection gets its own answer, not the first answer's body."""
    proxy = await sidecars(config(outbound_services=(service("web", []),)))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["outbound"])
    try:
        writer.write(f"HEAD /a HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert (await read_response(reader, "HEAD"))[0] == status
        writer.write(b"GET /b HTTP/1.1\r\nHost: web.shop\r\n\r\n")
        status, body = await read_response(reader, "GET")
        assert (status, body.startswith(b"smimesh: ")) == (503, True)
    finally:
        writer.close()
