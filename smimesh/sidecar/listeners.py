"""Listeners: bind a port, accept connections, hand each accepted socket to a connection
handler in a task the listener owns.

Created by `running` for the outbound, inbound, local-service and admin ports; the handlers
are `outbound`, `inbound` and `admin`. The accept loop backs off when the process runs out
of file descriptors instead of spinning, and `stop()` stops accepting without touching the
connections already open (the drain decides when those end). Also the socket helpers every
handler uses: `streams` (asyncio streams over an accepted socket, TLS optional) and `peek`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from smimesh._aio import tasks

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[socket.socket], Awaitable[None]]
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Listener:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        backlog: int = 1024,
        max_connections: int | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.connections = tasks.Nursery(name)
        self.max_connections = max_connections
        self.on_refused = on_refused
        self.refused = 0
        self._warned = 0.0
        self.sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setblocking(False)
        try:
            self.sock.bind((host, port))
            self.sock.listen(backlog)
        except OSError:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]
        self._accepting: asyncio.Task[Any] | None = None

    async def serve(self) -> None:
        """Accept until `stop()`; returns once the accept loop ended."""
        self._accepting = asyncio.current_task()
        loop = asyncio.get_running_loop()
        delay = 0.05
        try:
            while True:
                try:
                    conn, _ = await loop.sock_accept(self.sock)
                except OSError as exc:
                    if exc.errno not in _EXHAUSTED:
                        raise
                    log.warning("%s: accept failed (%s); backing off %.2fs", self.name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                delay = 0.05
                if (
                    self.max_connections is not None
                    and len(self.connections) >= self.max_connections
                ):
                    self._refuse(conn)
                    continue
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.connections.start(self._handle(conn))
        except asyncio.CancelledError:
            pass
        finally:
            self.sock.close()

    def _refuse(self, conn: socket.socket) -> None:
        """Past the cap: close at once (the client sees EOF), count it, warn at most every 10 s."""
        conn.close()
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(self.name)
        now = time.monotonic()
        if now - self._warned >= 10.0:
            self._warned = now
            log.warning(
                "%s: %d connections open, the cap; closing new ones (%d so far)",
                self.name, self.max_connections, self.refused,
            )  # fmt: skip

    async def _handle(self, conn: socket.socket) -> None:
        try:
            await self.handler(conn)
        except (ConnectionError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: connection ended: %s", self.name, exc)
        finally:
            if conn.fileno() >= 0:
                conn.close()

    def stop(self) -> None:
        """Stop accepting (the port is released); open connections carry on."""
        if self._accepting is not None and not self._accepting.done():
            self._accepting.cancel()
        else:
            self.sock.close()


async def streams(
    conn: socket.socket,
    *,
    tls: ssl.SSLContext | None = None,
    handshake_timeout: float = 10.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Asyncio streams over an accepted socket, with a server-side TLS handshake if asked."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: protocol,
        conn,
        ssl=tls,
        ssl_handshake_timeout=handshake_timeout if tls is not None else None,
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def peek(conn: socket.socket, size: int, *, within: float) -> bytes:
    """The first bytes the peer sent, left in the socket (to tell TLS from plaintext)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()
    loop.add_reader(fd, _resolve, readable)
    try:
        async with asyncio.timeout(within):
            await readable
    finally:
        loop.remove_reader(fd)
    return conn.recv(size, socket.MSG_PEEK)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def raise_descriptor_limit(ceiling: int = 1 << 20) -> int:
    """Lift this process's soft limit on open files to its hard limit (at most `ceiling`), as
    Go and Envoy do at start: the per-listener connection caps, not a default soft limit of
    1,024 shared by every listener and both sides of each relay, should be what refuses
    connections. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard if hard != resource.RLIM_INFINITY else ceiling, ceiling)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, wanted, exc)
            return soft
        return wanted
    return soft
