"""Registers a local workload in the apiserver the way the kubelet and the EndpointSlice
controller would: a ServiceAccount, a Pod with status Running/Ready and its own IP, and an
EndpointSlice per Service whose selector matches the pod's labels. Registering again makes
the slices follow Services whose selectors changed since (as the controller does on its own).

Used by `workloads` (start/stop) and so by `smimesh workload run`, the conformance suite and
`make demo`. The Pod carries a scheduling gate, so on a real cluster no scheduler or kubelet
ever runs it (or overwrites the status we write); the EndpointSlices are labelled as managed
by smimesh, so the cluster's EndpointSlice controller leaves them alone.

`adopt` and `mark_running` are the path for a Pod someone else created, which a local node
(`kubelet`) runs: it marks the Pod as adopted and Running at its IP, `register` then leaves
the Pod's status to the node, and the node reports Ready once the processes answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from smimesh.kube import names

GATE = f"{names.DOMAIN}/local-workload"
MANAGED_BY = "local-workloads.smimesh.dev"
ADOPTED_ANNOTATION = f"{names.DOMAIN}/local-node"
"""On a Pod created elsewhere and run by a local node (the value names the node)."""


@dataclass(frozen=True)
class Registration:
    namespace: str
    pod: str
    service_account: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    app_ports: dict[int, int] = field(default_factory=dict)
    """Port callers use (the Service's target port) -> where the app listens."""


def _slice_name(service: str, pod: str) -> str:
    name = f"{service}-{pod}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54]}-{digest}"


def _selects(service: client.V1Service, labels: dict[str, str]) -> bool:
    selector = service.spec.selector if service.spec else None
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def register(api: client.ApiClient, item: Registration) -> list[str]:
    """Create (or refresh) everything; returns the Services the pod was added to."""
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(
            item.namespace,
            client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=item.service_account)),
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    annotations = {names.INJECTED_ANNOTATION: "local"}
    if item.app_ports:
        annotations[names.APP_PORTS_ANNOTATION] = ",".join(
            f"{port}={app}" for port, app in sorted(item.app_ports.items())
        )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=item.pod, namespace=item.namespace, labels=item.labels, annotations=annotations
        ),
        spec=client.V1PodSpec(
            service_account_name=item.service_account,
            automount_service_account_token=False,
            scheduling_gates=[client.V1PodSchedulingGate(name=GATE)],
            containers=[client.V1Container(name="app", image="smimesh.dev/local-workload")],
        ),
    )
    try:
        core.create_namespaced_pod(item.namespace, pod)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        existing = core.read_namespaced_pod(item.pod, item.namespace)
        if ADOPTED_ANNOTATION in ((existing.metadata and existing.metadata.annotations) or {}):
            return _register_endpoints(api, item)  # its node reports the status
    _patch_status(core, item)
    return _register_endpoints(api, item)


def adopt(api: client.ApiClient, item: Registration, *, node: str) -> None:
    """Mark an existing Pod as run by local node `node`, with the app-ports annotation the
    mesh needs when the app listens elsewhere than the callers' port, and report it Running
    at its IP but not Ready (the mesh configures its proxy by that IP before it is ready)."""
    annotations = {ADOPTED_ANNOTATION: node}
    if item.app_ports:
        annotations[names.APP_PORTS_ANNOTATION] = ",".join(
            f"{port}={app}" for port, app in sorted(item.app_ports.items())
        )
    core = client.CoreV1Api(api)
    core.patch_namespaced_pod(item.pod, item.namespace, {"metadata": {"annotations": annotations}})
    _patch_status(core, item, ready=False)


def mark_running(api: client.ApiClient, item: Registration) -> list[str]:
    """Report an adopted Pod Running and Ready at its IP; returns the Services it joined."""
    _patch_status(client.CoreV1Api(api), item)
    return _register_endpoints(api, item)


def _patch_status(core: client.CoreV1Api, item: Registration, *, ready: bool = True) -> None:
    conditions = [
        {
            "type": kind,
            "status": "True" if ready or kind in ("PodScheduled", "Initialized") else "False",
        }
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    status: dict[str, Any] = {
        "status": {
            "phase": "Running",
            "podIP": item.ip,
            "podIPs": [{"ip": item.ip}],
            "conditions": conditions,
        }
    }
    core.patch_namespaced_pod_status(item.pod, item.namespace, status)


def _register_endpoints(api: client.ApiClient, item: Registration) -> list[str]:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    joined = []
    for service in core.list_namespaced_service(item.namespace).items:
        if not _selects(service, item.labels):
            continue
        name = str(service.metadata.name) if service.metadata else ""
        ports = [
            client.DiscoveryV1EndpointPort(
                name=port.name or "",
                port=port.target_port if isinstance(port.target_port, int) else port.port,
                protocol=port.protocol or "TCP",
            )
            for port in ((service.spec.ports if service.spec else None) or [])
        ]
        endpoint_slice = client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name=_slice_name(name, item.pod),
                namespace=item.namespace,
                labels={
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
                },
            ),
            address_type="IPv4",
            ports=ports,
            endpoints=[
                client.V1Endpoint(
                    addresses=[item.ip],
                    conditions=client.V1EndpointConditions(ready=True),
                    target_ref=client.V1ObjectReference(
                        kind="Pod", name=item.pod, namespace=item.namespace
                    ),
                )
            ],
        )
        try:
            discovery.create_namespaced_endpoint_slice(item.namespace, endpoint_slice)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            discovery.replace_namespaced_endpoint_slice(
                _slice_name(name, item.pod), item.namespace, endpoint_slice
            )
        joined.append(name)
    _delete_slices(api, item, keep=set(joined))
    return joined


def _delete_slices(api: client.ApiClient, item: Registration, *, keep: set[str]) -> None:
    """Delete the pod's EndpointSlices except those of the Services in `keep`."""
    discovery = client.DiscoveryV1Api(api)
    slices = discovery.list_namespaced_endpoint_slice(
        item.namespace, label_selector=f"endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
    )
    for endpoint_slice in slices.items:
        targets = [e.target_ref.name for e in endpoint_slice.endpoints or [] if e.target_ref]
        meta = endpoint_slice.metadata
        if targets != [item.pod] or meta is None:
            continue
        if (meta.labels or {}).get("kubernetes.io/service-name") in keep:
            continue
        try:
            discovery.delete_namespaced_endpoint_slice(str(meta.name), item.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def unregister(api: client.ApiClient, item: Registration) -> None:
    """Remove the pod's EndpointSlices and the Pod (the ServiceAccount stays: it is shared)."""
    _delete_slices(api, item, keep=set())
    core = client.CoreV1Api(api)
    try:
        core.delete_namespaced_pod(item.pod, item.namespace, grace_period_seconds=0)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
