"""TrafficTargets -> inbound authorization of each meshed pod's ports, with findings.

Called by `compiling` per meshed pod; reads hub TrafficTargets, the route objects (through
`matching.RouteGroups`) and the pod's Services (through `services.ServiceIndex`); yields
`proxyconfig.inbound.InboundPort`s. Access is deny-by-default and additive in strict
namespaces, allow-all in permissive ones (DESIGN.md). A rule naming an HTTPRouteGroup allows
the matching requests on HTTP ports; a TCPRoute rule allows whole connections on its ports
(`[]` = all) for every protocol; a target whose rules name nothing that exists allows nothing.
"""

from __future__ import annotations

from collections import defaultdict

from smimesh.compiler import findings, matching, services, state
from smimesh.identity import errors
from smimesh.proxyconfig import inbound, matches
from smimesh.smi import access


def _key(target: access.TrafficTarget) -> str:
    return f"{target.metadata.namespace}/{target.metadata.name}"


class Authorizer:
    """Compiles inbound ports for pods of one MeshState; collects findings once per target."""

    def __init__(self, mesh: state.MeshState, index: services.ServiceIndex) -> None:
        self.mesh = mesh
        self.index = index
        self.groups = matching.RouteGroups(mesh)
        self.findings: list[findings.Finding] = []
        self._by_destination: dict[tuple[str, str], list[access.TrafficTarget]] = defaultdict(list)
        for target in sorted(mesh.targets, key=_key):
            namespace = target.metadata.namespace or ""
            destination = target.spec.destination
            if destination.kind != "ServiceAccount":
                self._report(target, "UnsupportedKind", f"destination kind {destination.kind}")
                continue
            dest_namespace = destination.namespace or namespace
            self._by_destination[(dest_namespace, destination.name)].append(target)
            self._check_refs(target)

    def _report(self, target: access.TrafficTarget, reason: str, message: str) -> None:
        self.findings.append(
            findings.Finding(
                kind="TrafficTarget",
                namespace=target.metadata.namespace or "",
                name=target.metadata.name or "",
                condition="ResolvedRefs",
                status=False,
                reason=reason,
                message=message,
            )
        )

    def _check_refs(self, target: access.TrafficTarget) -> None:
        namespace = target.metadata.namespace or ""
        for rule in target.spec.rules:
            known = self.groups.http if rule.kind == "HTTPRouteGroup" else self.groups.tcp
            if (namespace, rule.name) not in known:
                self._report(
                    target,
                    "RouteNotFound",
                    f"{rule.kind} {rule.name} not found; the rule allows nothing",
                )

    def _sources(self, target: access.TrafficTarget) -> tuple[str, ...]:
        namespace = target.metadata.namespace or ""
        trust_domain = self.mesh.settings.trust_domain
        sources = []
        for source in target.spec.sources:
            if source.kind != "ServiceAccount":
                continue
            try:
                sources.append(
                    services.spiffe_id(trust_domain, source.namespace or namespace, source.name)
                )
            except errors.InvalidIdentityError as exc:
                self._report(target, "InvalidSource", str(exc))
        return tuple(sorted(sources))

    def _rule_for_port(
        self, target: access.TrafficTarget, port: int, protocol: str
    ) -> inbound.InboundRule | None:
        """What `target` allows on `port`, or None if nothing."""
        namespace = target.metadata.namespace or ""
        http: list[matches.HttpMatch] = []
        whole_port = False
        for rule in target.spec.rules:
            if rule.kind == "TCPRoute":
                ports = self.groups.tcp_ports(namespace, rule.name)
                if ports is not None and (ports == matching.ALL_PORTS or port in ports):
                    whole_port = True
            elif protocol != "tcp":
                found = self.groups.http_matches(namespace, rule.name, names=rule.matches)
                http.extend(found or ())
        if not whole_port and not http:
            return None
        return inbound.InboundRule(
            target=_key(target),
            sources=self._sources(target),
            http_matches=() if whole_port else tuple(http),
        )

    def inbound_ports(self, pod: state.Pod) -> tuple[inbound.InboundPort, ...]:
        permissive = self.mesh.access_of(pod.namespace) == "permissive"
        ports: dict[int, inbound.InboundPort] = {}
        targets = self._by_destination.get((pod.namespace, pod.service_account), [])
        for service in self.index.services_of_pod(pod):
            for port in self.index.ports(service):
                if port.target_port in ports:
                    continue
                rules = [
                    rule
                    for target in targets
                    if (rule := self._rule_for_port(target, port.target_port, port.protocol))
                ]
                ports[port.target_port] = inbound.InboundPort(
                    port=port.target_port,
                    app_port=pod.app_ports.get(port.target_port, port.target_port),
                    protocol=port.protocol,
                    permissive=permissive,
                    rules=tuple(rules),
                )
        return tuple(ports[number] for number in sorted(ports))
