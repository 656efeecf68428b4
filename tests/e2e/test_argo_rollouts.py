"""Argo Rollouts' SMI traffic router, write for write, against a local mesh: the traffic share
follows every `setWeight` step of a canary Rollout, through its promotion.

What Argo Rollouts does (rollout/trafficrouting/smi/smi.go, rollout/service.go and
rollout/trafficrouting.go), and so what this test does, in order, for a Rollout
`rollout-example` with `stableService: stable-svc`, `canaryService: canary-svc` and
`trafficRouting.smi: {}` (no `rootService`, no `trafficSplitName`):
- The TrafficSplit is named after the Rollout, is `split.smi-spec.io/v1alpha1` (the default
  `--traffic-split-api-version`; v1alpha2 and v1alpha3 by that flag: each is one
  parametrised run) and its root is the stable Service, which is also a backend. In v1alpha1
  weights are Quantities, written as strings (`"5"`, `"95"`); in v1alpha2/3 integers.
  SetWeight creates it when it is missing (Create) and otherwise sends a JSON merge patch of
  `spec.backends` (canary, stable) in the same version, and only when something changed.
- A fully promoted Rollout has weight 0; both Services select the stable ReplicaSet's pods by
  their `rollouts-pod-template-hash`.
- A new revision: the canary ReplicaSet's pods start; once they are available, canary-svc's
  selector switches to their hash (a merge patch of the Service); then setWeight 5, 25, 50;
  after the last step the weight is 100; promotion switches stable-svc's selector to the new
  hash, and the now fully promoted Rollout goes back to weight 0; the old pods go away.
Not reproduced: the ownerReference to the Rollout (no Argo CRD here) and the ReplicaSets
(local workloads stand in for their pods; the EndpointSlice controller's work after a
selector change is `LocalWorkload.refresh_endpoints`).

Tolerance: each step sends 400 requests from a client through the root; every one must
succeed, a weight of 0 must get none, and others their share +/- 0.10 (4 standard
deviations of the binomial at p = 0.5, the widest case): `cases.splits`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.conformance import stages
from smimesh.conformance.cases import splits
from smimesh.testing import clusters, meshes, workloads

pytestmark = pytest.mark.cluster

GROUP, PLURAL = "split.smi-spec.io", "trafficsplits"
VERSIONS = ("v1alpha1", "v1alpha2", "v1alpha3")  # --traffic-split-api-version
NAME = "rollout-example"
HASH = "rollouts-pod-template-hash"
OLD, NEW = "6c8f9b7d5", "7d9f8c6b4"


def backends(version: str, canary: int) -> list[dict[str, Any]]:
    """`generateTrafficSplits`: canary first; v1alpha1 Quantities as strings, else integers."""
    weight: Any = str if version == "v1alpha1" else int
    return [
        {"service": "canary-svc", "weight": weight(canary)},
        {"service": "stable-svc", "weight": weight(100 - canary)},
    ]


def set_weight(cluster: clusters.Cluster, namespace: str, version: str, canary: int) -> None:
    """SetWeight on an existing split: a JSON merge patch of spec.backends in its version."""
    patch = json.dumps({"spec": {"backends": backends(version, canary)}})
    result = cluster.kubectl(
        "-n", namespace, "patch", f"{PLURAL}.{version}.{GROUP}", NAME, "--type=merge", "-p", patch
    )
    assert result.returncode == 0, result.stderr


def select(api: client.ApiClient, namespace: str, service: str, pod_hash: str) -> None:
    """Argo's switchServiceSelector: a merge patch of the Service's selector."""
    client.CoreV1Api(api).patch_namespaced_service(
        service, namespace, {"spec": {"selector": {HASH: pod_hash}}}
    )


def follow_selectors(
    namespace: str, caller: workloads.LocalWorkload, pods: dict[str, workloads.LocalWorkload]
) -> None:
    """The EndpointSlice controller's part after a selector change, then until the caller's
    sidecar holds the new endpoints (read from its admin /config): a split's Programmed
    condition says nothing about Endpoints changing underneath it."""
    wanted: dict[str, set[str]] = {"stable-svc": set(), "canary-svc": set()}
    for pod in pods.values():
        for service in pod.refresh_endpoints():
            wanted.setdefault(service, set()).add(pod.spec.name)
    held: dict[str, set[str]] = {}

    def followed() -> bool:
        nonlocal held
        config = httpx.get(f"{caller.admin_url}/config", timeout=5).json()
        held = {
            s["service"]["name"]: {e["pod"] for e in s["endpoints"]}
            for s in config["outbound"]
            if s["service"]["namespace"] == namespace
        }
        return all(held.get(name) == pods_ for name, pods_ in wanted.items())

    waiting.eventually_sync(
        followed,
        timeout=30,
        message=lambda: f"endpoints {held}, wanted {wanted}",
        interval=0.2,
        error=AssertionError,
    )


def expect_step(
    cluster: clusters.Cluster,
    namespace: str,
    caller: workloads.LocalWorkload,
    pods: dict[str, workloads.LocalWorkload],
    wanted: dict[str, float],
) -> None:
    """Once the split is Programmed, the root's traffic reaches the pods in these shares."""
    stages.wait_programmed(cluster, namespace, splits.RESOURCE, NAME)
    url = f"http://stable-svc.{namespace}.svc.cluster.local/echo"
    splits.expect_shares(splits.shares(caller, url, pods), wanted)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_canary_rollout_moves_traffic_by_merge_patches_of_the_split(
    mesh: meshes.LocalMesh, version: str
) -> None:
    namespace = mesh.namespace(f"argo-{uuid.uuid4().hex[:6]}")  # permissive: no targets
    for service in ("stable-svc", "canary-svc"):
        mesh.service(namespace, service, {"app": NAME, HASH: OLD})
    labels = {"app": NAME, HASH: OLD}
    pods = {"old": mesh.workload(namespace, f"{NAME}-{OLD}-x7k2p", NAME, labels)}
    caller = mesh.workload(namespace, "client-5f6d7c8b9-r4t6y", "client", {"app": "client"})
    api = mesh.cluster.api_client()

    # Fully promoted: weight 0, and the split does not exist yet, so SetWeight creates it.
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        version,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{version}",
            "kind": "TrafficSplit",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"service": "stable-svc", "backends": backends(version, 0)},
        },
    )
    expect_step(mesh.cluster, namespace, caller, pods, {"old": 1.0})

    # A new revision: its pods start, then canary-svc follows them.
    labels = {"app": NAME, HASH: NEW}
    pods["new"] = mesh.workload(namespace, f"{NAME}-{NEW}-b9m3q", NAME, labels)
    select(api, namespace, "canary-svc", NEW)
    follow_selectors(namespace, caller, pods)
    expect_step(mesh.cluster, namespace, caller, pods, {"old": 1.0, "new": 0.0})

    for canary in (5, 25, 50, 100):  # the setWeight steps, then 100 after the last one
        set_weight(mesh.cluster, namespace, version, canary)
        wanted = {"old": 1 - canary / 100, "new": canary / 100}
        expect_step(mesh.cluster, namespace, caller, pods, wanted)

    # Promotion: stable-svc (the root) follows the new pods, and the weight goes back to 0.
    select(api, namespace, "stable-svc", NEW)
    follow_selectors(namespace, caller, pods)
    set_weight(mesh.cluster, namespace, version, 0)
    expect_step(mesh.cluster, namespace, caller, pods, {"old": 0.0, "new": 1.0})
    pods.pop("old").stop()  # the old ReplicaSet scaled down
    expect_step(mesh.cluster, namespace, caller, pods, {"new": 1.0})

    stored = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, version, namespace, PLURAL, NAME
    )
    assert stored["spec"]["backends"] == backends(version, 0)  # the mesh never writes spec
