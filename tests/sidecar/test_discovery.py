"""The config client against a real grpcio asyncio server on a real socket: Hello, ACK of an
applied delta, NACK with a reason for one that cannot be applied (the last good resources and
config stay), traffic through an operator outage, and reconnection with a new Hello; and,
without sockets, how one response moves the resources held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from smimesh.proxyconfig import deltas, refs, resources, snapshots
from smimesh.proxyconfig import proxyconfig_pb2 as pb
from smimesh.proxyconfig import proxyconfig_pb2_grpc as pb_grpc
from smimesh.sidecar import discovery
from tests.sidecar.conftest import ME, config, free_port, service

WORKLOAD = resources.workload_name(ME.namespace, ME.pod)


def whole(cfg: snapshots.ProxyConfig, nonce: str = "1") -> pb.ConfigDelta:
    """The response that gives a proxy all of `cfg` (its whole scope)."""
    delta = deltas.Delta(nonce=nonce, version=cfg.version, changed=resources.split(cfg), full=True)
    return deltas.to_message(delta)


def change(
    before: snapshots.ProxyConfig, after: snapshots.ProxyConfig, nonce: str
) -> pb.ConfigDelta:
    """The response that moves a proxy from `before` to `after`: only what differs."""
    old, new = resources.split(before), resources.split(after)
    changed = {n: r for n, r in new.items() if n not in old or old[n].version != r.version}
    delta = deltas.Delta(
        nonce=nonce, version=after.version, changed=changed, removed=frozenset(old) - set(new)
    )
    return deltas.to_message(delta)


class FakeOperator(pb_grpc.ConfigDiscoveryServicer):
    """The operator's side of ConfigDiscovery.Stream, scripted by the test."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[pb.ProxyMessage] = asyncio.Queue()
        self.outgoing: asyncio.Queue[pb.ConfigDelta] = asyncio.Queue()

    async def Stream(  # noqa: N802 - the generated servicer's method name
        self, request_iterator: AsyncIterator[pb.ProxyMessage], context: Any
    ) -> AsyncIterator[pb.ConfigDelta]:
        async def read() -> None:
            async for message in request_iterator:
                await self.received.put(message)

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await self.outgoing.get()
        finally:
            reader.cancel()

    def push(self, response: pb.ConfigDelta) -> None:
        self.outgoing.put_nowait(response)

    async def next(self) -> pb.ProxyMessage:
        return await asyncio.wait_for(self.received.get(), 10)

    async def next_after(self, response: pb.ConfigDelta) -> pb.ProxyMessage:
        self.push(response)
        return await self.next()


async def _serve(operator: FakeOperator, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    pb_grpc.add_ConfigDiscoveryServicer_to_server(operator, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def test_config_client_acks_nacks_and_survives_the_operator(apps: Any, sidecars: Any) -> None:
    first, second = apps("first"), apps("second")
    good = config(outbound_services=(service("web", [("127.0.0.1", first.port, "first")]),))
    newer = config(outbound_services=(service("web", [("127.0.0.1", second.port, "second")]),))
    stranger = config(
        proxy=refs.ProxyRef(namespace="other", service_account="x", pod="x-1"),
        outbound_services=good.outbound,
    )
    port = free_port()
    operator = FakeOperator()
    server = await _serve(operator, port)
    proxy = await sidecars(proxy=ME, config_server=f"127.0.0.1:{port}")
    try:
        hello = await operator.next()
        assert hello.WhichOneof("kind") == "hello"
        assert (hello.hello.namespace, hello.hello.service_account, hello.hello.pod) == (
            ME.namespace,
            ME.service_account,
            ME.pod,
        )

        operator.push(whole(good))
        ack = (await operator.next()).ack
        assert (ack.nonce, ack.version) == ("1", good.version)
        assert proxy.sidecar.ctx.table.version == good.version

        bogus = change(good, newer, "2")
        bogus.resources[0].body_json = b'{"not": "a service"}'
        bogus.resources[0].version = snapshots.digest(bogus.resources[0].body_json)
        nack = (await operator.next_after(bogus)).nack
        assert nack.nonce == "2"
        assert "ValidationError" in nack.reason
        foreign = whole(stranger, "3")
        for item in foreign.resources:  # another pod's workload under this proxy's name
            if item.name.startswith("proxy/"):
                item.name = WORKLOAD
        assert "config is for other/x-1" in (await operator.next_after(foreign)).nack.reason
        assert proxy.sidecar.ctx.table.version == good.version  # the last good one stays

        await server.stop(None)  # the operator goes away: traffic carries on
        async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
            for _ in range(5):
                assert (await client.get("http://web/")).json()["app"] == "first"

        operator = FakeOperator()
        server = await _serve(operator, port)  # back: the client reconnects and says hello
        assert (await operator.next()).WhichOneof("kind") == "hello"
        operator.push(whole(newer))
        assert (await operator.next()).ack.version == newer.version
        async with httpx.AsyncClient(proxy=proxy.proxy_url) as client:
            assert (await client.get("http://web/")).json()["app"] == "second"
    finally:
        await server.stop(None)


A = service("a", [("10.0.0.1", 8080, "a-1")])
B = service("b", [("10.0.0.2", 8080, "b-1")])
B2 = service("b", [("10.0.0.3", 8080, "b-2")])


@pytest.mark.fast
def test_a_delta_adds_changes_and_removes_resources_and_makes_the_announced_config() -> None:
    first, second = config(outbound_services=(A, B)), config(outbound_services=(B2,))
    held, made = discovery._assemble({}, whole(first), WORKLOAD)
    assert made == first
    after, made = discovery._assemble(held, change(first, second, "2"), WORKLOAD)
    assert made == second
    assert resources.outbound_name(A.service) not in after
    assert after[resources.outbound_name(B.service)].body == B2
    assert resources.outbound_name(A.service) in held, "the map held before is left as it was"


@pytest.mark.fast
def test_a_delta_that_does_not_make_the_announced_version_is_refused() -> None:
    first, second = config(outbound_services=(A,)), config(outbound_services=(A, B))
    held, _ = discovery._assemble({}, whole(first), WORKLOAD)
    skewed = change(first, second, "2")
    skewed.version = first.version
    with pytest.raises(ValueError, match="the resources make"):
        discovery._assemble(held, skewed, WORKLOAD)
    gone = change(first, second, "3")
    gone.removed.append(WORKLOAD)
    with pytest.raises(ValueError, match="leaves no proxy/"):
        discovery._assemble(held, gone, WORKLOAD)


@pytest.mark.fast
def test_a_resource_whose_version_is_not_its_body_is_refused() -> None:
    response = whole(config(outbound_services=(A,)))
    response.resources[0].version = "0" * 16
    with pytest.raises(ValueError, match="its body is"):
        discovery._assemble({}, response, WORKLOAD)
