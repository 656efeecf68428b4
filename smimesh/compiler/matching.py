"""Route objects (HTTPRouteGroup, TCPRoute) looked up by name and turned into the matches
the proxies evaluate.

Used by `splits` (TrafficSplit `matches`) and `targets` (TrafficTarget `rules`); reads hub
objects from `state.MeshState`; yields `proxyconfig.matches.HttpMatch` and port sets. Pure.
"""

from __future__ import annotations

from collections.abc import Collection

from smimesh.compiler import state
from smimesh.proxyconfig import matches
from smimesh.smi import objects, specs

ALL_PORTS: frozenset[int] = frozenset()
"""A TCPRoute match with `ports: []`: every port."""


def created(item: objects.Resource) -> str:
    """The object's creationTimestamp (RFC 3339 sorts as text), '' if unknown."""
    extra = item.metadata.model_extra or {}
    value = extra.get("creationTimestamp")
    return str(value) if value else ""


def http_match(match: specs.HTTPMatch) -> matches.HttpMatch:
    headers = sorted((name.lower(), value) for name, value in specs.header_pairs(match.headers))
    return matches.HttpMatch(
        name=match.name,
        path_regex=match.path_regex,
        methods=tuple(sorted(set(match.methods or ()))),
        headers=tuple(headers),
    )


class RouteGroups:
    """Index of a mesh's route objects by (namespace, name); `incremental` keeps one and
    updates it (`put`, `drop`)."""

    def __init__(self, mesh: state.MeshState) -> None:
        self.http: dict[tuple[str, str], specs.HTTPRouteGroup] = {}
        self.tcp: dict[tuple[str, str], specs.TCPRoute] = {}
        routes: list[specs.HTTPRouteGroup | specs.TCPRoute] = [*mesh.route_groups, *mesh.tcp_routes]
        for route in routes:
            self.put(route)

    def put(self, route: specs.HTTPRouteGroup | specs.TCPRoute) -> None:
        key = (route.metadata.namespace or "", route.metadata.name or "")
        if isinstance(route, specs.HTTPRouteGroup):
            self.http[key] = route
        else:
            self.tcp[key] = route

    def drop(self, route: specs.HTTPRouteGroup | specs.TCPRoute) -> None:
        key = (route.metadata.namespace or "", route.metadata.name or "")
        if isinstance(route, specs.HTTPRouteGroup):
            self.http.pop(key, None)
        else:
            self.tcp.pop(key, None)

    def http_matches(
        self, namespace: str, name: str, *, names: Collection[str] | None
    ) -> tuple[matches.HttpMatch, ...] | None:
        """The group's matches (only those in `names` if given); None if the group is absent."""
        group = self.http.get((namespace, name))
        if group is None:
            return None
        chosen = [m for m in group.spec.matches if names is None or m.name in names]
        return tuple(http_match(m) for m in chosen)

    def tcp_ports(self, namespace: str, name: str) -> frozenset[int] | None:
        """The route's ports (`ALL_PORTS` for `[]`); None if the route is absent."""
        route = self.tcp.get((namespace, name))
        if route is None:
            return None
        return frozenset(route.spec.matches.ports)
