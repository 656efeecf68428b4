"""The whole mesh on one machine: operator, sidecars with CA-issued identities, local
workloads calling each other through the mesh."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.testing import clusters, meshes
from tests.e2e import support

pytestmark = pytest.mark.cluster


def call(
    client: meshes.workloads.LocalWorkload, url: str, *, count: int = 1, method: str = "GET"
) -> dict[str, object]:
    response = httpx.post(
        f"{client.app_url(8080)}/call",
        json={"url": url, "method": method, "count": count},
        timeout=60,
    )
    response.raise_for_status()
    return dict(response.json())


def received(workload: meshes.workloads.LocalWorkload) -> dict[str, int]:
    metrics = httpx.get(f"{workload.app_url(8080)}/metrics", timeout=10).json()
    return dict(metrics["received"])


def _until_allowed(client: meshes.workloads.LocalWorkload, url: str) -> None:
    """Until one call from `client` to `url` answers 200 (the policy takes a moment); on
    failure, what the sidecar answers instead."""
    waiting.eventually_sync(
        lambda: call(client, url)["codes"] == {"200": 1},
        timeout=20,
        message=lambda: httpx.get(url, proxy=client.proxy_url, timeout=5).text,
        interval=0.3,
        error=AssertionError,
    )


def test_a_workload_calls_another_through_both_sidecars_with_mtls(mesh: meshes.LocalMesh) -> None:
    namespace = mesh.namespace(f"e2e-{uuid.uuid4().hex[:6]}")
    mesh.service(namespace, "b", {"app": "b"})
    a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"})
    b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"})

    result = call(a, f"http://b.{namespace}.svc.cluster.local/echo", count=5)
    assert result == {
        "url": f"http://b.{namespace}.svc.cluster.local/echo",
        "ok": 5,
        "failed": 0,
        "codes": {"200": 5},
    }
    assert received(b) == {f"{namespace}/a-1": 5, "unknown": 1}  # + our own /metrics read

    metrics = httpx.get(f"{b.admin_url}/metrics", timeout=5).text
    assert 'destination_pod="b-1",response_code="200",side="server"' in metrics
    assert 'source_pod="a-1"' in metrics


def test_strict_access_admits_callers_by_their_certificate_identity(mesh: meshes.LocalMesh) -> None:
    namespace = mesh.namespace(f"e2e-{uuid.uuid4().hex[:6]}", access="strict")
    mesh.service(namespace, "b", {"app": "b"})
    a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"})
    c = mesh.workload(namespace, "c-1", "service-c", {"app": "c"})
    b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"})
    url = f"http://b.{namespace}.svc.cluster.local/echo"
    assert call(a, url)["codes"] == {"403": 1}  # deny by default

    support.allow_a_to_b(mesh, namespace)
    _until_allowed(a, url)
    assert call(c, url)["codes"] == {"403": 1}  # another identity stays out
    assert received(b).get(f"{namespace}/c-1") is None


def test_certificates_renew_at_70_percent_without_failing_a_request(
    cluster: clusters.Cluster,
) -> None:
    # 12 s certificates: sidecars renew after ~8.4 s; traffic runs across two renewals.
    with meshes.LocalMesh(cluster, operator_args=("--workload-cert-lifetime", "12")) as mesh:
        namespace = mesh.namespace(f"e2e-{uuid.uuid4().hex[:6]}", access="strict")
        mesh.service(namespace, "b", {"app": "b"})
        a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"})
        b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"})
        support.allow_a_to_b(mesh, namespace)
        url = f"http://b.{namespace}.svc.cluster.local/echo"
        _until_allowed(a, url)
        total, until = 0, time.monotonic() + 20
        while time.monotonic() < until:
            result = call(a, url, count=20)
            assert result["failed"] == 0, result
            total += 20
        assert total >= 200
        for workload in (a, b):
            issued = workload.log("sidecar").count("certificate issued")
            assert issued >= 3, f"{workload.spec.name} renewed {issued - 1} times"
            # ... and not much more: about every 8.4 s over the test's 25-45 s.
            assert issued <= 8, f"{workload.spec.name} renewed {issued - 1} times"
