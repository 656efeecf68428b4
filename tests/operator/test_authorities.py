"""The trust-bundle publisher against the real apiserver: it publishes the holder's bundle
only while this replica leads, wakes at once when leadership changes and, leadership being a
versioned value it remembers, does one round per change. With leadership a shared Event
that only the status writer cleared, it looped without pause for as long as the Event stayed
set."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.operator import authorities, indexing, leading

pytestmark = pytest.mark.cluster


class CountingPublisher(authorities.TrustBundlePublisher):
    """Counts its rounds as a leader (each asks which namespaces to publish in)."""

    rounds = 0

    def namespaces(self) -> list[str]:
        self.rounds += 1
        return super().namespaces()


def _published(api: client.ApiClient, namespace: str) -> str | None:
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(
            names.TRUST_BUNDLE_CONFIGMAP, namespace
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str((found.data or {}).get(names.TRUST_BUNDLE_KEY))


async def test_the_trust_bundle_follows_leadership_one_round_per_change(
    api: client.ApiClient, namespace: str
) -> None:
    holder = authorities.CaStore(api, namespace, "cluster.local").load_or_create()
    elector = leading.LeaderElector(api, namespace, "test")
    publisher = CountingPublisher(
        api, holder, indexing.MeshIndex(), elector, mesh_namespace=namespace
    )
    task = asyncio.create_task(publisher.run(period=60.0))
    try:
        await asyncio.sleep(0.3)
        assert _published(api, namespace) is None  # a follower publishes nothing
        assert publisher.rounds == 0

        elector.leadership.set(True)  # woken at once, not after the 60 s period
        bundle = holder.ca.bundle.pem().decode()
        await waiting.eventually(
            lambda: _published(api, namespace) == bundle,
            timeout=10,
            message="the new leader never published the trust bundle",
            interval=0.05,
        )
        await asyncio.sleep(0.5)  # long enough for thousands of rounds, if it spun
        assert publisher.rounds == 1, f"{publisher.rounds} rounds for one leadership change"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
