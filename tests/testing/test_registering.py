"""Registering local workloads on the real apiserver: EndpointSlices follow the Services'
selectors when a workload registers again (Argo Rollouts switches selectors mid-rollout)."""

from __future__ import annotations

import pytest
from kubernetes import client

from smimesh.testing import registering

pytestmark = pytest.mark.cluster


def service(api: client.ApiClient, namespace: str, name: str, selector: dict[str, str]) -> None:
    client.CoreV1Api(api).create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(
                selector=selector, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )


def slices_of(api: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """Service -> the pods its EndpointSlices list."""
    found: dict[str, list[str]] = {}
    for item in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(namespace).items:
        name = (item.metadata.labels or {})["kubernetes.io/service-name"]
        found.setdefault(name, []).extend(
            e.target_ref.name for e in item.endpoints or [] if e.target_ref
        )
    return {name: sorted(pods) for name, pods in found.items()}


def test_registering_again_follows_changed_selectors(api: client.ApiClient, namespace: str) -> None:
    service(api, namespace, "stable", {"app": "web", "hash": "a"})
    service(api, namespace, "canary", {"app": "web", "hash": "a"})
    old = registering.Registration(
        namespace, "web-a", "web", "10.77.1.1", {"app": "web", "hash": "a"}
    )
    new = registering.Registration(
        namespace, "web-b", "web", "10.77.1.2", {"app": "web", "hash": "b"}
    )
    assert registering.register(api, old) == ["canary", "stable"]
    assert registering.register(api, new) == []
    assert slices_of(api, namespace) == {"canary": ["web-a"], "stable": ["web-a"]}

    client.CoreV1Api(api).patch_namespaced_service(
        "canary", namespace, {"spec": {"selector": {"hash": "b"}}}
    )
    assert registering.register(api, old) == ["stable"]
    assert registering.register(api, new) == ["canary"]
    assert slices_of(api, namespace) == {"canary": ["web-b"], "stable": ["web-a"]}

    registering.unregister(api, old)
    assert slices_of(api, namespace) == {"canary": ["web-b"]}


def test_an_adopted_pod_is_ready_only_when_its_node_says_so(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    service(api, namespace, "web", {"app": "web"})
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="web"))
    )
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="web-1", labels={"app": "web"}),
            spec=client.V1PodSpec(
                service_account_name="web",
                containers=[client.V1Container(name="app", image="registry.example/app:1")],
            ),
        ),
    )
    item = registering.Registration(
        namespace=namespace,
        pod="web-1",
        service_account="web",
        ip="10.77.9.9",
        labels={"app": "web"},
        app_ports={8080: 18080},
    )

    def ready() -> tuple[str | None, str | None]:
        pod = core.read_namespaced_pod("web-1", namespace)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod.status.pod_ip, conditions.get("Ready")

    registering.adopt(api, item, node="node-1")
    annotations = core.read_namespaced_pod("web-1", namespace).metadata.annotations
    assert annotations[registering.ADOPTED_ANNOTATION] == "node-1"
    assert annotations["smimesh.dev/app-ports"] == "8080=18080"
    assert "smimesh.dev/injected" not in annotations  # adopting does not mesh a pod
    assert ready() == ("10.77.9.9", "False")
    assert registering.register(api, item) == ["web"]  # what LocalWorkload.start does
    assert ready() == ("10.77.9.9", "False"), "register overrode the node's status"
    assert registering.mark_running(api, item) == ["web"]
    assert ready() == ("10.77.9.9", "True")
    assert slices_of(api, namespace) == {"web": ["web-1"]}
