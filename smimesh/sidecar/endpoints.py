"""Endpoints: one upstream address with its live state (in-flight requests, failures,
ejection) and its pool of idle keep-alive connections; the connector that dials it.

Created by `clusters.Registry` (state outlives config swaps, so counts and pools survive);
picked by `clusters.Cluster`; used by `forwarding` and `tcp`. A meshed endpoint is dialled with
mTLS when a `tls.Credentials` source is given and the mesh is not in `disabled` mode.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Address:
    """Where to dial and whom to expect: the key of an endpoint's state."""

    host: str
    port: int
    identity: str = ""
    meshed: bool = False
    pod: str = ""

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(eq=False)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    reused: bool = False
    # A poll object for the socket, made once: `quiet` runs on every pooling decision.
    _poller: select.poll | None = field(default=None, init=False, repr=False)
    _polled: bool = field(default=False, init=False, repr=False)

    def usable(self, max_idle: float) -> bool:
        return (
            not self.writer.is_closing()  # first: a closed socket's descriptor may be reused
            and self.quiet()
            and time.monotonic() - self.idle_since < max_idle
        )

    def quiet(self) -> bool:
        """Nothing arrived that no request asked for: no bytes held by the reader or waiting
        in the socket, no EOF, no error. Only a quiet connection may be pooled or reused:
        bytes past a response would otherwise be read as the next caller's response."""
        reader = self.reader
        # StreamReader has no public way to ask whether it holds bytes: its buffer is read.
        held: bytes = getattr(reader, "_buffer", b"")
        if held or reader.at_eof() or reader.exception() is not None:
            return False
        poller = self._poller
        try:
            if not self._polled:
                self._polled = True
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    poller = self._poller = select.poll()
                    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
            return poller is None or not poller.poll(0)
        except (OSError, ValueError):  # closed under us
            return False

    def close(self) -> None:
        """Close without waiting: a TLS peer's close_notify is not awaited (nothing is in
        flight on a connection the pool gives up), so TLS connections are aborted."""
        if self.writer.get_extra_info("ssl_object") is not None:
            self.writer.transport.abort()
        elif not self.writer.is_closing():
            self.writer.close()


@dataclass(eq=False)
class EndpointState:
    """Mutable, long-lived: shared by every snapshot that names this address."""

    address: Address
    in_flight: int = 0
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    idle: deque[Connection] = field(default_factory=deque)
    retired: bool = False  # no snapshot names it any more: do not pool

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now

    def record(self, ok: bool) -> None:
        if ok:
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1

    def take_idle(self, max_idle: float) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable(max_idle):
                conn.reused = True
                return conn
            conn.close()
        return None

    def give_back(self, conn: Connection, max_pool: int) -> None:
        if (
            self.retired
            or len(self.idle) >= max_pool
            or conn.writer.is_closing()
            or not conn.quiet()
        ):
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def retire(self) -> None:
        self.retired = True
        self.close_idle()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Connector(Protocol):
    """Dials an endpoint (the seam `forwarding` and `tcp` use)."""

    async def connect(self, address: Address) -> Connection: ...


TlsFactory = Callable[[Address], ssl.SSLContext | None]
"""For a meshed address: the client context to originate mTLS with, or None (plaintext)."""
Identify = Callable[[ssl.SSLObject | None], str | None]
"""The verified SPIFFE id of the peer of an established TLS connection."""


class PeerMismatchError(ConnectionError):
    """The upstream presented a valid certificate, but not the identity the config expects."""


class TcpConnector:
    """Plain TCP, or mTLS for meshed endpoints when `tls_for` returns a context; marks
    sockets with `mark` (SO_MARK) so transparent-mode iptables rules skip the proxy's own
    traffic."""

    def __init__(
        self,
        *,
        timeout: float,
        mark: int | None = None,
        tls_for: TlsFactory | None = None,
        identify: Identify | None = None,
    ) -> None:
        self.timeout = timeout
        self.mark = mark
        self.tls_for = tls_for
        self.identify = identify

    async def connect(self, address: Address) -> Connection:
        loop = asyncio.get_running_loop()
        tls = self.tls_for(address) if self.tls_for is not None else None
        async with asyncio.timeout(self.timeout):
            infos = await loop.getaddrinfo(
                address.host, address.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            family, kind, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.mark is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
                await loop.sock_connect(sock, sockaddr)
                if tls is None:
                    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
                else:
                    reader, writer = await asyncio.open_connection(
                        sock=sock, ssl=tls, server_hostname=address.host, limit=1 << 20
                    )
            except BaseException:
                sock.close()
                raise
        if tls is not None and address.identity:
            found = self.identify(writer.get_extra_info("ssl_object")) if self.identify else None
            if found != address.identity:
                writer.close()
                raise PeerMismatchError(f"{address} is {found}, expected {address.identity}")
        return Connection(reader, writer)
