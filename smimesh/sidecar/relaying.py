"""The upstream half of HTTP/1.1: encode a request for the chosen endpoint and relay its
response (status first, so that a 503 can still be retried; then the body, streamed).

Used by `forwarding` (outbound to a backend, inbound to the local app) with requests parsed by
`http1`. Responses are relayed as the upstream framed them (content-length, chunked, or
until close); HEAD responses end after the head.
"""

from __future__ import annotations

import asyncio

import httptools

from smimesh.sidecar import http1

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


def encode_request(
    request: http1.Request,
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
    if request.takeover is not None:
        upgrade = (request.header(b"upgrade") or "").encode("latin-1")
        parts += [b"connection: upgrade\r\nupgrade: ", upgrade, b"\r\n"]
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
        self.upgraded = False

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
        except httptools.HttpParserUpgrade:
            cb = self.callbacks  # 101 Switching Protocols: what follows is not HTTP
            cb.head_done = cb.done = cb.upgraded = True
            cb.keep_alive = False
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
