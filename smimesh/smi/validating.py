"""Semantic validation of SMI objects beyond their schema: field path + reason for each problem.

Called by `smimesh.cli.validating` after `documents` has typed the objects (and, later, by the
validating webhook and the operator's status reporting). Every object is converted to its hub
(`conversion`) and checked there; paths are mapped back to the fields of the version the user
wrote. `check_all` also checks references between the objects given together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from smimesh.smi import access, conversion, regexes, specs, split
from smimesh.smi.objects import Resource
from smimesh.smi.problems import Problem, Severity

__all__ = ["check", "check_all"]

_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+|:(authority|method|path|scheme)")

# Hub paths -> the same field in versions that lay it out differently.
_PATH_MOVES: dict[str, tuple[tuple[str, str], ...]] = {
    "access.smi-spec.io/v1alpha1": (("spec.rules", "specs"), ("spec.", "")),
    "specs.smi-spec.io/v1alpha1": (("spec.", ""),),
    "specs.smi-spec.io/v1alpha2": (("spec.", ""),),
}


def _local(api_version: str, path: str) -> str:
    for hub_prefix, local_prefix in _PATH_MOVES.get(api_version, ()):
        if path.startswith(hub_prefix):
            return local_prefix + path[len(hub_prefix) :]
    return path


def check(obj: Resource) -> list[Problem]:
    """Problems with one object (schema-valid already), in the fields of its own version."""
    problems = _before_conversion(obj)
    if any(problem.severity == "error" for problem in problems):
        return problems
    try:
        hub = conversion.to_hub(obj)
    except conversion.ConversionError as error:
        return [*problems, Problem(error.path, error.reason)]
    is_hub = hub is obj
    found: list[Problem] = []
    if isinstance(hub, split.TrafficSplit):
        found = _split(hub)
    elif isinstance(hub, access.TrafficTarget):
        found = _target(hub, strict=is_hub)
    elif isinstance(hub, specs.HTTPRouteGroup):
        found = _route_group(hub)
    elif isinstance(hub, specs.TCPRoute | specs.UDPRoute):
        found = _ports(hub)
    local = [Problem(_local(obj.api_version, p.path), p.reason, p.severity) for p in found]
    return problems + local


def _before_conversion(obj: Resource) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(obj, split.TrafficSplitV1alpha1):
        for number, backend in enumerate(obj.spec.backends):
            if backend.weight.value < 0:
                path = f"spec.backends[{number}].weight"
                problems.append(Problem(path, f"weight {backend.weight} is negative"))
    if isinstance(obj, access.TrafficTargetV1alpha1) and obj.destination.port is not None:
        port = obj.destination.port
        if isinstance(port, str) and not port.isdigit():
            problems.append(Problem("destination.port", f"{port!r} is not a port number"))
        elif not 1 <= int(port) <= 65535:
            problems.append(Problem("destination.port", f"port {port} is not in 1-65535"))
    return problems


def _name(path: str, value: str, *, what: str, pattern: re.Pattern[str]) -> list[Problem]:
    if len(value) <= 63 and pattern.fullmatch(value):
        return []
    return [Problem(path, f"{value!r} is not a valid {what} (lowercase RFC 1123 label)")]


def _service(path: str, value: str) -> list[Problem]:
    """A Service name, or the dotted forms producers use for it (OSM: `name.namespace`)."""
    first, _, rest = value.partition(".")
    problems = _name(path, first, what="service name", pattern=_DNS_LABEL)
    if rest and not all(_DNS_1123_LABEL.fullmatch(label) for label in rest.split(".")):
        problems.append(Problem(path, f"{value!r} is not a service name or DNS name"))
    return problems


def _split(ts: split.TrafficSplit) -> list[Problem]:
    problems = _service("spec.service", ts.spec.service)
    if not ts.spec.backends:
        problems.append(Problem("spec.backends", "a split needs at least one backend"))
    seen: dict[str, int] = {}
    for number, backend in enumerate(ts.spec.backends):
        path = f"spec.backends[{number}]"
        problems += _name(
            f"{path}.service", backend.service, what="service name", pattern=_DNS_LABEL
        )
        if backend.service in seen:
            problems.append(
                Problem(
                    f"{path}.service",
                    f"backend {backend.service!r} is listed "
                    f"twice (also spec.backends[{seen[backend.service]}])",
                )
            )
        seen.setdefault(backend.service, number)
    if ts.spec.backends and all(backend.weight == 0 for backend in ts.spec.backends):
        problems.append(
            Problem("spec.backends", "every weight is 0: no traffic reaches any backend", "warning")
        )
    total = sum(backend.weight for backend in ts.spec.backends)
    if total > split.MAX_WEIGHT_SUM:
        problems.append(
            Problem("spec.backends", f"weights sum to {total}, more than {split.MAX_WEIGHT_SUM}")
        )
    return problems


def _subject(path: str, subject: access.Subject) -> list[Problem]:
    problems: list[Problem] = []
    if subject.kind != "ServiceAccount":
        problems.append(
            Problem(
                f"{path}.kind",
                f"kind {subject.kind!r} is not an identity the mesh knows; use ServiceAccount",
            )
        )
    if subject.namespace is not None:
        problems += _name(
            f"{path}.namespace", subject.namespace, what="namespace", pattern=_DNS_1123_LABEL
        )
    return problems


def _target(tt: access.TrafficTarget, *, strict: bool) -> list[Problem]:
    problems = _subject("spec.destination", tt.spec.destination)
    severity: Severity = "error" if strict else "warning"
    for field, items in (("spec.sources", tt.spec.sources), ("spec.rules", tt.spec.rules)):
        if not items:
            problems.append(Problem(field, "is empty: this target allows no traffic", severity))
    for number, source in enumerate(tt.spec.sources):
        problems += _subject(f"spec.sources[{number}]", source)
    for number, rule in enumerate(tt.spec.rules):
        if rule.matches == []:
            problems.append(
                Problem(
                    f"spec.rules[{number}].matches",
                    "is an empty list; leave it out to allow every match of the route",
                    "warning",
                )
            )
    return problems


def _regex(path: str, pattern: str, what: str) -> list[Problem]:
    reason = regexes.check(pattern)
    return [] if reason is None else [Problem(path, f"{what}: {reason}")]


def _route_group(group: specs.HTTPRouteGroup) -> list[Problem]:
    problems: list[Problem] = []
    if not group.spec.matches:
        problems.append(Problem("spec.matches", "is empty: this group matches nothing", "warning"))
    seen: set[str] = set()
    for number, match in enumerate(group.spec.matches):
        path = f"spec.matches[{number}]"
        if match.name in seen:
            problems.append(
                Problem(
                    f"{path}.name",
                    f"match name {match.name!r} is used twice; "
                    "TrafficTargets refer to matches by name",
                )
            )
        seen.add(match.name)
        if match.path_regex is not None:
            problems += _regex(f"{path}.pathRegex", match.path_regex, "pathRegex")
        if match.methods is not None and "*" in match.methods and len(match.methods) > 1:
            problems.append(Problem(f"{path}.methods", '"*" already means every method', "warning"))
        problems += _headers(f"{path}.headers", match.headers)
    return problems


def _headers(path: str, headers: specs.Headers | None) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(headers, list):
        for number, item in enumerate(headers):
            if len(item) != 1:
                problems.append(
                    Problem(
                        f"{path}[{number}]",
                        f"each list item must be a map with exactly one header (has {len(item)})",
                    )
                )
    for name, value in specs.header_pairs(headers):
        if not _HEADER_NAME.fullmatch(name):
            problems.append(Problem(f"{path}.{name}", f"{name!r} is not an HTTP header name"))
        problems += _regex(f"{path}.{name}", value, "header value regex")
    return problems


def _ports(route: specs.TCPRoute | specs.UDPRoute) -> list[Problem]:
    ports = route.spec.matches.ports
    duplicates = sorted({port for port in ports if ports.count(port) > 1})
    if duplicates:
        return [Problem("spec.matches.ports", f"ports listed twice: {duplicates}", "warning")]
    return []


def _match_names(obj: Resource) -> set[str] | None:
    if isinstance(obj, specs.HTTPRouteGroup):
        return {match.name for match in obj.spec.matches}
    if isinstance(obj, specs.TCPRoute | specs.UDPRoute):
        name = obj.spec.matches.name
        return set() if name is None else {name}
    return None


def check_all(objects: Sequence[Resource]) -> list[list[Problem]]:
    """`check` for each object, plus references to routes given in the same set."""
    results = [check(obj) for obj in objects]
    hubs: list[Resource | None] = []
    for obj in objects:
        try:
            hubs.append(conversion.to_hub(obj))
        except conversion.ConversionError:
            hubs.append(None)
    # Routes by (kind, namespace, name); the same key given twice keeps the union of names.
    routes: dict[tuple[str, str | None, str | None], set[str]] = {}
    for hub in hubs:
        names = _match_names(hub) if hub is not None else None
        if hub is not None and names is not None:
            key = (hub.kind, hub.metadata.namespace, hub.metadata.name)
            routes.setdefault(key, set()).update(names)
    for position, (obj, hub) in enumerate(zip(objects, hubs, strict=True)):
        if isinstance(hub, access.TrafficTarget):
            for number, rule in enumerate(hub.spec.rules):
                names = routes.get((rule.kind, hub.metadata.namespace, rule.name))
                for match in rule.matches or []:
                    if names is not None and match not in names:
                        path = _local(obj.api_version, f"spec.rules[{number}].matches")
                        results[position].append(
                            Problem(path, f"{rule.kind} {rule.name!r} has no match named {match!r}")
                        )
    return results
