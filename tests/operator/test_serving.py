"""The config server and the sidecar's config client over a real gRPC socket, in process:
the publisher's deltas reach the client through `serving.GrpcSink`, the client's ACKs make
the update Programmed, a weight change crosses the wire as the one outbound resource it
changed, and a refused delta shows in `pending` until the next one, sent whole, is applied.
Token review is a stand-in here (one Caller for every Hello); the real TokenReview path:
tests/sidecar/test_tokens.py and tests/operator/test_operator.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from smimesh._aio import waiting
from smimesh.operator import authenticating, publishing, serving
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import proxyconfig_pb2_grpc as pb_grpc
from smimesh.proxyconfig import snapshots
from smimesh.sidecar import discovery
from tests.operator import shop


@dataclass
class OneCaller:
    """Vouches for the shop's client pod, whatever the token."""

    async def authenticate(self, token: str) -> authenticating.Caller:
        proxy = shop.CLIENT
        return authenticating.Caller(proxy.namespace, proxy.service_account, pod=proxy.pod)


@dataclass
class RecordingSink:
    """The sidecar's side of the seam: records each config, or refuses while `refuse` is set."""

    applied: list[snapshots.ProxyConfig] = field(default_factory=list)
    refuse: str | None = None

    def apply(self, config: snapshots.ProxyConfig) -> None:
        if self.refuse is not None:
            raise ValueError(self.refuse)
        self.applied.append(config)


@dataclass
class Served:
    publisher: publishing.Publisher
    sink: RecordingSink
    client: discovery.DiscoveryClient

    def session(self) -> publishing.Session:
        (session,) = self.publisher.sessions[shop.CLIENT]
        return session

    async def holding(self, version: str) -> None:
        await waiting.eventually(
            lambda: self.client.applied == version and self.publisher.programmed(),
            timeout=10,
            message=lambda: f"the client holds {self.client.applied}, never {version}",
            error=AssertionError,
        )


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    publisher = publishing.Publisher(shop.index())
    await publisher.compile_now()
    server = grpc.aio.server()
    servicer = serving.ConfigDiscovery(publisher, OneCaller())
    pb_grpc.add_ConfigDiscoveryServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sink = RecordingSink()
    proxy = shop.CLIENT
    hello = pb.Hello(
        namespace=proxy.namespace, service_account=proxy.service_account, pod=proxy.pod
    )
    client = discovery.DiscoveryClient(f"127.0.0.1:{port}", sink, hello=lambda: hello)
    task = asyncio.create_task(client.run())
    try:
        yield Served(publisher, sink, client)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(None)


async def test_the_client_holds_the_whole_scope_then_each_change_as_one_resource(
    served: Served,
) -> None:
    publisher = served.publisher
    await served.holding(shop.desired(publisher, shop.CLIENT).version)
    assert served.sink.applied[-1] == shop.desired(publisher, shop.CLIENT)
    sink = served.session().sink
    assert isinstance(sink, serving.GrpcSink)
    before = sink.bytes_sent

    publisher.index.apply(shop.split({"v1": 40, "v2": 60}))
    await publisher.compile_now()
    await served.holding(shop.desired(publisher, shop.CLIENT).version)
    assert sink.bytes_sent - before == len(publisher.latest["outbound/shop/root"].encoded)
    assert served.sink.applied[-1] == shop.desired(publisher, shop.CLIENT)


async def test_a_refused_delta_is_pending_until_the_whole_scope_is_applied(
    served: Served,
) -> None:
    publisher = served.publisher
    first = shop.desired(publisher, shop.CLIENT).version
    await served.holding(first)

    served.sink.refuse = "no room for it"
    publisher.index.apply(shop.split({"v1": 30, "v2": 70}))
    await publisher.compile_now()
    await waiting.eventually(
        lambda: publisher.pending() == [f"{shop.CLIENT} (refused it: ValueError: no room for it)"],
        timeout=10,
        message=lambda: f"pending: {publisher.pending()}",
        error=AssertionError,
    )
    assert served.client.applied == first
    assert served.session().held is None

    served.sink.refuse = None
    publisher.index.apply(shop.service("later"))
    await publisher.compile_now()
    await served.holding(shop.desired(publisher, shop.CLIENT).version)
    assert served.sink.applied[-1] == shop.desired(publisher, shop.CLIENT)
