"""Two operator replicas: both serve config, one writes status; killing the leader hands the
Lease to the other, and proxies on the survivor never lose their config."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters
from smimesh.testing.meshes import OperatorProcess
from tests.operator.scenarios import (
    apply,
    connect,
    next_with,
    patch_weights,
    route_weights,
    split,
    wait_conditions,
)

pytestmark = pytest.mark.cluster


def holder(cluster: clusters.Cluster) -> str | None:
    result = cluster.kubectl(
        "-n", "smimesh-system", "get", "lease", "smimesh-operator", "-o", "json"
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)["spec"].get("holderIdentity")


def wait_holder(cluster: clusters.Cluster, among: set[str], timeout: float = 30) -> str:
    current: str | None = None

    def held() -> str | None:
        nonlocal current
        current = holder(cluster)
        return current if current in among else None

    return waiting.eventually_sync(
        held,
        timeout=timeout,
        message=lambda: f"lease held by {current!r}, expected one of {among}",
        interval=0.2,
        error=AssertionError,
    )


def test_killing_the_leader_hands_over_status_writing_without_losing_proxies(
    mesh_installed: clusters.Cluster, canary: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    cluster, namespace = mesh_installed, canary
    apply(cluster, split(namespace, "canary", "root", {"v1": 100, "v2": 0}))
    first = start_operator("replica-a", lease_duration=3.0)
    wait_holder(cluster, {"replica-a"})
    second = start_operator("replica-b", lease_duration=3.0)
    operators = {"replica-a": first, "replica-b": second}

    # One proxy on each replica: both replicas serve config, leader or not.
    on_first = connect(cluster, first, namespace)
    on_second = connect(cluster, second, namespace)
    try:
        for proxy in (on_first, on_second):
            next_with(proxy, lambda c: route_weights(c, "root") == {"v1": 100, "v2": 0})
        wait_conditions(cluster, namespace, "canary", {"Programmed": "True"}, generation=1)
        assert holder(cluster) == "replica-a"

        first.stop(kill=True)  # no chance to release the Lease: the follower must take it
        wait_holder(cluster, {"replica-b"}, timeout=20)

        patch_weights(cluster, namespace, "canary", {"v1": 80, "v2": 20})
        next_with(on_second, lambda c: route_weights(c, "root") == {"v1": 80, "v2": 20})
        assert on_second.error is None
        # The new leader writes status: Programmed for generation 2. The proxy of the killed
        # replica is disconnected, so only the survivor's proxy counts.
        wait_conditions(cluster, namespace, "canary", {"Programmed": "True"}, generation=2)
        assert operators["replica-b"].process.poll() is None
    finally:
        on_first.close()
        on_second.close()


def test_a_clean_stop_releases_the_lease_at_once(
    mesh_installed: clusters.Cluster, start_operator: Callable[..., OperatorProcess]
) -> None:
    first = start_operator("replica-c", lease_duration=30.0)
    wait_holder(mesh_installed, {"replica-c"}, timeout=40)
    second = start_operator("replica-d", lease_duration=30.0)
    first.stop()
    # Far sooner than the 30 s lease duration: the Lease was released on SIGTERM.
    wait_holder(mesh_installed, {"replica-d"}, timeout=15)
    assert second.process.poll() is None
