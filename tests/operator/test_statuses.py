"""The status writer against a real apiserver, in-process: it decides what to write on the
event loop, which attaches and detaches proxy sessions all the while, and only its API calls
run in a worker thread, so no thread ever reads the sessions or the index the loop changes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, TypeVar

import pytest
from kubernetes import client

from smimesh.kube import names
from smimesh.operator import delivering, indexing, leading, publishing, statuses
from smimesh.proxyconfig import refs
from smimesh.testing import clusters
from tests.operator.scenarios import apply, split, wait_conditions

pytestmark = pytest.mark.cluster

K = TypeVar("K")
V = TypeVar("V")


class NotingReaders(dict[K, V]):
    """A dict that notes the thread of every read (iteration, lookup, length)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.readers: set[int] = set()

    def _note(self) -> None:
        self.readers.add(threading.get_ident())

    def __iter__(self) -> Iterator[K]:
        self._note()
        return super().__iter__()

    def __getitem__(self, key: K) -> V:
        self._note()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note()
        return super().__contains__(key)

    def __len__(self) -> int:
        self._note()
        return super().__len__()

    def get(self, key: K, default: Any = None) -> Any:
        self._note()
        return super().get(key, default)

    def items(self) -> ItemsView[K, V]:
        self._note()
        return super().items()

    def keys(self) -> KeysView[K]:
        self._note()
        return super().keys()

    def values(self) -> ValuesView[V]:
        self._note()
        return super().values()


async def test_statuses_are_decided_on_the_loop_while_sessions_come_and_go(
    mesh_installed: clusters.Cluster, namespace: str, api: client.ApiClient
) -> None:
    cluster = mesh_installed
    apply(cluster, split(namespace, "canary", "root", {"v1": 90, "v2": 10}))
    raw = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha4", namespace, "trafficsplits", "canary"
    )
    index = indexing.MeshIndex()
    index.apply(raw)
    publisher = publishing.Publisher(index)
    await publisher.compile_now()
    sessions: NotingReaders[refs.ProxyRef, list[publishing.Session]] = NotingReaders()
    raw_smi: NotingReaders[indexing.Key, Any] = NotingReaders(index.raw_smi)
    unreadable: NotingReaders[indexing.Key, str] = NotingReaders(index.unreadable)
    publisher.sessions, index.raw_smi, index.unreadable = sessions, raw_smi, unreadable
    loop_thread = threading.get_ident()

    elector = leading.LeaderElector(
        api, namespace=namespace, identity="writer", lease_duration=3.0, retry_period=0.5
    )
    writer = statuses.StatusWriter(api, index, publisher, elector)
    done = asyncio.Event()
    churned = 0

    async def churn() -> None:
        """Proxies connect and disconnect on the loop as fast as it runs (bounded: 30 s)."""
        nonlocal churned
        steady = [
            publisher.attach(
                refs.ProxyRef(namespace=namespace, service_account="sa", pod=f"s-{n}"),
                delivering.MemorySink(),
            )
            for n in range(500)
        ]
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            proxy = refs.ProxyRef(namespace=namespace, service_account="sa", pod=f"c-{churned}")
            session = publisher.attach(proxy, delivering.MemorySink())
            await asyncio.sleep(0)
            publisher.detach(session)
            churned += 1
        for session in steady:
            publisher.detach(session)

    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(elector.run()),
            group.create_task(writer.run(period=0.2)),
            group.create_task(churn()),
        ]
        try:
            found = await asyncio.to_thread(
                wait_conditions,
                cluster,
                namespace,
                "canary",
                {"Accepted": "True", "Programmed": "True"},
                generation=1,
            )
        finally:
            done.set()
            for task in tasks[:2]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    assert found["Programmed"]["reason"] == "Programmed"
    assert churned > 100, churned
    # Only the loop read what the loop changes: the writer's thread saw a frozen plan.
    for name, noted in (("sessions", sessions), ("raw_smi", raw_smi), ("unreadable", unreadable)):
        assert noted.readers == {loop_thread}, f"{name} read from another thread"
    # The status is written as smimesh (Flagger's first run showed the client's default,
    # "OpenAPI-Generator"), on the status subresource only.
    written = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha4", namespace, "trafficsplits", "canary"
    )
    managers = {
        (m["manager"], m.get("subresource", "")) for m in written["metadata"]["managedFields"]
    }
    assert (names.FIELD_MANAGER, "status") in managers, managers
    assert not any(manager == "OpenAPI-Generator" for manager, _ in managers), managers
