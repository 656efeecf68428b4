"""Flagger's SMI routers, write for write, against a local mesh: the traffic share follows every
step of a canary analysis and the promotion, for each split version Flagger writes.

Which router writes which version (flagger/pkg/router/factory.go): `provider: osm` and
`smi:v1alpha2` write `split.smi-spec.io/v1alpha2` (weights are integers), `linkerd` and
`smi:v1alpha1` write v1alpha1 (weights are Quantities, serialised as strings: `"10"`),
`smi:v1alpha3` writes v1alpha3 (integers). Each provider is one parametrised run.

What Flagger does (flagger/pkg/router/kubernetes_default.go and smi*.go), and so
what this test does, in order:
- Initialize: Services `podinfo-canary` (selecting the target Deployment's pods, `app:
  podinfo`) and `podinfo-primary` (the primary Deployment's pods, `app: podinfo-primary`);
  Reconcile: the apex Service `podinfo`, selecting the primary's pods too, and a TrafficSplit
  `podinfo` in the router's version (Create) with backends canary 0, primary 100, in that
  order.
- Each analysis step, SetRoutes: Get the split in that version, set `spec.backends` (canary,
  primary) and Update (PUT) the whole object with the resourceVersion it read.
- Promotion: SetRoutes(primary 100, canary 0), then the canary Deployment is scaled to 0.
Not reproduced: the ownerReference to the Canary (no Flagger CRD here), Deployments (local
workloads stand in for their pods; Services exist before the pods so that the local
EndpointSlices see them) and the port numbers (9898 on the Services, the test app's 8080
behind them).

Tolerance: each step sends 400 requests from the load tester through the apex; every one
must succeed, a backend of weight 0 must get none, and others their weight's share +/- 0.10
(4 standard deviations of the binomial at p = 0.5, the widest case): `cases.splits`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from smimesh.conformance import stages
from smimesh.conformance.cases import splits
from smimesh.telemetry import trafficstats
from smimesh.testing import meshes, workloads

pytestmark = pytest.mark.cluster

GROUP, PLURAL = "split.smi-spec.io", "trafficsplits"
STEPS = (10, 20, 30, 40, 50)  # stepWeight 10, maxWeight 50
PORT = 9898


@dataclass(frozen=True)
class Router:
    """One of Flagger's SMI routers: the split version it reads and writes."""

    providers: str
    version: str

    def backends(self, primary: int, canary: int) -> list[dict[str, Any]]:
        """Canary first; v1alpha1 weights are Quantities (`resource.NewQuantity`), so strings."""
        weight: Any = str if self.version == "v1alpha1" else int
        return [
            {"service": "podinfo-canary", "weight": weight(canary)},
            {"service": "podinfo-primary", "weight": weight(primary)},
        ]

    def set_routes(self, api: client.ApiClient, namespace: str, primary: int, canary: int) -> None:
        """SetRoutes: Get, replace spec.backends, Update (PUT) with the resourceVersion read."""
        objects = client.CustomObjectsApi(api)
        split: Any = objects.get_namespaced_custom_object(
            GROUP, self.version, namespace, PLURAL, "podinfo"
        )
        assert split["apiVersion"] == f"{GROUP}/{self.version}"
        split["spec"]["backends"] = self.backends(primary, canary)
        objects.replace_namespaced_custom_object(
            GROUP, self.version, namespace, PLURAL, "podinfo", split
        )


ROUTERS = (
    Router("osm, smi:v1alpha2", "v1alpha2"),
    Router("linkerd, smi:v1alpha1", "v1alpha1"),
    Router("smi:v1alpha3", "v1alpha3"),
)


def expect_step(
    mesh: meshes.LocalMesh,
    namespace: str,
    tester: workloads.LocalWorkload,
    pods: dict[str, workloads.LocalWorkload],
    canary: int,
) -> None:
    """Once the split is Programmed, the apex's traffic splits as the weights say."""
    stages.wait_programmed(mesh.cluster, namespace, splits.RESOURCE, "podinfo")
    url = f"http://podinfo.{namespace}.svc.cluster.local:{PORT}/echo"
    wanted = {"canary": canary / 100, "primary": 1 - canary / 100}
    splits.expect_shares(splits.shares(tester, url, pods), {k: wanted[k] for k in pods})


@pytest.mark.parametrize("router", ROUTERS, ids=[r.version for r in ROUTERS])
def test_a_canary_moves_traffic_step_by_step_and_promotes(
    mesh: meshes.LocalMesh, router: Router
) -> None:
    namespace = mesh.namespace(f"flagger-{uuid.uuid4().hex[:6]}")  # permissive: no targets
    mesh.service(namespace, "podinfo-canary", {"app": "podinfo"}, port=PORT)
    mesh.service(namespace, "podinfo-primary", {"app": "podinfo-primary"}, port=PORT)
    mesh.service(namespace, "podinfo", {"app": "podinfo-primary"}, port=PORT)  # the apex
    primary_pod, canary_pod = "podinfo-primary-6f7c9d8b5c-k2x4p", "podinfo-8d9c7b6f5-q7w2z"
    pods = {
        "primary": mesh.workload(namespace, primary_pod, "podinfo", {"app": "podinfo-primary"}),
        "canary": mesh.workload(namespace, canary_pod, "podinfo", {"app": "podinfo"}),
    }
    tester = mesh.workload(
        namespace, "flagger-loadtester-5b4d8c7f9-m3n8v", "loadtester", {"app": "loadtester"}
    )
    api = mesh.cluster.api_client()

    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        router.version,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{router.version}",
            "kind": "TrafficSplit",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {"service": "podinfo", "backends": router.backends(100, 0)},
        },
    )
    expect_step(mesh, namespace, tester, pods, 0)

    for canary in STEPS:
        router.set_routes(api, namespace, 100 - canary, canary)
        expect_step(mesh, namespace, tester, pods, canary)

    # Flagger's `osm` checks query the canary's server-side osm_request_total by workload.
    seen = trafficstats.parse(httpx.get(f"{pods['canary'].admin_url}/metrics", timeout=10).text)
    served = sum(
        series.requests
        for key, series in seen.items()
        if key.side == "server"
        and (key.destination.namespace, key.destination.kind, key.destination.name)
        == (namespace, "Deployment", "podinfo")
    )
    assert served == stages.received(pods["canary"], tester)

    router.set_routes(api, namespace, 100, 0)  # promotion: all traffic back to the (new) primary
    expect_step(mesh, namespace, tester, pods, 0)
    pods.pop("canary").stop()  # the canary Deployment scaled to zero
    expect_step(mesh, namespace, tester, pods, 0)  # the primary alone, nothing fails

    # The mesh never writes spec: the split reads back exactly as the router last wrote it.
    stored = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, router.version, namespace, PLURAL, "podinfo"
    )
    assert stored["spec"]["backends"] == router.backends(100, 0)
