"""`publishing.Publisher` in process, through the in-memory sink (`delivering.MemorySink`):
a burst of index changes is one compilation, each proxy gets only the resources of its scope
that changed (a weight change one outbound resource, a pod change its own `proxy/...` to that
proxy alone), a (re)connecting or refusing proxy gets its whole scope, a slow proxy the
latest state in one delta, and Programmed follows the ACKs of what each proxy was sent. The
same paths over gRPC and real sockets: tests/operator/test_operator*.py and
tests/sidecar/test_tokens.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from smimesh._aio import waiting
from smimesh.operator import delivering, indexing, publishing
from smimesh.proxyconfig import deltas, refs, resources
from tests.operator import shop as mesh

NS = mesh.NS


@pytest.fixture
async def shop() -> publishing.Publisher:
    publisher = publishing.Publisher(mesh.index())
    await publisher.compile_now()
    return publisher


def _connect(
    publisher: publishing.Publisher, proxy: refs.ProxyRef
) -> tuple[publishing.Session, delivering.MemorySink]:
    sink = delivering.MemorySink()
    return publisher.attach(proxy, sink), sink


def _taken(sink: delivering.MemorySink) -> deltas.Delta:
    delta = sink.take_nowait()
    assert delta is not None, "nothing was sent"
    return delta


def _scope(publisher: publishing.Publisher, proxy: refs.ProxyRef) -> set[str]:
    workload = resources.workload_name(proxy.namespace, proxy.pod)
    own = publisher.latest[workload].body
    assert isinstance(own, resources.Workload)
    return {
        resources.SETTINGS,
        workload,
        *resources.policies_of(own),
        *(name for name in publisher.latest if name.startswith(resources.OUTBOUND_PREFIX)),
    }


@pytest.mark.fast
async def test_a_connecting_proxy_gets_its_whole_scope_and_no_other_pods_workload(
    shop: publishing.Publisher,
) -> None:
    session, sink = _connect(shop, mesh.SERVER)
    first = _taken(sink)
    assert first.full
    assert set(first.changed) == _scope(shop, mesh.SERVER)
    assert resources.workload_name(NS, "client-1") not in first.changed
    assert any(name.startswith("inbound/shop/server/") for name in first.changed)
    assert not any(name.startswith("inbound/shop/client/") for name in first.changed)
    config = mesh.desired(shop, mesh.SERVER)
    assert first.version == config.version == session.sent
    assert resources.assemble(deltas.apply({}, first), session.workload) == config


@pytest.mark.fast
async def test_a_weight_change_sends_one_outbound_resource_to_every_proxy(
    shop: publishing.Publisher,
) -> None:
    connected = [_connect(shop, proxy) for proxy in (mesh.CLIENT, mesh.SERVER)]
    for _, sink in connected:
        _taken(sink)
    shop.index.apply(mesh.split({"v1": 50, "v2": 50}))
    await shop.compile_now()
    for session, sink in connected:
        delta = _taken(sink)
        assert (set(delta.changed), delta.removed, delta.full) == (
            {"outbound/shop/root"},
            frozenset(),
            False,
        )
        assert delta.version == mesh.desired(shop, session.proxy).version == session.sent


@pytest.mark.fast
async def test_a_pod_change_sends_its_workload_to_that_proxy_only(
    shop: publishing.Publisher,
) -> None:
    (_, client_sink), (_, server_sink) = (_connect(shop, p) for p in (mesh.CLIENT, mesh.SERVER))
    _taken(client_sink), _taken(server_sink)
    relabelled = mesh.pod("client-1", "client", "10.0.0.2")
    relabelled["metadata"]["labels"] = {"team": "checkout"}  # nothing compiled reads it
    shop.index.apply(relabelled)
    await shop.compile_now()
    assert client_sink.take_nowait() is None
    assert server_sink.take_nowait() is None
    shop.index.apply(
        mesh.endpoint_slice("other", "client-1", "10.0.0.2")
    )  # the client now serves `other`
    await shop.compile_now()
    delta = _taken(client_sink)
    assert resources.workload_name(NS, "client-1") in delta.changed
    assert "outbound/shop/other" in delta.changed
    assert all(not name.startswith("proxy/") for name in _taken(server_sink).changed)


@pytest.mark.fast
async def test_a_slow_proxy_gets_the_latest_state_in_one_delta(
    shop: publishing.Publisher,
) -> None:
    session, sink = _connect(shop, mesh.CLIENT)
    for weight in (80, 70, 60):  # the proxy takes none of these
        shop.index.apply(mesh.split({"v1": weight, "v2": 100 - weight}))
        await shop.compile_now()
    shop.index.apply(mesh.service("new"))
    await shop.compile_now()
    delta = _taken(sink)
    assert sink.merges == 4
    assert sink.take_nowait() is None
    assert delta.full, "the first delta was the whole scope: merged ones stay whole"
    config = mesh.desired(shop, mesh.CLIENT)
    assert resources.assemble(deltas.apply({}, delta), session.workload) == config
    assert delta.version == config.version


@pytest.mark.fast
async def test_an_ack_makes_the_update_programmed_and_a_nack_resends_the_whole_scope(
    shop: publishing.Publisher,
) -> None:
    session, sink = _connect(shop, mesh.CLIENT)
    first = _taken(sink)
    assert not shop.programmed()
    seen, progress = session.answers.version, shop.progress.version
    session.ack(first.nonce, first.version)
    assert session.answers.version == seen + 1
    assert shop.progress.version == progress + 1, "the status writer waits on this"
    assert shop.programmed()
    assert shop.pending() == []
    shop.index.apply(mesh.split({"v1": 10, "v2": 90}))
    await shop.compile_now()
    second = _taken(sink)
    assert not second.full
    session.nack(second.nonce, "no room")
    assert shop.pending() == [f"{mesh.CLIENT} (refused it: no room)"]
    shop.index.apply(mesh.service("later"))
    await shop.compile_now()
    third = _taken(sink)
    assert third.full
    assert set(third.changed) == _scope(shop, mesh.CLIENT)
    session.ack(third.nonce, third.version)
    assert shop.programmed()


@pytest.mark.fast
async def test_a_reconnecting_proxy_gets_its_whole_scope_again(
    shop: publishing.Publisher,
) -> None:
    session, sink = _connect(shop, mesh.CLIENT)
    first = _taken(sink)
    shop.detach(session)
    assert shop.sessions == {}
    shop.index.apply(mesh.split({"v1": 0, "v2": 100}))
    await shop.compile_now()
    _, sink = _connect(shop, mesh.CLIENT)
    delta = _taken(sink)
    assert delta.full
    assert set(delta.changed) == set(first.changed)
    assert (
        delta.changed["outbound/shop/root"].version != first.changed["outbound/shop/root"].version
    )


@pytest.mark.fast
async def test_a_proxy_without_a_pod_in_the_index_is_sent_nothing_until_it_has_one() -> None:
    publisher = publishing.Publisher(indexing.MeshIndex())
    await publisher.compile_now()
    session, sink = _connect(publisher, mesh.CLIENT)
    assert sink.take_nowait() is None
    assert session.sent is None
    assert publisher.programmed()
    publisher.index.apply(mesh.pod("client-1", "client", "10.0.0.2"))
    await publisher.compile_now()
    assert _taken(sink).full


# Coalescing of bursts, with the run loop.


@pytest.fixture
async def running() -> AsyncIterator[publishing.Publisher]:
    index = indexing.MeshIndex()
    index.apply(mesh.pod("client-1", "client", "10.0.0.2"))
    # settle is 20 times the spacing of the slow burst below; max_delay never cuts a burst
    publisher = publishing.Publisher(index, settle=1.0, max_delay=60.0)
    await publisher.compile_now()
    task = asyncio.create_task(publisher.run())
    yield publisher
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _compiled(publisher: publishing.Publisher) -> None:
    await waiting.eventually(
        lambda: publisher.compiled_generation == publisher.index.generation,
        timeout=30,
        message="the burst was never compiled",
    )


async def test_a_burst_of_changes_is_one_compilation_and_one_delta(
    running: publishing.Publisher,
) -> None:
    _, sink = _connect(running, mesh.CLIENT)
    _taken(sink)
    before = running.compilations
    for i in range(100):  # one handler call per watch event, each in its own loop step
        running.index.apply(mesh.service(f"burst-{i}"))
        await asyncio.sleep(0)
    await _compiled(running)
    assert running.compilations - before == 1
    delta = _taken(sink)
    assert sink.merges == 0
    assert set(delta.changed) == {f"outbound/shop/burst-{i}" for i in range(100)}


async def test_changes_within_settle_of_each_other_join_one_compilation(
    running: publishing.Publisher,
) -> None:
    before = running.compilations
    for i in range(20):
        running.index.apply(mesh.service(f"slow-{i}"))
        await asyncio.sleep(0.05)
    await _compiled(running)
    assert running.compilations - before == 1
