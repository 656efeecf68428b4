"""Building blocks of operator scenarios: kubectl writes, workload registration (as local
workloads do it), TrafficSplits, and waiting for what proxies and status report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.operator import cabundles
from smimesh.proxyconfig import snapshots
from smimesh.testing import clusters, meshes
from smimesh.testing.meshes import OperatorProcess
from tests.operator.proxies import TestProxy


def kubectl(cluster: clusters.Cluster, *args: str, input: str | None = None) -> str:
    result = cluster.kubectl(*args, input=input)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def apply(cluster: clusters.Cluster, *objects: dict[str, Any]) -> None:
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def service(namespace: str, name: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]},
    }


def workload(
    cluster: clusters.Cluster,
    namespace: str,
    pod: str,
    service_account: str,
    ip: str,
    services: list[str],
) -> None:
    """A meshed pod (registered, as local workloads are) behind the given Services."""
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": namespace},
        },
        pod_object(namespace, pod, service_account),
    )
    status = {"status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}
    kubectl(
        cluster,
        "-n",
        namespace,
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    for name in services:
        apply(cluster, endpoint_slice(namespace, name, pod, ip))


def pod_object(namespace: str, pod: str, service_account: str) -> dict[str, Any]:
    """A meshed (injected) Pod, without status."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "namespace": namespace,
            "annotations": {"smimesh.dev/injected": "true"},
        },
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "app"}],
        },
    }


def endpoint_slice(namespace: str, service: str, pod: str, ip: str) -> dict[str, Any]:
    """A slice of `service` with one ready endpoint: `pod` at `ip`, port 8080."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{pod}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace},
            }
        ],
    }


def split(namespace: str, name: str, root: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "service": root,
            "backends": [{"service": s, "weight": w} for s, w in weights.items()],
        },
    }


def patch_weights(
    cluster: clusters.Cluster, namespace: str, name: str, weights: dict[str, int]
) -> None:
    """Argo Rollouts' write: a merge patch of a v1alpha4 split's spec.backends."""
    backends = [{"service": service, "weight": weight} for service, weight in weights.items()]
    kubectl(
        cluster, "-n", namespace, "patch", "trafficsplits.v1alpha4.split.smi-spec.io", name,
        "--type=merge", "-p", json.dumps({"spec": {"backends": backends}}),
    )  # fmt: skip


def route_weights(config: snapshots.ProxyConfig, root: str) -> dict[str, int]:
    """Weights of the split on `root` in the proxy's own namespace (tests share a cluster)."""
    for item in config.outbound:
        if (item.service.namespace, item.service.name) == (
            config.proxy.namespace,
            root,
        ) and item.routes:
            return {b.service.name: b.weight for b in item.routes[0].backends}
    return {}


def next_with(
    proxy: TestProxy, predicate: Callable[[snapshots.ProxyConfig], bool], timeout: float = 30
) -> snapshots.ProxyConfig:
    deadline = time.monotonic() + timeout
    while True:
        config = proxy.next(max(0.1, deadline - time.monotonic()))
        if predicate(config):
            return config


def conditions(cluster: clusters.Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    raw = json.loads(
        kubectl(
            cluster,
            "-n",
            namespace,
            "get",
            "trafficsplits.v1alpha4.split.smi-spec.io",
            name,
            "-o",
            "json",
        )
    )
    return {c["type"]: c for c in (raw.get("status") or {}).get("conditions") or []}


def wait_conditions(
    cluster: clusters.Cluster,
    namespace: str,
    name: str,
    expected: dict[str, str],
    *,
    generation: int | None = None,
    timeout: float = 30,
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def reached() -> dict[str, dict[str, Any]] | None:
        nonlocal found
        found = conditions(cluster, namespace, name)
        statuses = {t: c["status"] for t, c in found.items() if t in expected}
        fresh = generation is None or all(
            c.get("observedGeneration") == generation for c in found.values()
        )
        return found if statuses == expected and fresh else None

    reaching = waiting.eventually_sync(
        reached, timeout=timeout, message=lambda: f"conditions of {name}: {found}", interval=0.2
    )
    assert reaching is not None
    return reaching


def connect(
    cluster: clusters.Cluster,
    operator: OperatorProcess,
    namespace: str,
    pod: str = "client-1",
    service_account: str = "client",
    **kwargs: Any,
) -> TestProxy:
    token = kwargs.pop("token", None) or cluster.token(
        namespace, service_account, audience="smimesh", pod=pod
    )
    return TestProxy(
        operator.grpc_address,
        trust_bundle=meshes.trust_bundle(cluster),
        namespace=namespace,
        service_account=service_account,
        pod=pod,
        token=token,
        **kwargs,
    )


def forget_webhooks(cluster: clusters.Cluster) -> None:
    """Undo what local-mode operators (`--webhook-url`) did, once they have stopped.

    Admission webhooks exist only while a test's operator serves them: left pointing at a
    stopped operator, the injector (failurePolicy Fail) would refuse every pod in labelled
    namespaces for every later test. And the CRDs' conversion goes back to the Service
    reference, or applying the manifests again would fail (URL and Service both set).
    """
    removed = cluster.kubectl(
        "delete",
        "--ignore-not-found",
        "mutatingwebhookconfiguration/smimesh-injector",
        "validatingwebhookconfiguration/smimesh-validator",
    )
    assert removed.returncode == 0, removed.stderr
    with cluster.api_client() as api:
        cabundles.leave_local_mode(api, names.MESH_NAMESPACE)
