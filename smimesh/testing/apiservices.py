"""Routes the aggregator to an operator running as a local process: an EndpointSlice for the
operator Service whose one endpoint is the operator's own HTTPS address, as the
EndpointSlice controller would write it for the operator's pod.

The kube-apiserver started with `--enable-aggregator-routing=true` (there is no kube-proxy)
resolves an APIService's Service to one ready endpoint of its EndpointSlices, matched by the
Service port's *name*. The apiserver refuses loopback addresses in EndpointSlices, so the
operator listens on an address of the local range (`addresses`), as local workloads do.
Used by `meshes.LocalMesh`; `wait_available` waits for the aggregator to agree.
"""

from __future__ import annotations

import json

from kubernetes import client

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.testing import clusters, registering

SLICE = f"{names.OPERATOR_SERVICE}-local"
PORT_NAME = "https-webhooks"
"""The operator Service's port 443 (`smimesh/manifests/base/operator.yaml`), the APIService's
port."""
APISERVICE = "v1alpha1.metrics.smi-spec.io"


class ApiServiceError(RuntimeError):
    """The aggregated API did not become available; the message has the aggregator's reason."""


def _slice(address: str, port: int, namespace: str) -> client.V1EndpointSlice:
    return client.V1EndpointSlice(
        metadata=client.V1ObjectMeta(
            name=SLICE,
            namespace=namespace,
            labels={
                "kubernetes.io/service-name": names.OPERATOR_SERVICE,
                "endpointslice.kubernetes.io/managed-by": registering.MANAGED_BY,
            },
        ),
        address_type="IPv4",
        ports=[client.DiscoveryV1EndpointPort(name=PORT_NAME, port=port, protocol="TCP")],
        endpoints=[
            client.V1Endpoint(
                addresses=[address], conditions=client.V1EndpointConditions(ready=True)
            )
        ],
    )


def register(api: client.ApiClient, address: str, *, namespace: str = names.MESH_NAMESPACE) -> None:
    """Make `address` ("ip:port", the operator's `--webhook-address`) the Service's endpoint."""
    host, _, port = address.rpartition(":")
    endpoint_slice = _slice(host, int(port), namespace)
    discovery = client.DiscoveryV1Api(api)
    try:
        discovery.create_namespaced_endpoint_slice(namespace, endpoint_slice)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        discovery.replace_namespaced_endpoint_slice(SLICE, namespace, endpoint_slice)


def unregister(api: client.ApiClient, *, namespace: str = names.MESH_NAMESPACE) -> None:
    try:
        client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(SLICE, namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def wait_available(cluster: clusters.Cluster, *, timeout: float = 30.0) -> None:
    """Until the aggregator reports the APIService Available (it probes discovery itself)."""
    last = "not read yet"

    def available() -> bool:
        nonlocal last
        found = cluster.kubectl("get", "apiservice", APISERVICE, "-o", "json")
        if found.returncode != 0:
            last = found.stderr.strip()
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions") or []
        for condition in conditions:
            if condition.get("type") == "Available":
                if condition.get("status") == "True":
                    return True
                last = f"{condition.get('reason')}: {condition.get('message')}"
        return False

    waiting.eventually_sync(
        available,
        timeout=timeout,
        message=lambda: f"{APISERVICE} not Available within {timeout:.0f}s ({last})",
        interval=0.3,
        error=ApiServiceError,
    )
