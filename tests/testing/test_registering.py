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
