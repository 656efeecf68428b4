"""TrafficSplits -> weighted routes on their root Services, with findings for status.

Called by `compiling`; takes the hub TrafficSplits and HTTPRouteGroups of a `MeshState` and
the `services.ServiceIndex`; yields `proxyconfig.outbound.SplitRoute`s keyed by root Service.
Rules (DESIGN.md): the root may also be a backend; zero-weight backends stay; all-zero
weights send nothing (a warning); two splits on one root -> the oldest wins and the other
gets Accepted=False; a backend is resolved one level (to its own endpoints), never re-split,
so splits cannot loop.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from smimesh.compiler import findings, matching, services, state
from smimesh.proxyconfig import matches, outbound, refs
from smimesh.smi import split


@dataclass
class SplitRoutes:
    routes: dict[refs.ServiceRef, list[outbound.SplitRoute]] = field(default_factory=dict)
    findings: list[findings.Finding] = field(default_factory=list)


def _key(item: split.TrafficSplit) -> str:
    return f"{item.metadata.namespace}/{item.metadata.name}"


def _finding(
    item: split.TrafficSplit, condition: findings.ConditionType, reason: str, message: str
) -> findings.Finding:
    return findings.Finding(
        kind="TrafficSplit",
        namespace=item.metadata.namespace or "",
        name=item.metadata.name or "",
        condition=condition,
        status=False,
        reason=reason,
        message=message,
    )


def _root_name(service: str, namespace: str) -> str:
    """`spec.service` as written may be a name or a DNS name of a Service in the namespace."""
    parts = service.split(".")
    if len(parts) > 1 and parts[1] == namespace:
        return parts[0]
    return service


def root_of(item: split.TrafficSplit) -> refs.ServiceRef:
    """The root Service a TrafficSplit divides."""
    namespace = item.metadata.namespace or ""
    return refs.ServiceRef(namespace=namespace, name=_root_name(item.spec.service, namespace))


def backends_of(item: split.TrafficSplit) -> list[refs.ServiceRef]:
    """The Services a TrafficSplit names as backends."""
    namespace = item.metadata.namespace or ""
    return [refs.ServiceRef(namespace=namespace, name=b.service) for b in item.spec.backends]


def compile_splits(mesh: state.MeshState, index: services.ServiceIndex) -> SplitRoutes:
    result = SplitRoutes()
    by_root: dict[refs.ServiceRef, list[split.TrafficSplit]] = defaultdict(list)
    for item in mesh.splits:
        by_root[root_of(item)].append(item)
    groups = matching.RouteGroups(mesh)
    for root in sorted(by_root, key=str):
        route, found = compile_root(root, by_root[root], index, groups)
        result.findings.extend(found)
        if route is not None:
            result.routes[root] = [route]
    return result


def compile_root(
    root: refs.ServiceRef,
    candidates: list[split.TrafficSplit],
    index: services.ServiceIndex,
    groups: matching.RouteGroups,
) -> tuple[outbound.SplitRoute | None, list[findings.Finding]]:
    """The route of the splits on one root (the oldest wins), and their findings."""
    result = SplitRoutes()
    candidates = sorted(candidates, key=lambda s: (matching.created(s), _key(s)))
    winner, losers = candidates[0], candidates[1:]
    for loser in losers:
        result.findings.append(
            _finding(
                loser,
                "Accepted",
                "Conflict",
                f"TrafficSplit {_key(winner)} is older and already splits service "
                f"{root.name}; only one split per root service applies",
            )
        )
    if root not in index.services:
        result.findings.append(
            _finding(winner, "ResolvedRefs", "RootNotFound", f"root service {root.name} not found")
        )
        return None, result.findings
    return _route(winner, root, index, groups, result), result.findings


def _route(
    item: split.TrafficSplit,
    root: refs.ServiceRef,
    index: services.ServiceIndex,
    groups: matching.RouteGroups,
    result: SplitRoutes,
) -> outbound.SplitRoute | None:
    backends: list[outbound.WeightedBackend] = []
    missing: list[str] = []
    for backend in sorted(item.spec.backends, key=lambda b: b.service):
        ref = refs.ServiceRef(namespace=root.namespace, name=backend.service)
        if ref not in index.services:
            missing.append(backend.service)
            continue
        backends.append(outbound.WeightedBackend(service=ref, weight=backend.weight))
    if missing:
        result.findings.append(
            _finding(
                item,
                "ResolvedRefs",
                "BackendNotFound",
                f"backend service(s) not found: {', '.join(missing)}; they get no traffic",
            )
        )
    if not any(backend.weight for backend in backends):
        result.findings.append(
            _finding(
                item,
                "Accepted",
                "AllWeightsZero",
                "every backend weight is 0 (or no backend exists): requests to "
                f"{root.name} get no backend and fail",
            )
        )
    route_matches: list[matches.HttpMatch] = []
    for match in item.spec.matches or []:
        found = groups.http_matches(root.namespace, match.name, names=None)
        if found is None:
            result.findings.append(
                _finding(
                    item,
                    "ResolvedRefs",
                    "RouteGroupNotFound",
                    f"HTTPRouteGroup {match.name} not found; the split applies to no request",
                )
            )
            return None
        route_matches.extend(found)
    return outbound.SplitRoute(
        split=_key(item), matches=tuple(route_matches), backends=tuple(backends)
    )
