"""Services as the mesh sees them: ports with their protocol, hostnames, and ready endpoints
with the identity each must present.

Called by `compiling` (outbound services for every proxy) and `targets` (which local ports a
pod serves). Reads `state.MeshState`; yields `proxyconfig.outbound` parts. Pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from smimesh.compiler import state
from smimesh.identity import spiffe
from smimesh.kube import names
from smimesh.proxyconfig import outbound, refs

_HTTP2_APP_PROTOCOLS = {"http2", "grpc", "h2c", "kubernetes.io/h2c", "grpc-web"}
_HTTP_APP_PROTOCOLS = {"http", "http1", "http/1.1"}
_TCP_APP_PROTOCOLS = {"tcp", "tls", "https", "kubernetes.io/ws", "kubernetes.io/wss"}


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE id (URI) a workload of this ServiceAccount holds."""
    return spiffe.for_service_account(trust_domain, namespace, service_account).uri


def protocol_of(service: state.Service, port: state.ServicePort) -> outbound.Protocol:
    """From `appProtocol`, else the port name's prefix (Istio/OSM style `http-web`, `grpc`),
    else the service's protocol annotation, else opaque TCP."""
    candidates = [port.app_protocol or "", port.name.split("-", 1)[0]]
    annotation = service.annotations.get(names.PROTOCOL_ANNOTATION)
    if annotation:
        candidates.append(annotation)
    for candidate in candidates:
        value = candidate.lower()
        if value in _HTTP2_APP_PROTOCOLS:
            return "http2"
        if value in _HTTP_APP_PROTOCOLS:
            return "http"
        if value in _TCP_APP_PROTOCOLS:
            return "tcp"
    return "tcp"


def hostnames(ref: refs.ServiceRef, *, cluster_domain: str = "cluster.local") -> tuple[str, ...]:
    """Every name a client in the mesh may use for the Service (short name last-resort)."""
    base = f"{ref.name}.{ref.namespace}"
    return (ref.name, base, f"{base}.svc", f"{base}.svc.{cluster_domain}")


class ServiceIndex:
    """Lookups over one MeshState: built once per compilation, or kept and updated object by
    object (`put`, `drop`) by `incremental`. Answers never depend on input order."""

    def __init__(self, mesh: state.MeshState) -> None:
        self.mesh = mesh
        self.services: dict[refs.ServiceRef, state.Service] = {}
        self.pods: dict[tuple[str, str], state.Pod] = {}
        self._slices: dict[refs.ServiceRef, dict[str, state.EndpointSlice]] = defaultdict(dict)
        # (namespace, pod) -> the Services whose endpoints name it, each with how many
        # endpoints do: built once, so that asking for every pod costs the endpoints once,
        # not pods x Services, and a dropped slice takes back exactly what it gave.
        self._backing: dict[tuple[str, str], dict[refs.ServiceRef, int]] = defaultdict(dict)
        objects: list[state.Service | state.EndpointSlice | state.Pod] = [
            *mesh.services,
            *mesh.endpoint_slices,
            *mesh.pods,
        ]
        for obj in objects:
            self.put(obj)

    def put(self, obj: state.Service | state.EndpointSlice | state.Pod) -> None:
        """Add or replace one object (drop the one it replaces first)."""
        if isinstance(obj, state.Service):
            self.services[obj.ref] = obj
        elif isinstance(obj, state.Pod):
            self.pods[(obj.namespace, obj.name)] = obj
        else:
            ref = slice_service(obj)
            self._slices[ref][obj.name] = obj
            for pod in slice_pods(obj):
                counts = self._backing[(ref.namespace, pod)]
                counts[ref] = counts.get(ref, 0) + 1

    def drop(self, obj: state.Service | state.EndpointSlice | state.Pod) -> None:
        """Forget an object given earlier to `put` (or to the constructor)."""
        if isinstance(obj, state.Service):
            self.services.pop(obj.ref, None)
        elif isinstance(obj, state.Pod):
            self.pods.pop((obj.namespace, obj.name), None)
        else:
            ref = slice_service(obj)
            self._slices[ref].pop(obj.name, None)
            if not self._slices[ref]:
                del self._slices[ref]
            for pod in slice_pods(obj):
                counts = self._backing[(ref.namespace, pod)]
                counts[ref] -= 1
                if not counts[ref]:
                    del counts[ref]
                if not counts:
                    del self._backing[(ref.namespace, pod)]

    def slices(self, ref: refs.ServiceRef) -> list[state.EndpointSlice]:
        """The Service's EndpointSlices, sorted by name."""
        found = self._slices.get(ref, {})
        return [found[name] for name in sorted(found)]

    def ready_pods(self, ref: refs.ServiceRef) -> list[tuple[str, state.Pod | None]]:
        """(address, pod) of the Service's ready endpoints, sorted by address."""
        found: dict[str, state.Pod | None] = {}
        for endpoint_slice in self.slices(ref):
            for endpoint in endpoint_slice.endpoints:
                if not endpoint.ready:
                    continue
                pod = self.pods.get((ref.namespace, endpoint.pod)) if endpoint.pod else None
                found[endpoint.address] = pod
        return sorted(found.items())

    def target_port(self, ref: refs.ServiceRef, port: state.ServicePort) -> int | None:
        """The numeric target port: as written, or resolved by name through the slices."""
        if isinstance(port.target_port, int):
            return port.target_port
        for endpoint_slice in self.slices(ref):
            for slice_port in endpoint_slice.ports:
                if slice_port.name == port.name:
                    return slice_port.port
        return None

    def ports(self, service: state.Service) -> tuple[outbound.ServicePort, ...]:
        resolved = []
        for port in service.ports:
            if port.transport != "TCP":
                continue
            target = self.target_port(service.ref, port)
            if target is None:
                continue
            resolved.append(
                outbound.ServicePort(
                    name=port.name,
                    port=port.port,
                    target_port=target,
                    protocol=protocol_of(service, port),
                )
            )
        return tuple(sorted(resolved, key=lambda p: p.port))

    def endpoints(self, ref: refs.ServiceRef) -> tuple[outbound.Endpoint, ...]:
        trust_domain = self.mesh.settings.trust_domain
        result = []
        for address, pod in self.ready_pods(ref):
            identity = spiffe_id(trust_domain, pod.namespace, pod.service_account) if pod else ""
            result.append(
                outbound.Endpoint(
                    address=address,
                    pod=pod.name if pod else "",
                    identity=identity,
                    meshed=bool(pod and pod.meshed),
                )
            )
        return tuple(result)

    def outbound_service(
        self, service: state.Service, routes: Iterable[outbound.SplitRoute] = ()
    ) -> outbound.OutboundService:
        return outbound.OutboundService(
            service=service.ref,
            cluster_ip=service.cluster_ip,
            hostnames=hostnames(service.ref),
            ports=self.ports(service),
            endpoints=self.endpoints(service.ref),
            routes=tuple(routes),
        )

    def backing(self, namespace: str, pod: str) -> list[refs.ServiceRef]:
        """The Services whose endpoints name the pod, whether they exist or not."""
        return list(self._backing.get((namespace, pod), {}))

    def services_of_pod(self, pod: state.Pod) -> list[state.Service]:
        """The Services whose endpoints include this pod, sorted."""
        refs_ = self.backing(pod.namespace, pod.name)
        found = [self.services[ref] for ref in refs_ if ref in self.services]
        return sorted(found, key=lambda service: str(service.ref))

    def served_ports(self, pod: state.Pod) -> list[outbound.ServicePort]:
        """The target ports the pod serves, sorted, each once: with the protocol of the first
        of its Services (by namespace/name) that has it."""
        ports: dict[int, outbound.ServicePort] = {}
        for service in self.services_of_pod(pod):
            for port in self.ports(service):
                ports.setdefault(port.target_port, port)
        return [ports[number] for number in sorted(ports)]


def slice_service(endpoint_slice: state.EndpointSlice) -> refs.ServiceRef:
    """The Service an EndpointSlice belongs to (its `kubernetes.io/service-name` label)."""
    return refs.ServiceRef(namespace=endpoint_slice.namespace, name=endpoint_slice.service)


def slice_pods(endpoint_slice: state.EndpointSlice) -> list[str]:
    """The pod names the slice's endpoints give, one per endpoint that names one."""
    return [endpoint.pod for endpoint in endpoint_slice.endpoints if endpoint.pod]
