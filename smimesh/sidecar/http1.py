"""HTTP/1.1 codec: the downstream server loop (keep-alive, pipelining, bounded heads and
bodies, slowloris deadlines) and the upstream exchange that relays one response.

Fed by `listeners` with an accepted stream; hands each complete request to a handler
(`outbound.OutboundHttp`, `inbound.InboundHttp`, `admin`), which calls `exchange` through
`forwarding` to talk to the chosen endpoint. Parsing is httptools (llhttp, as in Node.js).
Requests are read whole (bounded) so that idempotent ones can be retried; responses stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools

from smimesh._aio import streams
from smimesh.sidecar import matching, settings

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
    }
)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class HttpError(Exception):
    """A request the codec refuses: answered with `status` and closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Request:
    """One parsed request: raw target and headers, the whole body."""

    __slots__ = (
        "_facts",
        "body",
        "headers",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.keep_alive = True
        self.version = "1.1"
        self.upgrade = False
        self._facts: matching.RequestFacts | None = None

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    @property
    def path(self) -> str:
        """The path without query, also for absolute-form targets (`http://host/path`)."""
        target = self.target
        if not target.startswith(b"/"):
            scheme_end = target.find(b"://")
            slash = target.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
            target = target[slash:] if slash >= 0 else b"/"
        return target.split(b"?", 1)[0].decode("latin-1")

    def facts(self) -> matching.RequestFacts:
        if self._facts is None:
            headers: dict[str, str] = {}
            for key, value in self.headers:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[name] = f"{headers[name]},{text}" if name in headers else text
            self._facts = matching.RequestFacts(self.method, self.path, headers)
        return self._facts

    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT


class _RequestCallbacks:
    """httptools callbacks: build `Request`s, enforce the head and body bounds."""

    def __init__(self, limits: settings.Limits) -> None:
        self.limits = limits
        self.parser: httptools.HttpRequestParser | None = None
        self.ready: deque[Request] = deque()
        self.current: Request | None = None
        self.head_bytes = 0
        self.started_at = 0.0

    def on_message_begin(self) -> None:
        self.current = Request()
        self.head_bytes = 0
        self.started_at = time.monotonic()

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.target += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))
        self._count(len(name) + len(value) + 4)

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > self.limits.max_header_bytes:
            raise HttpError(431, "request header fields too large")

    def on_headers_complete(self) -> None:
        assert self.current is not None
        assert self.parser is not None
        self.current.method = self.parser.get_method().decode("ascii")
        self.current.version = self.parser.get_http_version()
        self.current.keep_alive = self.parser.should_keep_alive()
        self.current.upgrade = self.parser.should_upgrade()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body
        if len(self.current.body) > self.limits.max_body_bytes:
            raise HttpError(413, "request body too large")

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.ready.append(self.current)
        self.current = None


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]
"""Writes the response for a request; returns whether the connection may serve another."""

Tunnel = Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
"""Takes over the connection after a CONNECT request (leftover bytes included)."""


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: Handler,
    *,
    limits: settings.Limits,
    draining: Callable[[], bool],
    first: bytes = b"",
    tunnel: Tunnel | None = None,
    idle: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
) -> None:
    """Serve requests on one downstream connection until either side closes it."""
    callbacks = _RequestCallbacks(limits)
    parser = httptools.HttpRequestParser(callbacks)
    callbacks.parser = parser
    data = first
    try:
        while True:
            while not callbacks.ready:
                if data:
                    chunk, data = data, b""
                    try:
                        parser.feed_data(chunk)
                    except httptools.HttpParserUpgrade as upgrade:
                        leftover = chunk[upgrade.args[0] :] if upgrade.args else b""
                        request = callbacks.ready[-1] if callbacks.ready else None
                        if request is None:
                            raise HttpError(400, "incomplete upgrade request") from None
                        if request.method == "CONNECT":
                            if tunnel is None:
                                raise HttpError(405, "CONNECT not supported here") from None
                            await tunnel(request, reader, writer, bytes(leftover))
                            return
                        # Not CONNECT (h2c, websocket): serve it as plain HTTP/1.1 and
                        # parse what follows with a fresh parser.
                        parser = httptools.HttpRequestParser(callbacks)
                        callbacks.parser = parser
                        data = bytes(leftover)
                    except httptools.HttpParserError as exc:
                        if isinstance(exc.__context__, HttpError):
                            raise exc.__context__ from None
                        raise HttpError(400, "malformed request") from None
                    continue
                if callbacks.current is not None:
                    budget = callbacks.started_at + limits.header_timeout - time.monotonic()
                    if budget <= 0:
                        raise HttpError(408, "request timeout")
                else:
                    budget = limits.idle_timeout
                    if draining():
                        return
                try:
                    async with asyncio.timeout(budget):
                        if idle is not None and callbacks.current is None:
                            with idle():
                                data = await reader.read(65536)
                        else:
                            data = await reader.read(65536)
                except TimeoutError:
                    if callbacks.current is None:
                        return  # idle keep-alive connection: close quietly
                    raise HttpError(408, "request timeout") from None
                if not data:
                    return
            request = callbacks.ready.popleft()
            keep = await handler(request, writer)
            if not (keep and request.keep_alive) or draining():
                return
    except HttpError as exc:
        writer.write(simple_response(exc.status, exc.reason, keep_alive=False))
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        await close(writer)


async def close(writer: asyncio.StreamWriter) -> None:
    """Flush what is buffered, then close (aborting a peer that does not finish the close)."""
    try:
        if not writer.is_closing():
            async with asyncio.timeout(1.0):
                await writer.drain()
    except (ConnectionError, OSError, TimeoutError):
        pass
    await streams.close(writer)


def simple_response(
    status: int,
    body: str,
    *,
    keep_alive: bool = True,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    payload = body.encode() if body.endswith("\n") or not body else (body + "\n").encode()
    return response_bytes(
        status, payload, keep_alive=keep_alive, content_type=content_type, extra=extra
    )


def response_bytes(
    status: int,
    payload: bytes,
    *,
    keep_alive: bool = True,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}".encode(),
        b"content-type: " + content_type,
        b"content-length: " + str(len(payload)).encode(),
    ]
    lines += [name + b": " + value for name, value in extra]
    if not keep_alive:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def encode_request(
    request: Request,
    *,
    path: bytes,
    host: bytes | None,
    add: tuple[tuple[bytes, bytes], ...] = (),
    drop: frozenset[bytes] = frozenset(),
) -> bytes:
    """The request as sent upstream: origin-form, hop-by-hop headers dropped, body framed
    by content-length, keep-alive implied (HTTP/1.1)."""
    listed = request.header(b"connection")
    hop = HOP_BY_HOP
    if listed:
        hop = hop | {token.strip().lower().encode() for token in listed.split(",")}
    parts = [request.method.encode(), b" ", path, b" HTTP/1.1\r\n"]
    has_host = False
    for name, value in request.headers:
        lower = name.lower()
        if lower in hop or lower in drop:
            continue
        if lower == b"host":
            has_host = True
            if host is not None:
                value = host
        parts += [name, b": ", value, b"\r\n"]
    if not has_host and host is not None:
        parts += [b"host: ", host, b"\r\n"]
    for name, value in add:
        parts += [name, b": ", value, b"\r\n"]
    if request.body or request.method in ("POST", "PUT", "PATCH"):
        parts += [b"content-length: ", str(len(request.body)).encode(), b"\r\n"]
    parts += [b"\r\n", bytes(request.body)]
    return b"".join(parts)


class _ResponseCallbacks:
    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.head_done = False
        self.done = False
        self.keep_alive = True
        self.framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        if self.status >= 200:
            self.head_done = True
            self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.done = True
        else:
            self.framed = False  # a 1xx interim response: the final one follows


class Response:
    """One upstream response being relayed: `read_head` first, then `relay` or `discard`."""

    def __init__(self, reader: asyncio.StreamReader, *, head_only: bool) -> None:
        self.reader = reader
        self.head_only = head_only
        self.callbacks = _ResponseCallbacks()
        self.parser = httptools.HttpResponseParser(self.callbacks)
        self.callbacks.parser = self.parser
        self.buffered = bytearray()
        self.eof = False

    @property
    def status(self) -> int:
        return self.callbacks.status

    @property
    def complete(self) -> bool:
        cb = self.callbacks
        return cb.done or (self.head_only and cb.head_done)

    @property
    def reusable(self) -> bool:
        """Whether the upstream connection can carry another request."""
        return self.complete and self.callbacks.keep_alive and not self.eof

    async def _feed_once(self) -> bytes:
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
            cb = self.callbacks
            if cb.head_done and not cb.framed:
                cb.done = True  # read-until-close body
                cb.keep_alive = False
                return data
            raise ConnectionResetError("upstream closed mid-response")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ConnectionResetError(f"malformed upstream response: {exc}") from None
        return data

    async def read_head(self) -> int:
        while not self.callbacks.head_done:
            self.buffered += await self._feed_once()
        return self.status

    async def relay(self, writer: asyncio.StreamWriter) -> int:
        """Write the head read so far and stream the rest; returns bytes written."""
        written = len(self.buffered)
        writer.write(bytes(self.buffered))
        self.buffered.clear()
        while not self.complete:
            data = await self._feed_once()
            if data:
                writer.write(data)
                written += len(data)
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
        if writer.transport.get_write_buffer_size() > 1 << 16:
            await writer.drain()
        return written

    async def discard(self) -> None:
        self.buffered.clear()
        while not self.complete:
            await self._feed_once()
