"""The compiler's entry point: `compile_mesh(state) -> Compilation`.

Called by the operator's publishing loop (and by golden tests) with a `state.MeshState`;
asks `services` for outbound services, `splits` for TrafficSplit routes and `targets` for
inbound authorization; returns one versioned `proxyconfig.snapshots.ProxyConfig` per meshed
pod. Pure and deterministic: equal input gives byte-equal output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smimesh.compiler import findings, services, splits, state, targets
from smimesh.proxyconfig import refs, snapshots


@dataclass(frozen=True)
class Compilation:
    """The compiler's output: a config per proxy, and findings per SMI object."""

    configs: Mapping[refs.ProxyRef, snapshots.ProxyConfig]
    findings: tuple[findings.Finding, ...]


def meshed_pods(mesh: state.MeshState) -> list[state.Pod]:
    """Pods that carry a proxy and have an address, sorted by namespace and name."""
    pods = [pod for pod in mesh.pods if pod.meshed and pod.ip]
    return sorted(pods, key=lambda pod: (pod.namespace, pod.name))


def compile_mesh(mesh: state.MeshState) -> Compilation:
    """One ProxyConfig per meshed pod, and what is wrong with the SMI objects."""
    index = services.ServiceIndex(mesh)
    routes = splits.compile_splits(mesh, index)
    outbound = tuple(
        index.outbound_service(service, routes.routes.get(service.ref, ()))
        for service in sorted(index.services.values(), key=lambda s: str(s.ref))
    )
    shared = snapshots.encode_outbound(outbound)  # once, not once per proxy
    authorizer = targets.Authorizer(mesh, index)
    configs: dict[refs.ProxyRef, snapshots.ProxyConfig] = {}
    for pod in meshed_pods(mesh):
        configs[pod.proxy] = snapshots.ProxyConfig.build(
            proxy=pod.proxy,
            identity=services.spiffe_id(
                mesh.settings.trust_domain, pod.namespace, pod.service_account
            ),
            settings=mesh.settings,
            outbound=outbound,
            inbound=authorizer.inbound_ports(pod),
            outbound_json=shared,
        )
    return Compilation(
        configs=configs, findings=findings.ordered([*routes.findings, *authorizer.findings])
    )
