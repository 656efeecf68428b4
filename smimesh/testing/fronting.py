"""One address in front of several operator replicas' config servers: what the operator
Service (a ClusterIP and kube-proxy) gives sidecars in a cluster. Each accepted connection is
relayed to the first replica that accepts one, in the order given; a replica that is gone
refuses (or resets) and the next one gets the connection.

Used by `meshes.LocalMesh` when it runs more than one replica, so that sidecars keep one
`--config-server` and fail over when a replica dies. It listens on 127.0.0.1, the address the
config servers' certificates name, so TLS passes through untouched. Threads, not a loop: the
tests that start it are synchronous, and a mesh holds a few dozen connections at most.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Sequence

CONNECT_TIMEOUT = 1.0
MAX_CONNECTIONS = 256
"""Relayed connections at once; past it a new one is closed at once (a bound, not a limit
any mesh of ours reaches)."""


def _parse(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class Front:
    """Call `start()`; `address` is then the "host:port" to give sidecars; `close()` stops
    accepting and cuts every relayed connection."""

    def __init__(self, backends: Callable[[], Sequence[str]], *, host: str = "127.0.0.1") -> None:
        self.backends = backends
        self._listener = socket.create_server((host, 0))
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="front", daemon=True)
        self.relayed: dict[str, int] = {}
        """Connections relayed so far, by backend address."""

    def start(self) -> Front:
        self._acceptor.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                downstream.close()
                continue
            threading.Thread(
                target=self._serve, args=(downstream,), name="front-relay", daemon=True
            ).start()

    def _connect(self) -> socket.socket | None:
        for backend in self.backends():
            try:
                upstream = socket.create_connection(_parse(backend), timeout=CONNECT_TIMEOUT)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                self.relayed[backend] = self.relayed.get(backend, 0) + 1
            return upstream
        return None

    def _serve(self, downstream: socket.socket) -> None:
        try:
            upstream = self._connect()
            if upstream is None:
                return
            with self._lock:
                self._sockets.update((downstream, upstream))
            back = threading.Thread(
                target=_pump, args=(upstream, downstream), name="front-pump", daemon=True
            )
            back.start()
            _pump(downstream, upstream)
            back.join()
            with self._lock:
                self._sockets.difference_update((downstream, upstream))
            upstream.close()
        finally:
            downstream.close()
            self._slots.release()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink` (a reset ends both ways at once)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RDWR)
