"""Fixtures for the sidecar tests: real apps on real sockets, real sidecars in-process or as
`smimesh sidecar run` subprocesses (and the wait until one is ready), a raw connection to a
sidecar's outbound port and a strict reader of one HTTP/1.1 response on it, and a small
builder for proxy configs."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from smimesh._aio import waiting
from smimesh.identity import authority, keys
from smimesh.identity import spiffe as spiffe_ids
from smimesh.proxyconfig import inbound, matches, outbound, refs, snapshots
from smimesh.sidecar import credentials, running, settings
from smimesh.testing import controlplane

NS = "shop"
ME = refs.ProxyRef(namespace=NS, service_account="web", pod="web-5d8f7c9b6d-abcde")
TRUST = "cluster.local"


def spiffe(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST}/ns/{namespace}/sa/{service_account}"


free_port = controlplane.free_port
"""One port picker for every test (below the ephemeral range: no client takes it first)."""


def until_ready(
    process: subprocess.Popen[Any],
    admin: int,
    *,
    output: Callable[[], str],
    inbound: int | None = None,
    timeout: float = 20.0,
) -> None:
    """Until the `smimesh sidecar run` `process` answers 200 on its admin /ready (on
    127.0.0.1) and, given `inbound`, that port accepts (it is bound once the config is
    applied). AssertionError with `output()` (its log) if it exits first or is not ready
    within `timeout`."""

    def ready() -> bool:
        assert process.poll() is None, f"the sidecar exited ({process.returncode}): {output()}"
        if httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code != 200:
            return False
        if inbound is not None:
            socket.create_connection(("127.0.0.1", inbound), timeout=1).close()
        return True

    waiting.eventually_sync(
        ready,
        timeout=timeout,
        message=lambda: f"the sidecar never became ready in {timeout:.0f}s: {output()}",
        interval=0.1,
        ignoring=(httpx.HTTPError, OSError),
        error=AssertionError,
    )


async def raw_outbound(
    apps: Callable[..., App], sidecars: Callable[..., Any]
) -> tuple[App, asyncio.StreamReader, asyncio.StreamWriter]:
    """An app `one` behind Service `web`, an in-process sidecar routing to it, and a raw
    connection to that sidecar's outbound port (for bytes no HTTP client would send)."""
    app = apps("one")
    proxy = await sidecars(
        config(outbound_services=(service("web", [("127.0.0.1", app.port, "p")]),))
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["outbound"])
    return app, reader, writer


async def read_response(reader: asyncio.StreamReader, method: str) -> tuple[int, bytes]:
    """One response as a strict client reads it: framing per RFC 9112 (HEAD, 204 and 304
    have no body), nothing read past it."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 "), head[:80]
    status = int(head[9:12])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
    }
    if method == "HEAD" or status in (204, 304):
        return status, b""
    if fields.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size + 2)
            body = body[:-2]
        await reader.readuntil(b"\r\n")
        return status, body
    return status, await asyncio.wait_for(reader.readexactly(int(fields[b"content-length"])), 5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: App

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(urlsplit(self.path).query)
        self.server.hits.append((self.command, self.path, dict(self.headers.items())))
        self.server.bodies.append(body)
        if "sleep" in query:
            time.sleep(float(query["sleep"][0]))
        status = int(query.get("status", ["200"])[0])
        if self.server.fail_with is not None:
            status = self.server.fail_with
        payload = json.dumps(
            {
                "app": self.server.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if "close" in query:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve  # noqa: N815


class App(ThreadingHTTPServer):
    """A real HTTP/1.1 app (keep-alive) answering JSON about the request it got."""

    daemon_threads = True

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.name = name
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self.fail_with: int | None = None
        self.accepted = 0  # connections accepted: pooling shows as fewer than requests
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1  # one thread (serve_forever) calls this
        super().process_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def apps() -> Iterator[Callable[..., App]]:
    started: list[App] = []

    def start(name: str, host: str = "127.0.0.1", port: int = 0) -> App:
        app = App(name, host, port)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@dataclass
class Running:
    sidecar: running.Sidecar
    task: asyncio.Task[None]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['outbound']}"


@pytest.fixture
async def sidecars() -> AsyncIterator[Callable[..., Any]]:
    """Start in-process sidecars (ports 0 unless given); all are stopped at the end."""
    started: list[Running] = []

    async def start(
        config: snapshots.ProxyConfig | None = None,
        *,
        credentials: Any = None,
        **overrides: Any,
    ) -> Running:
        values: dict[str, Any] = {
            "outbound_port": 0,
            "admin_port": 0,
            "inbound_port": 0,
            "admin_host": "127.0.0.1",
            "drain_seconds": 2.0,
        }
        values.update(overrides)
        sidecar = running.Sidecar(settings.SidecarSettings(**values), credentials=credentials)
        if config is not None:
            sidecar.apply(config)
        ready = asyncio.Event()
        ports: dict[str, int] = {}

        def on_ready(bound: dict[str, int]) -> None:
            ports.update(bound)
            ready.set()

        task = asyncio.create_task(sidecar.run(ready=on_ready))
        await asyncio.wait_for(ready.wait(), 5)
        item = Running(sidecar, task, ports)
        started.append(item)
        return item

    yield start
    for item in started:
        item.sidecar.stop()
    for item in started:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(item.task, 10)


# -- config builders -----------------------------------------------------------------------


def service(
    name: str,
    endpoints: list[tuple[str, int, str]] = (),  # type: ignore[assignment]
    *,
    port: int = 80,
    protocol: outbound.Protocol = "http",
    namespace: str = NS,
    cluster_ip: str | None = None,
    routes: tuple[outbound.SplitRoute, ...] = (),
    meshed: bool = False,
    identity: str = "",
) -> outbound.OutboundService:
    """An OutboundService whose endpoints are (address, target_port, pod); one target port
    per service (the first endpoint's)."""
    target_port = endpoints[0][1] if endpoints else port
    return outbound.OutboundService(
        service=refs.ServiceRef(namespace=namespace, name=name),
        cluster_ip=cluster_ip,
        hostnames=(name, f"{name}.{namespace}", f"{name}.{namespace}.svc.cluster.local"),
        ports=(outbound.ServicePort(port=port, target_port=target_port, protocol=protocol),),
        endpoints=tuple(
            outbound.Endpoint(
                address=address,
                pod=pod,
                identity=identity or spiffe(namespace, name),
                meshed=meshed,
            )
            for address, _, pod in endpoints
        ),
        routes=routes,
    )


def split(
    name: str, weights: dict[str, int], *, only: tuple[matches.HttpMatch, ...] = ()
) -> outbound.SplitRoute:
    return outbound.SplitRoute(
        split=f"{NS}/{name}",
        matches=only,
        backends=tuple(
            outbound.WeightedBackend(service=refs.ServiceRef(namespace=NS, name=b), weight=w)
            for b, w in weights.items()
        ),
    )


def config(
    *,
    outbound_services: tuple[outbound.OutboundService, ...] = (),
    inbound_ports: tuple[inbound.InboundPort, ...] = (),
    proxy: refs.ProxyRef = ME,
    **mesh: Any,
) -> snapshots.ProxyConfig:
    return snapshots.ProxyConfig.build(
        proxy=proxy,
        identity=spiffe(proxy.namespace, proxy.service_account),
        settings=snapshots.MeshSettings(**mesh),
        outbound=outbound_services,
        inbound=inbound_ports,
    )


# -- identities ------------------------------------------------------------------------------


class Pki:
    """A real mesh CA (smimesh.identity) that writes workload credentials to files."""

    def __init__(self, directory: Path, trust_domain: str = TRUST) -> None:
        self.directory = directory
        self.ca = authority.create(trust_domain)
        self.trust_domain = trust_domain
        self._serials = itertools.count()

    def files(self, namespace: str, service_account: str) -> tuple[Path, Path, Path]:
        key = keys.generate_key()
        identity = spiffe_ids.for_service_account(self.trust_domain, namespace, service_account)
        issued = self.ca.sign(keys.build_request(key, identity), expected=identity)
        # A counter, not id(issued): ids of collected objects are reused, directories are not.
        base = self.directory / f"{namespace}-{service_account}-{next(self._serials)}"
        base.mkdir(parents=True)
        paths = (base / "tls.crt", base / "tls.key", base / "ca.crt")
        paths[0].write_bytes(issued.chain_pem())
        paths[1].write_bytes(keys.key_to_pem(key))
        paths[2].write_bytes(keys.certificates_to_pem((self.ca.root,)))
        return paths

    def credentials(self, namespace: str, service_account: str) -> credentials.FileCredentials:
        cert, key, bundle = self.files(namespace, service_account)
        return credentials.FileCredentials(
            cert_file=cert, key_file=key, trust_bundle_file=bundle, trust_domain=self.trust_domain
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# -- gRPC ------------------------------------------------------------------------------------


class GrpcEcho:
    """A real grpcio server's handlers: Unary echoes (with metadata x-who), Chat upper-cases."""

    def __init__(self) -> None:
        self.calls = 0

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.calls += 1
        metadata = dict(context.invocation_metadata() or ())
        return b"echo:" + request + b":" + str(metadata.get("x-who", "")).encode()

    async def chat(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        self.calls += 1
        async for request in requests:
            yield request.upper()


async def grpc_echo_server() -> tuple[grpc.aio.Server, GrpcEcho, int]:
    echo = GrpcEcho()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(echo.unary),
                    "Chat": grpc.stream_stream_rpc_method_handler(echo.chat),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, echo, port
