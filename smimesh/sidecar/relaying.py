"""The upstream half of HTTP/1.1: encode a request for the chosen endpoint and relay its
response (status first, so that a 503 can still be retried; then the body, streamed).

Used by `forwarding` (outbound to a backend, inbound to the local app) with requests parsed by
`http1`. Responses are relayed as the upstream framed them (content-length, chunked, or
until close); HEAD, 1xx, 204 and 304 responses end after the head. Exactly the response's
own bytes are relayed: bytes the upstream wrote past it mark it `stray`, and `forwarding`
closes that connection instead of pooling it.
"""

from __future__ import annotations

import asyncio
import re

import httptools

from smimesh.sidecar import http1

# Control characters other than HTAB, CR and LF: llhttp lets some through in a reason
# phrase, and a head is relayed as the upstream wrote it, so the proxy refuses them itself.
CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

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
        self.chunked = False  # a transfer-encoding header: the body ends on a blank line
        self.remaining: int | None = None  # content-length body bytes still to come
        self.interims = 0  # 1xx responses seen before the final one
        self.codings = b""  # the transfer-encoding values, comma-joined

    def on_message_begin(self) -> None:
        self.framed = self.chunked = False
        self.remaining = None
        self.codings = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self.framed = True
            if value.strip().isdigit():
                self.remaining = int(value)
        elif lower == b"transfer-encoding":
            self.framed = self.chunked = True
            self.codings += b"," + value

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        if self.status >= 200:
            self.head_done = True
            self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.remaining is not None:
            self.remaining -= len(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.done = True
        else:
            self.interims += 1


class Response:
    """One upstream response being relayed: `read_head` first, then `relay` or `discard`.

    Only the bytes of this response are relayed. The parser is fed up to each place where
    the response could end (the blank line after a head or a chunked body, the last byte of
    a content-length body), so the byte where it does end is known: what follows it in the
    same read is stray (`stray`), and the connection is never reused."""

    def __init__(self, reader: asyncio.StreamReader, *, head_only: bool) -> None:
        self.reader = reader
        self.head_only = head_only
        self.callbacks = _ResponseCallbacks()
        self.parser = httptools.HttpResponseParser(self.callbacks)
        self.callbacks.parser = self.parser
        self.buffered = bytearray()
        self.eof = False
        self.stray = False  # bytes past the framed response were read
        self.head_end: int | None = None  # offset of the final head's end in the response
        self._starts = [0]  # offsets where each head (1xx ones, then the final one) begins
        self._fed = 0
        self._tail = b""  # the last two bytes fed, for a blank line split across reads

    @property
    def status(self) -> int:
        return self.callbacks.status

    @property
    def complete(self) -> bool:
        cb = self.callbacks
        return cb.done or (self.head_only and cb.head_done)

    @property
    def reusable(self) -> bool:
        """Whether the upstream connection can carry another request: the response ended
        where its framing says, keep-alive, and nothing was read past it."""
        return self.complete and self.callbacks.keep_alive and not self.eof and not self.stray

    async def _feed_once(self) -> bytes:
        """Read once; returns the bytes of this response in what was read."""
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
            cb = self.callbacks
            if cb.head_done and not cb.framed:
                cb.done = True  # read-until-close body
                cb.keep_alive = False
                return data
            raise ConnectionResetError("upstream closed mid-response")
        taken = self._feed(data)
        if taken < len(data):
            self.stray = True
            return data[:taken]
        return data

    def _feed(self, data: bytes) -> int:
        """Feed `data` up to the end of the response; returns how many bytes were its."""
        view = memoryview(data)
        pos = 0
        try:
            while pos < len(data) and not self.complete:
                end = self._cut(data, pos)
                self.parser.feed_data(view[pos:end])
                pos = end
                if self.head_end is None:
                    if self.callbacks.head_done:
                        self.head_end = self._fed + pos
                    elif self.callbacks.interims == len(self._starts):
                        self._starts.append(self._fed + pos)
        except httptools.HttpParserUpgrade:
            cb = self.callbacks  # 101 Switching Protocols: what follows is not HTTP
            cb.head_done = cb.done = cb.upgraded = True
            cb.keep_alive = False
            return len(data)  # the upgraded stream's first bytes: relayed as they are
        except httptools.HttpParserError as exc:
            raise ConnectionResetError(f"malformed upstream response: {exc}") from None
        finally:
            self._tail = data[pos - 2 : pos] if pos >= 2 else (self._tail + data[:pos])[-2:]
            self._fed += pos
        return pos

    def _cut(self, data: bytes, pos: int) -> int:
        """The next offset after `pos` where the response might end."""
        cb = self.callbacks
        if not cb.head_done or cb.chunked:
            end = self._blank_line_end(data, pos)
            if cb.head_done and cb.remaining is not None:  # both: the nearer one
                end = min(end, pos + max(cb.remaining, 1))
            return end
        if cb.remaining is not None:
            return min(len(data), pos + max(cb.remaining, 1))
        return len(data)  # until close

    def _blank_line_end(self, data: bytes, pos: int) -> int:
        """The first offset after `pos` that ends an empty line: where a head or a chunked
        body can end (llhttp wants CRLF; a bare LF line end is a cut too, to be safe)."""
        before = data[pos - 2 : pos] if pos >= 2 else (self._tail + data[:pos])[-2:]
        probe = before + data[pos : pos + 2]
        for extra in (1, 2):
            seen = probe[: len(before) + extra]
            if pos + extra <= len(data) and (seen.endswith(b"\n\r\n") or seen.endswith(b"\n\n")):
                return pos + extra
        ends = [
            at + size
            for at, size in ((data.find(b"\n\r\n", pos), 3), (data.find(b"\n\n", pos), 2))
            if at >= 0
        ]
        return min(ends, default=len(data))

    async def read_head(self) -> int:
        while not self.callbacks.head_done:
            self.buffered += await self._feed_once()
        if self.head_end is not None and len(self._starts) == 1 and self.buffered[:1] == b"H":
            # The usual case: one head, nothing before its status line.
            if CONTROL.search(self.buffered, 0, self.head_end):
                raise ConnectionResetError("malformed upstream response: a control character")
            self._check_codings()
        elif self.head_end is not None:
            # llhttp skips blank lines before a status line; a strict client would not.
            ends = [*self._starts[1:], self.head_end]
            pairs = zip(self._starts, ends, strict=True)
            heads = [self.buffered[a:b].lstrip(b"\r\n") for a, b in pairs]
            head = b"".join(heads)
            if CONTROL.search(head):
                raise ConnectionResetError("malformed upstream response: a control character")
            self._check_codings()
            self.buffered[: self.head_end] = head
        return self.status

    def _check_codings(self) -> None:
        codings = self.callbacks.codings
        if codings and codings.rsplit(b",", 1)[-1].strip().lower() != b"chunked":
            # close-delimited under a transfer-encoding: clients would read it otherwise
            raise ConnectionResetError("malformed upstream response: transfer-encoding")

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
