"""Local workloads in network namespaces of their own: apps with no proxy settings call
Services by name, iptables hands every connection to the sidecars, which speak mTLS, enforce
TrafficTargets by the caller's certificate identity and honour TrafficSplits. Real network
namespaces and iptables, a real operator and kube-apiserver."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smimesh._aio import waiting
from smimesh.conformance import objects, stages
from smimesh.testing import clusters, meshes, workloads
from tests.e2e import support as e2e
from tests.testing import support

pytestmark = pytest.mark.cluster

# 600 requests: each share is off by more than 0.08 with odds below 1e-4 (4.9 standard
# deviations of the binomial at p=0.2, 4.0 at p=0.5).
REQUESTS = 600
TOLERANCE = 0.08


@pytest.fixture
def mesh(cluster: clusters.Cluster) -> Iterator[meshes.LocalMesh]:
    support.require_netns()
    with e2e.local_mesh(cluster) as local:
        yield local


def call(source: workloads.LocalWorkload, url: str, *, count: int = 1) -> dict[str, int]:
    """`source`'s app makes the request itself (no proxy), `count` times; codes seen."""
    order = {"url": url, "count": count, "concurrency": 8}
    response = httpx.post(f"{source.app_url(8080)}/call", json=order, timeout=120)
    response.raise_for_status()
    return dict(response.json()["codes"])


def received(workload: workloads.LocalWorkload, caller: workloads.LocalWorkload) -> int:
    metrics = httpx.get(f"{workload.app_url(8080)}/metrics", timeout=10).json()
    return int(metrics["received"].get(f"{caller.spec.namespace}/{caller.spec.name}", 0))


def curl_inside(workload: workloads.LocalWorkload, url: str) -> tuple[int, str]:
    """curl from inside the workload's namespace (names from its hosts file, no proxy)."""
    assert workload.netns is not None
    result = subprocess.run(
        workload.netns.exec("curl", "-s", "-m", "10", "--noproxy", "*", "-w", "\n%{http_code}",
                            url),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body


def app_environment(workload: workloads.LocalWorkload) -> dict[str, str]:
    raw = Path(f"/proc/{workload.processes['app'].pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(): value.decode() for key, _, value in pairs}


def samples(workload: workloads.LocalWorkload, metric: str) -> list[str]:
    text = httpx.get(f"{workload.admin_url}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith(metric)]


def eventually(source: workloads.LocalWorkload, url: str, codes: dict[str, int]) -> None:
    """Until one call from `source` to `url` sees `codes` (configs take a moment)."""
    seen: dict[str, int] = {}

    def answered() -> bool:
        nonlocal seen
        seen = call(source, url)
        return seen == codes

    waiting.eventually_sync(
        answered,
        timeout=20,
        message=lambda: f"{url} answered {seen}, never {codes}",
        interval=0.3,
        error=AssertionError,
    )


def test_apps_without_proxy_settings_reach_services_by_name_with_mtls_identity(
    mesh: meshes.LocalMesh,
) -> None:
    namespace = mesh.namespace(f"tp-{uuid.uuid4().hex[:6]}", access="strict")
    mesh.service(namespace, "b", {"app": "b"})
    a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"}, isolation="netns")
    c = mesh.workload(namespace, "c-1", "service-c", {"app": "c"}, isolation="netns")
    b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"}, isolation="netns")
    assert a.address.startswith("10.78.")
    assert not {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} & set(app_environment(a))
    url = f"http://b.{namespace}.svc.cluster.local/echo"

    # Deny by default, and b's sidecar names the caller by its certificate: a's identity.
    assert call(a, url) == {"403": 1}
    code, body = curl_inside(a, url)
    assert code == 403
    assert f"no TrafficTarget allows spiffe://cluster.local/ns/{namespace}/sa/service-a" in body

    e2e.allow_a_to_b(mesh, namespace)
    eventually(a, url, {"200": 1})
    assert call(a, url, count=10) == {"200": 10}
    assert call(c, url) == {"403": 1}  # another identity stays out
    assert received(b, a) == 11
    assert received(b, c) == 0

    # Both sidecars saw it: a's transparently intercepted outbound, b's inbound from a-1.
    client_side = samples(a, "osm_request_total")
    assert any('destination_pod="b-1"' in line and 'side="client"' in line for line in client_side)
    assert any(f'cluster="{namespace}/b:80"' in line for line in samples(a, "smimesh_route"))
    server_side = samples(b, "osm_request_total")
    assert any(
        'source_pod="a-1"' in line and 'response_code="200",side="server"' in line
        for line in server_side
    )

    # Plaintext straight to b's address (skipping a's sidecar) is refused: mTLS is strict.
    # Sent from the host, which b lets reach only its app's own port and admin port.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{b.address}:8080/echo", timeout=5)


def test_a_traffic_split_between_namespaced_workloads_is_honoured(
    mesh: meshes.LocalMesh,
) -> None:
    namespace = mesh.namespace(f"ts-{uuid.uuid4().hex[:6]}", access="permissive")
    mesh.service(namespace, "b", {"app": "b"})
    mesh.service(namespace, "b-v1", {"app": "b", "version": "v1"})
    mesh.service(namespace, "b-v2", {"app": "b", "version": "v2"})
    a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"}, isolation="netns")
    v1 = mesh.workload(
        namespace, "b-v1", "service-b", {"app": "b", "version": "v1"}, isolation="netns"
    )
    v2 = mesh.workload(
        namespace, "b-v2", "service-b", {"app": "b", "version": "v2"}, isolation="netns"
    )
    split = objects.split("b", "b", {"b-v1": 80, "b-v2": 20})
    mesh.apply({**split, "metadata": {**split["metadata"], "namespace": namespace}})
    stages.wait_programmed(mesh.cluster, namespace, "trafficsplits.split.smi-spec.io", "b")

    before = {"v1": received(v1, a), "v2": received(v2, a)}
    codes = call(a, f"http://b.{namespace}.svc.cluster.local/echo", count=REQUESTS)
    assert codes == {"200": REQUESTS}
    got = {"v1": received(v1, a) - before["v1"], "v2": received(v2, a) - before["v2"]}
    assert sum(got.values()) == REQUESTS
    assert abs(got["v1"] / REQUESTS - 0.8) <= TOLERANCE, got
    assert abs(got["v2"] / REQUESTS - 0.2) <= TOLERANCE, got
