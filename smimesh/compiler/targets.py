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
from smimesh.proxyconfig import inbound, matches, outbound
from smimesh.smi import access

_Finding = findings.Finding


def _key(target: access.TrafficTarget) -> str:
    return f"{target.metadata.namespace}/{target.metadata.name}"


def destination_of(target: access.TrafficTarget) -> tuple[str, str]:
    """(namespace, ServiceAccount) of the pods a TrafficTarget guards."""
    destination = target.spec.destination
    return (destination.namespace or target.metadata.namespace or "", destination.name)


class Authorizer:
    """Compiles inbound ports for pods of one MeshState; collects findings once per target.
    `incremental` keeps one and updates it target by target (`put`, `drop`)."""

    def __init__(
        self,
        mesh: state.MeshState,
        index: services.ServiceIndex,
        *,
        groups: matching.RouteGroups | None = None,
    ) -> None:
        self.mesh = mesh
        self.index = index
        self.groups = groups if groups is not None else matching.RouteGroups(mesh)
        self._findings: dict[str, list[_Finding]] = {}
        self._sources: dict[str, tuple[str, ...]] = {}
        self._by_destination: dict[tuple[str, str], dict[str, access.TrafficTarget]] = defaultdict(
            dict
        )
        for target in mesh.targets:
            self.put(target)

    @property
    def findings(self) -> list[_Finding]:
        return [found for key in sorted(self._findings) for found in self._findings[key]]

    def findings_of(self, target: access.TrafficTarget) -> list[_Finding]:
        return self._findings.get(_key(target), [])

    def put(self, target: access.TrafficTarget) -> None:
        """Add a target (drop the one it replaces first); its findings are checked now,
        against the route objects `groups` holds."""
        key = _key(target)
        self._findings[key] = []
        destination = target.spec.destination
        if destination.kind != "ServiceAccount":
            self._report(target, "UnsupportedKind", f"destination kind {destination.kind}")
            return
        self._by_destination[destination_of(target)][key] = target
        self._check_refs(target)
        self._sources[key] = self._sources_of(target)

    def drop(self, target: access.TrafficTarget) -> None:
        key = _key(target)
        self._findings.pop(key, None)
        self._sources.pop(key, None)
        held = self._by_destination.get(destination_of(target), {})
        held.pop(key, None)
        if not held:
            self._by_destination.pop(destination_of(target), None)

    def _report(self, target: access.TrafficTarget, reason: str, message: str) -> None:
        self._findings[_key(target)].append(
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

    def _sources_of(self, target: access.TrafficTarget) -> tuple[str, ...]:
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
            sources=self._sources[_key(target)],
            http_matches=() if whole_port else tuple(http),
        )

    def targets_of(self, namespace: str, service_account: str) -> list[access.TrafficTarget]:
        """The targets whose destination is the ServiceAccount, sorted by namespace/name."""
        held = self._by_destination.get((namespace, service_account), {})
        return [held[key] for key in sorted(held)]

    def policy(
        self, namespace: str, service_account: str, port: int, protocol: outbound.Protocol
    ) -> inbound.InboundPolicy:
        """Who may call `port` (speaking `protocol`) on pods of the ServiceAccount."""
        rules = [
            rule
            for target in self.targets_of(namespace, service_account)
            if (rule := self._rule_for_port(target, port, protocol))
        ]
        return inbound.InboundPolicy(
            port=port,
            protocol=protocol,
            permissive=self.mesh.access_of(namespace) == "permissive",
            rules=tuple(rules),
        )

    def inbound_ports(self, pod: state.Pod) -> tuple[inbound.InboundPort, ...]:
        return tuple(
            self.policy(pod.namespace, pod.service_account, port.target_port, port.protocol).bind(
                pod.app_port(port.target_port)
            )
            for port in self.index.served_ports(pod)
        )
