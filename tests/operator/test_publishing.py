"""`publishing.Publisher` coalesces in process, without a cluster or other processes to race:
a burst of index changes (one per loop step, as kopf delivers watch events) becomes one
compilation and wakes a proxy's session once, and a change that arrives within `settle` of
the previous one joins the same compilation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from smimesh._aio import waiting
from smimesh.operator import indexing, publishing


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "client-1",
        "namespace": "shop",
        "annotations": {"smimesh.dev/injected": "true"},
    },
    "spec": {"serviceAccountName": "client", "containers": [{"name": "app", "image": "app"}]},
    "status": {"podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}]},
}


@pytest.fixture
async def running() -> AsyncIterator[publishing.Publisher]:
    index = indexing.MeshIndex()
    index.apply(POD)
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


async def test_a_burst_of_changes_is_one_compilation_and_one_wake(
    running: publishing.Publisher,
) -> None:
    (proxy,) = running.compilation.configs
    session = running.attach(proxy)
    session.wake.clear()
    before = running.compilations
    for i in range(100):  # one handler call per watch event, each in its own loop step
        running.index.apply(_service(f"burst-{i}"))
        await asyncio.sleep(0)
    await _compiled(running)
    assert running.compilations - before == 1
    assert session.wake.is_set()
    config = running.desired(proxy)
    assert config is not None
    assert sum(s.service.name.startswith("burst-") for s in config.outbound) == 100


async def test_changes_within_settle_of_each_other_join_one_compilation(
    running: publishing.Publisher,
) -> None:
    before = running.compilations
    for i in range(20):
        running.index.apply(_service(f"slow-{i}"))
        await asyncio.sleep(0.05)
    await _compiled(running)
    assert running.compilations - before == 1
