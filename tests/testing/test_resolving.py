"""A namespaced workload's hosts file follows the cluster's Services: one made after the
workload started resolves to its ClusterIP, a deleted one stops resolving (real namespace,
real apiserver)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.testing import addresses, isolating, resolving
from tests.testing import support

pytestmark = pytest.mark.cluster


@pytest.fixture
def space() -> Iterator[isolating.Namespace]:
    support.require_netns()
    made = isolating.Namespace(addresses.allocate_routed(), addresses.gateway())
    try:
        made.create()
        yield made
    finally:
        made.remove()


def _resolve(space: isolating.Namespace, name: str) -> str:
    found = subprocess.run(
        space.exec("getent", "hosts", name), capture_output=True, text=True, check=False
    )
    return found.stdout.split()[0] if found.returncode == 0 else ""


def _until_resolves(check: str, space: isolating.Namespace, name: str) -> None:
    seen = ""

    def resolved() -> bool:
        nonlocal seen
        seen = _resolve(space, name)
        return seen == check

    waiting.eventually_sync(
        resolved,
        timeout=10,
        message=lambda: f"{name} resolves to {seen!r}, never {check!r}",
        interval=0.1,
        error=AssertionError,
    )


def test_services_made_and_deleted_later_are_followed(
    api: client.ApiClient, namespace: str, space: isolating.Namespace
) -> None:
    resolver = resolving.Resolver(api, space, namespace=namespace, pod="web-1", interval=0.2)
    assert resolver.refresh()
    assert not resolver.refresh()  # nothing changed, nothing written
    assert _resolve(space, "kubernetes.default.svc.cluster.local") != ""
    resolver.start()
    try:
        core = client.CoreV1Api(api)
        made = core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="late"),
                spec=client.V1ServiceSpec(
                    selector={"app": "late"}, ports=[client.V1ServicePort(port=80)]
                ),
            ),
        )
        cluster_ip = str(made.spec.cluster_ip)
        _until_resolves(cluster_ip, space, f"late.{namespace}.svc.cluster.local")
        _until_resolves(cluster_ip, space, "late")  # the workload's own namespace: short name too
        core.delete_namespaced_service("late", namespace)
        _until_resolves("", space, f"late.{namespace}.svc.cluster.local")
    finally:
        resolver.stop()
