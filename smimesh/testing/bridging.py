"""A TCP bridge from inside a network namespace to a loopback address of the host: listens on
`127.0.0.1:PORT` in the namespace and relays each connection to `HOST:PORT` outside it.

Started by `isolating` (`python -m smimesh.testing.bridging NETNS PORT HOST:PORT`) so that a
sidecar in a workload's namespace reaches the operator's config server, which a local mesh
binds to the host's 127.0.0.1 (its TLS certificate names that address, so the sidecar must
dial it under the same name). One process: the listening socket is made inside the namespace
(setns on this thread), every other socket outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

from smimesh._aio import streams

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """This thread in network namespace `netns` (an `ip netns` name), then back home."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / netns, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def listen_inside(netns: str, port: int) -> socket.socket:
    with inside(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        streams.abort(writer)


async def _relay(
    host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        async with asyncio.timeout(10):
            up_reader, up_writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        await streams.close(writer)
        return
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(reader, up_writer))
            group.create_task(_pipe(up_reader, writer))
    finally:
        await streams.close(up_writer)
        await streams.close(writer)


async def serve(netns: str, port: int, host: str, target_port: int) -> None:
    """Relay until SIGTERM/SIGINT."""
    sock = listen_inside(netns, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _relay(host, target_port, reader, writer)

    server = await asyncio.start_server(handle, sock=sock)
    print(f"bridging {netns} 127.0.0.1:{port} -> {host}:{target_port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m smimesh.testing.bridging")
    parser.add_argument("netns")
    parser.add_argument("port", type=int)
    parser.add_argument("target", help="HOST:PORT outside the namespace")
    args = parser.parse_args()
    host, _, target_port = str(args.target).rpartition(":")
    asyncio.run(serve(args.netns, args.port, host, int(target_port)))


if __name__ == "__main__":
    main()
