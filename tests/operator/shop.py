"""A small mesh held in an in-process index, for the publisher's and the config server's
tests: a client pod, a server pod behind Service `v1`, and a TrafficSplit of `root` over
v1/v2 (object builders from `scenarios`)."""

from __future__ import annotations

from typing import Any

from smimesh.operator import indexing, publishing
from smimesh.proxyconfig import refs, snapshots
from tests.operator import scenarios

NS = "shop"


def service(name: str) -> dict[str, Any]:
    return scenarios.service(NS, name)


def pod(name: str, service_account: str, ip: str) -> dict[str, Any]:
    status = {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}
    return scenarios.pod_object(NS, name, service_account) | {"status": status}


def endpoint_slice(service: str, pod: str, ip: str) -> dict[str, Any]:
    return scenarios.endpoint_slice(NS, service, pod, ip)


def split(weights: dict[str, int]) -> dict[str, Any]:
    return scenarios.split(NS, "canary", "root", weights)


CLIENT = refs.ProxyRef(namespace=NS, service_account="client", pod="client-1")
SERVER = refs.ProxyRef(namespace=NS, service_account="server", pod="server-1")


def index() -> indexing.MeshIndex:
    """A client pod, a server pod behind Service `v1`, and a split of `root` over v1/v2."""
    index = indexing.MeshIndex()
    for raw in [
        pod("client-1", "client", "10.0.0.2"),
        pod("server-1", "server", "10.0.0.3"),
        *(service(name) for name in ["root", "v1", "v2", "other"]),
        endpoint_slice("v1", "server-1", "10.0.0.3"),
        split({"v1": 90, "v2": 10}),
    ]:
        index.apply(raw)
    return index


def desired(publisher: publishing.Publisher, proxy: refs.ProxyRef) -> snapshots.ProxyConfig:
    config = publisher.desired(proxy)
    assert config is not None, f"no config for {proxy}"
    return config
