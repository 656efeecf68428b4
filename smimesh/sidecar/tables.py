"""Route tables: everything the hot path looks up, built once from a `ProxyConfig`.

`build` runs off the hot path when a snapshot arrives (from `loading` or `discovery`, through
`running.Sidecar.apply`); the result is immutable and replaced as one reference, so each request
or connection keeps the `Table` it began with. Feeds `routes` (outbound lookups), `authorizing`
(inbound ports) and `clusters` (endpoint state, through the shared `clusters.Registry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from smimesh.proxyconfig import inbound, outbound, snapshots
from smimesh.sidecar import clusters, endpoints, matching, routes, settings


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    port: inbound.InboundPort
    rules: tuple[tuple[frozenset[str], tuple[matching.CompiledMatch, ...], str], ...]
    app: clusters.Cluster
    plaintext_ok: bool


@dataclass(frozen=True)
class Table:
    config: snapshots.ProxyConfig
    by_host: dict[tuple[str, int], routes.Logical]
    by_address: dict[tuple[str, int], routes.Logical]
    by_service: dict[tuple[str, int], routes.Logical]
    local: dict[int, routes.Logical]
    inbound: dict[int, InboundPolicy]

    @property
    def version(self) -> str:
        return self.config.version

    def by_authority(self, authority: str, default_port: int) -> routes.Logical | None:
        """Host header or :authority (`name[:port]`, any of the Service's hostnames)."""
        host, port = split_authority(authority, default_port)
        found = self.by_host.get((host, port))
        if found is None and port == default_port:
            # A Service with one port answers on it whatever port the caller implied.
            found = self.by_host.get((host, 0))
        return found


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """`host[:port]` or `[v6]:port` -> (lower-case host, port)."""
    text = authority.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    return host.rstrip("."), int(port) if port.isdigit() else default_port


def _backend_port(
    service: outbound.OutboundService, wanted: outbound.ServicePort
) -> outbound.ServicePort | None:
    for port in service.ports:
        if port.port == wanted.port:
            return port
    for port in service.ports:
        if wanted.name and port.name == wanted.name:
            return port
    return service.ports[0] if len(service.ports) == 1 else None


def _cluster(
    registry: clusters.Registry, service: outbound.OutboundService, port: outbound.ServicePort
) -> clusters.Cluster:
    ref = service.service
    return registry.cluster(
        f"{ref}:{port.port}",
        namespace=ref.namespace,
        service=ref.name,
        addresses=[
            endpoints.Address(ep.address, port.target_port, ep.identity, ep.meshed, ep.pod)
            for ep in service.endpoints
        ],
        http2=port.protocol == "http2",
    )


def build(
    config: snapshots.ProxyConfig,
    registry: clusters.Registry,
    sidecar: settings.SidecarSettings,
) -> Table:
    """Compile a snapshot; raises (ValueError, re2.error) if it cannot be applied."""
    registry.begin()
    services = {str(s.service): s for s in config.outbound}
    by_host: dict[tuple[str, int], routes.Logical] = {}
    by_address: dict[tuple[str, int], routes.Logical] = {}
    by_service: dict[tuple[str, int], routes.Logical] = {}
    for service in config.outbound:
        for port in service.ports:
            splits = []
            for route in service.routes:
                backends = []
                for weighted in route.backends:
                    target = services.get(str(weighted.service))
                    backend_port = _backend_port(target, port) if target is not None else None
                    cluster = (
                        _cluster(registry, target, backend_port)
                        if target is not None and backend_port is not None
                        else None
                    )
                    backends.append(routes.Backend(str(weighted.service), weighted.weight, cluster))
                splits.append(
                    routes.Split.build(
                        route.split, matching.compile_all(route.matches), tuple(backends)
                    )
                )
            logical = routes.Logical(
                service, port, _cluster(registry, service, port), tuple(splits)
            )
            by_service[(str(service.service), port.port)] = logical
            for hostname in service.hostnames:
                by_host[(hostname.lower().rstrip("."), port.port)] = logical
                if len(service.ports) == 1:
                    by_host[(hostname.lower().rstrip("."), 0)] = logical
            if service.cluster_ip:
                by_address[(service.cluster_ip, port.port)] = logical
    local = {}
    for item in sidecar.local_services:
        found = by_service.get((str(item.service), item.port))
        if found is not None:
            local[item.local_port] = found
    policies = {}
    for inbound_port in config.inbound:
        app = registry.cluster(
            f"inbound:{inbound_port.port}",
            namespace=config.proxy.namespace,
            service="local-app",
            addresses=[endpoints.Address(sidecar.app_host, inbound_port.app_port)],
            http2=inbound_port.protocol == "http2",
        )
        rules = tuple(
            (frozenset(rule.sources), matching.compile_all(rule.http_matches), rule.target)
            for rule in inbound_port.rules
        )
        plaintext_ok = inbound_port.permissive or config.settings.mtls != "strict"
        policies[inbound_port.port] = InboundPolicy(inbound_port, rules, app, plaintext_ok)
    return Table(config, by_host, by_address, by_service, local, policies)
