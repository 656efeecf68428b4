"""HTTP/1.1 codec: the downstream server loop (keep-alive, pipelining, bounded heads and
bodies, slowloris deadlines) and the upstream exchange that relays one response.

Fed by `listeners` with an accepted stream; hands each complete request to a handler
(`outbound.Outbound.http`, `inbound.Inbound.http`, `admin`, `probing`), which answers itself
or goes through `forwarding` and `relaying` to the chosen endpoint. Parsing is httptools
(llhttp, as in Node.js). Requests are read whole (bounded) so that idempotent ones can be
retried; responses stream. A request is admitted on its head (`Admit`: inbound authorization)
before `100 Continue` is sent and before any byte of its body is read. A refused request that
announces a body (or an upgrade) is answered at once and the connection closed, its body
never read; one without a body is answered in turn and the connection kept.
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
from smimesh.sidecar import matching, paths, settings

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
        "_normal",
        "body",
        "headers",
        "keep_alive",
        "method",
        "refusal",
        "takeover",
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
        # For an Upgrade request (WebSocket): the downstream reader and the bytes read past
        # the head, so that the forwarder can relay both ways once the app answers 101.
        self.takeover: tuple[asyncio.StreamReader, bytes] | None = None
        # Refused on its head (`Admit`) and without a body: answered in turn, never handled.
        self.refusal: HttpError | None = None
        self._facts: matching.RequestFacts | None = None
        self._normal: paths.Target | None = None

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    def normalize(self, *, merge_slashes: bool = False) -> paths.Target:
        """The target normalized by `paths` (the first call decides, later ones reuse it):
        the path every match sees and the origin-form target forwarded. Raises
        `paths.PathError`, which the mesh handlers answer with 400."""
        if self._normal is None:
            self._normal = paths.normalize(
                self.target, method=self.method, merge_slashes=merge_slashes
            )
        return self._normal

    @property
    def path(self) -> str:
        """The normalized path without query (also for absolute-form targets); "" for a
        target that cannot be normalized (a mesh handler answered it with 400 already)."""
        try:
            return self.normalize().path
        except paths.PathError:
            return ""

    def facts(self) -> matching.RequestFacts:
        """What matches see: the normalized path. Raises `paths.PathError`."""
        if self._facts is None:
            path = self.normalize().path
            headers: dict[str, str] = {}
            for key, value in self.headers:
                name = key.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[name] = f"{headers[name]},{text}" if name in headers else text
            self._facts = matching.RequestFacts(self.method, path, headers)
        return self._facts

    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT

    def answer(self, status: int, body: str, *, keep_alive: bool = True) -> bytes:
        """A response the sidecar makes itself to this request: no body for a HEAD."""
        return simple_response(status, body, keep_alive=keep_alive, head_only=self.method == "HEAD")


Admit = Callable[[Request], HttpError | None]
"""Decides on a request's head (method, target, headers; the body not read yet): None admits
it, an `HttpError` refuses it (answered with that status, the connection then closed)."""


class _RequestCallbacks:
    """httptools callbacks: build `Request`s, admit them on their heads, enforce the head and
    body bounds."""

    def __init__(self, limits: settings.Limits, admit: Admit | None = None) -> None:
        self.limits = limits
        self.admit = admit
        self.parser: httptools.HttpRequestParser | None = None
        self.ready: deque[Request] = deque()
        self.current: Request | None = None
        self.head_bytes = 0
        self.started_at = 0.0
        self.invite = False  # the current request expects 100-continue and was admitted

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
        if self.admit is not None:
            refusal = self.admit(self.current)
            if refusal is not None:
                if self.current.upgrade or _announces_body(self.current):
                    raise refusal  # answered and closed: no body byte taken, no 100 Continue
                self.current.refusal = refusal  # nothing to skip: answered, keep-alive
                return
        length = self.current.header(b"content-length")
        if length and length.strip().isdigit() and int(length) > self.limits.max_body_bytes:
            raise HttpError(413, "request body too large")
        expect = self.current.header(b"expect")
        if expect and expect.lower() == "100-continue" and self.current.version == "1.1":
            # The body is read before routing: `serve` invites it when it next needs bytes
            # (after any earlier response), or the client waits (curl for a second) for a
            # 100 the upstream never gets to send.
            self.invite = True

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body
        if len(self.current.body) > self.limits.max_body_bytes:
            raise HttpError(413, "request body too large")

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.ready.append(self.current)
        self.current = None
        self.invite = False  # the body came without waiting for a 100


def _announces_body(request: Request) -> bool:
    length = request.header(b"content-length")
    return request.header(b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


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
    admit: Admit | None = None,
) -> None:
    """Serve requests on one downstream connection until either side closes it."""
    callbacks = _RequestCallbacks(limits, admit)
    parser = httptools.HttpRequestParser(callbacks)
    callbacks.parser = parser
    data = first
    failed: HttpError | None = None  # answered once the requests parsed before it are
    try:
        while True:
            while not callbacks.ready:
                if failed is not None:
                    raise failed
                if data:
                    chunk, data = data, b""
                    try:
                        parser.feed_data(chunk)
                    except httptools.HttpParserUpgrade as upgrade:
                        leftover = chunk[upgrade.args[0] :] if upgrade.args else b""
                        request = callbacks.ready[-1] if callbacks.ready else None
                        if request is None:
                            raise HttpError(400, "incomplete upgrade request") from None
                        if request.refusal is not None:
                            raise request.refusal from None
                        if request.method == "CONNECT":
                            if tunnel is None:
                                raise HttpError(405, "CONNECT not supported here") from None
                            await tunnel(request, reader, writer, bytes(leftover))
                            return
                        if (request.header(b"upgrade") or "").lower() != "h2c":
                            # WebSocket and friends: forwarded as is; on 101 the forwarder
                            # relays both ways (and this loop ends after that request).
                            request.takeover = (reader, bytes(leftover))
                            break
                        # h2c: serve it as plain HTTP/1.1, parse on with a fresh parser.
                        parser = httptools.HttpRequestParser(callbacks)
                        callbacks.parser = parser
                        data = bytes(leftover)
                    except httptools.HttpParserError as exc:
                        if isinstance(exc.__context__, HttpError):
                            failed = exc.__context__
                        else:
                            failed = HttpError(400, "malformed request")
                    continue
                if callbacks.invite:
                    callbacks.invite = False
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
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
            if request.refusal is not None:
                refusal = request.refusal
                writer.write(
                    simple_response(refusal.status, refusal.reason, keep_alive=request.keep_alive,
                                    head_only=request.method == "HEAD")
                )  # fmt: skip
                keep = True
            else:
                keep = await handler(request, writer)
            if not (keep and request.keep_alive) or draining() or request.takeover:
                return
    except HttpError as exc:
        current = callbacks.current
        head_only = current is not None and current.method == "HEAD"
        writer.write(simple_response(exc.status, exc.reason, keep_alive=False, head_only=head_only))
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
    head_only: bool = False,
) -> bytes:
    payload = body.encode() if body.endswith("\n") or not body else (body + "\n").encode()
    return response_bytes(
        status, payload, keep_alive=keep_alive, content_type=content_type, extra=extra,
        head_only=head_only,
    )  # fmt: skip


def response_bytes(
    status: int,
    payload: bytes,
    *,
    keep_alive: bool = True,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: tuple[tuple[bytes, bytes], ...] = (),
    head_only: bool = False,
) -> bytes:
    """A whole response; `head_only` for an answer to HEAD (the length said, no body)."""
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
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else payload)
