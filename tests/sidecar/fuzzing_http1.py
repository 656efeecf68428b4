"""Fuzzing of the HTTP/1.1 codec (`make fuzz`; not collected by `make test`).

Two real servers on loopback, run by one event loop in a thread of their own:
- `http1.serve` with an admission hook, fed random and mutated request streams (smuggling
  shapes: Content-Length/Transfer-Encoding combinations and obfuscations, obs-fold, bare CR
  and LF, NUL, huge heads, pipelining, `Expect: 100-continue`). Every answer must be a
  well-formed HTTP/1.1 response with an error status or the handler's 200, the connection
  must close within a bound, and no request the handler gets may be ambiguously framed or
  carry CR, LF or NUL in its target or headers.
- a real sidecar in front of an app that answers with mutated responses (wrong or double
  framing, bodies after HEAD/204/304, stray bytes behind the response): downstream gets one
  well-formed response and nothing else, never bytes of another response.
Nothing may raise out of the codec, log a traceback or hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import h11
import httptools
from hypothesis import given
from hypothesis import strategies as st

from smimesh.sidecar import http1, running
from smimesh.sidecar import settings as sidecar_settings
from tests import fuzzing
from tests.sidecar.conftest import config, service

T = TypeVar("T")
BOUND = 5.0  # seconds for any one exchange: past it, the codec hangs
LIMITS = sidecar_settings.Limits(
    max_header_bytes=8 * 1024, max_body_bytes=64 * 1024, header_timeout=1.0, idle_timeout=1.0
)
CODEC_STATUSES = {100, 200, 400, 403, 405, 408, 413, 431}
PROXY_STATUSES = {502, 503, 504}


class Background:
    """One event loop in a thread: the servers under test, and what went wrong in them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.problems: list[str] = []
        self.loop.set_exception_handler(lambda _, ctx: self.problems.append(str(ctx)))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


class _Tracebacks(logging.Handler):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.problems = problems

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.problems.append(self.format(record))


BACKGROUND = Background()
logging.getLogger().addHandler(_Tracebacks(BACKGROUND.problems))


# -- the codec ---------------------------------------------------------------------------------


class Codec:
    """`http1.serve` with a handler that checks what it is handed and answers 200."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await http1.serve(
                reader, writer, self._handle, limits=LIMITS, draining=lambda: False,
                admit=self._admit,
            )  # fmt: skip
        except BaseException as exc:
            BACKGROUND.problems.append(f"http1.serve raised {type(exc).__name__}: {exc}")

    def _admit(self, request: http1.Request) -> http1.HttpError | None:
        return http1.HttpError(403, "denied") if request.target.startswith(b"/deny") else None

    async def _handle(self, request: http1.Request, writer: asyncio.StreamWriter) -> bool:
        problem = _ambiguity(request)
        if problem:
            BACKGROUND.problems.append(f"handler got {problem}: {request.headers!r}")
        writer.write(http1.response_bytes(200, b""))
        return True


def _ambiguity(request: http1.Request) -> str:
    names = [name.lower() for name, _ in request.headers]
    if b"content-length" in names and b"transfer-encoding" in names:
        return "both Content-Length and Transfer-Encoding"
    lengths = {
        value.strip() for name, value in request.headers if name.lower() == b"content-length"
    }
    if len(lengths) > 1:
        return "differing Content-Lengths"
    codings = [value for name, value in request.headers if name.lower() == b"transfer-encoding"]
    if codings and b",".join(codings).strip().lower() != b"chunked":
        return "a Transfer-Encoding other than one chunked"
    for part in [request.target, *(b for pair in request.headers for b in pair)]:
        if any(c in part for c in (b"\r", b"\n", b"\x00")):
            return "CR, LF or NUL in the target or a header"
    return ""


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read everything: the codec must answer and close in BOUND."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        started, received = time.monotonic(), b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no close within {BOUND}s after {received[:200]!r}") from None
            if not chunk:
                break
            received += chunk
            assert time.monotonic() - started < BOUND, "the answer never ends"
    return received


class _Responses:
    """A strict reading of a response stream: statuses, marker headers, leftovers."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.markers: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-example":
            self.markers.append(value)

    def on_headers_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())


def _statuses(data: bytes) -> list[int]:
    responses = _Responses()
    try:
        responses.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"not HTTP/1.1 responses ({exc}): {data[:300]!r}") from None
    return responses.statuses


CODEC = Codec()
BACKGROUND.run(CODEC.start())

tokens = st.sampled_from(
    # No HEAD here: `_statuses` reads the answers with one strict parser that cannot know
    # which of them answers a HEAD (and so has no body). HEAD downstream is tested in
    # test_http1_attacks.py; upstream, `upstream_cases` below sends HEAD too.
    [b"GET", b"POST", b"PUT", b"CONNECT", b"OPTIONS", b"G\x00T", b"", b" ", b"\t"]
)
targets = st.sampled_from(
    [b"/", b"/a?b=c", b"/deny", b"/deny/x", b"*", b"http://x/y", b"/\x00", b"/a b", b"//x", b""]
)
NAMES = [b"Content-Length", b"Transfer-Encoding", b"Host", b"Expect", b"Connection", b"X-A"]
VALUES = [
    b"0", b"5", b"-1", b"5, 5", b"5,6", b"99999999999999999999", b" 5", b"5 ", b"0x5",
    b"chunked", b"CHUNKED", b" chunked", b"chunked, identity", b"gzip, chunked",
    b"xchunked", b"chunked\x00", b"chunk\red", b"100-continue", b"close", b"keep-alive",
    b"a\r\n b", b"a\n b", b"a\rb", b"\x00", b"x" * 9000, b"",
]  # fmt: skip
header = st.tuples(
    st.sampled_from(NAMES) | st.binary(max_size=12),
    st.sampled_from([b": ", b":", b" : ", b":\t", b"\x00: "]),
    st.sampled_from(VALUES) | st.binary(max_size=24),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n "]),
)
bodies = st.sampled_from(
    [b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
     b"5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n", b"ffffffffffffffff\r\n", b"5\nhello\n0\n\n"]
) | st.binary(max_size=64)  # fmt: skip


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    line = (
        draw(tokens)
        + b" "
        + draw(targets)
        + b" "
        + draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 x", b"http/1.1"]))
    )
    fields = b"".join(n + s + v + e for n, s, v, e in draw(st.lists(header, max_size=6)))
    return line + b"\r\n" + fields + b"\r\n" + draw(bodies)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(request_heads()))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.integers(0, 2)):
            case 0:
                data[at:at] = draw(st.sampled_from([b"\r", b"\n", b"\x00", b" ", b":", b"\r\n"]))
            case 1:
                del data[at : at + draw(st.integers(1, 4))]
            case _:
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@fuzzing.examples(400, deadline=None)
@given(stream=st.lists(st.one_of(request_heads(), mutated()), min_size=1, max_size=3))
def fuzz_request_streams(stream: list[bytes]) -> None:
    statuses = _statuses(_exchange(CODEC.port, b"".join(stream)))
    assert set(statuses) <= CODEC_STATUSES, statuses
    assert not BACKGROUND.problems, BACKGROUND.problems


@fuzzing.examples(20, deadline=None)
@given(size=st.integers(LIMITS.max_header_bytes, 4 * LIMITS.max_header_bytes))
def fuzz_huge_heads(size: int) -> None:
    head = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    assert _statuses(_exchange(CODEC.port, head)) == [431]
    assert not BACKGROUND.problems, BACKGROUND.problems


# -- a sidecar relaying mutated responses --------------------------------------------------------


class LyingUpstream:
    """An app that answers every request on any connection with `self.answer`."""

    def __init__(self) -> None:
        self.answer = b""
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(self.answer)
                await writer.drain()
        writer.close()


async def _start_sidecar(upstream: int) -> int:
    sidecar = running.Sidecar(
        sidecar_settings.SidecarSettings(
            outbound_port=0, admin_port=0, inbound_port=0, admin_host="127.0.0.1",
            limits=sidecar_settings.Limits(header_timeout=2.0),
        )
    )  # fmt: skip
    web = service("web", [("127.0.0.1", upstream, "p")])
    sidecar.apply(config(outbound_services=(web,), request_timeout_seconds=1.0, retries=0))
    ready: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    RUNNING.append(asyncio.ensure_future(sidecar.run(ready=ready.set_result)))
    ports = await asyncio.wait_for(ready, 5)
    return int(ports["outbound"])


RUNNING: list[Awaitable[None]] = []  # the sidecar's task, owned here for the whole session
UPSTREAM = LyingUpstream()
BACKGROUND.run(UPSTREAM.start())
SIDECAR_PORT = BACKGROUND.run(_start_sidecar(UPSTREAM.port))
SMUGGLED_MARK = b"smuggled"
SEEN: set[bytes] = {SMUGGLED_MARK}


@st.composite
def responses(draw: st.DrawFn, mark: bytes) -> bytes:
    status = draw(
        st.sampled_from(
            [
                b"200 OK",
                b"204 No Content",
                b"304 Not Modified",
                b"404 Not Found",
                b"503 Unavailable",
                b"999 X",
            ]
        )
    )
    body = draw(st.sampled_from([b"", b"hello", b"x" * 70000]))
    framing = draw(
        st.sampled_from(
            [
                b"content-length: %d\r\n" % len(body),
                b"content-length: %d\r\n" % (len(body) + 3),
                b"content-length: 1\r\n",
                b"transfer-encoding: chunked\r\n",
                b"content-length: 5\r\ncontent-length: 6\r\n",
                b"transfer-encoding: chunked\r\ncontent-length: 5\r\n",
                b"",
                b"connection: close\r\n",
            ]
        )
    )
    if framing == b"transfer-encoding: chunked\r\n" and draw(st.booleans()):
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    stray = draw(
        st.sampled_from(
            [
                b"",
                b"\r\n",
                b"junk",
                b"HTTP/1.1 200 OK\r\nx-example: smuggled\r\ncontent-length: 0\r\n\r\n",
            ]
        )
    )
    head = b"HTTP/1.1 " + status + b"\r\nx-example: " + mark + b"\r\n" + framing + b"\r\n"
    if draw(st.booleans()):  # an interim response first
        head = b"HTTP/1.1 100 Continue\r\nx-example: " + mark + b"\r\n\r\n" + head
    data = bytearray(head + body + stray)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(head)))
        data[at:at] = draw(st.sampled_from([b"\r", b"\n", b"\x00", b" ", b"\r\n"]))
    return bytes(data)


@st.composite
def upstream_cases(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    mark = secrets.token_hex(8).encode()
    return mark, draw(st.sampled_from([b"GET", b"HEAD"])), draw(responses(mark))


@fuzzing.examples(150, deadline=None)
@given(case=upstream_cases())
def fuzz_upstream_responses(case: tuple[bytes, bytes, bytes]) -> None:
    mark, method, answer = case
    UPSTREAM.answer = answer
    request = method + b" /x HTTP/1.1\r\nHost: web.shop\r\nConnection: close\r\n\r\n"
    received = _exchange(SIDECAR_PORT, request)
    if not received:
        return  # closed without an answer: allowed (the upstream answer was unusable)
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/x", headers=[("host", "web.shop")]))
    client.receive_data(received)
    client.receive_data(b"")
    markers: list[bytes] = []
    cut_short = False
    try:
        while (event := client.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.InformationalResponse | h11.Response):
                markers += [value for name, value in event.headers if name == b"x-example"]
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as exc:
        # the upstream's body cut short is relayed so far, then the connection closed
        cut_short = "without sending complete message body" in str(exc)
        if not cut_short:
            raise AssertionError(f"no clean response ({exc}): {received[:300]!r}") from None
    assert not (set(markers) & SEEN), f"another response's bytes: {received[:300]!r}"
    if not cut_short:
        assert client.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED), received[:300]
        assert client.trailing_data[0] == b"", f"bytes after the response: {received[:300]!r}"
    SEEN.add(mark)
    assert not BACKGROUND.problems, BACKGROUND.problems


def test_fuzz_http1_codec() -> None:
    assert (
        fuzzing.rounds_within_budget(fuzz_request_streams, fuzz_huge_heads, fuzz_upstream_responses)
        > 0
    )
