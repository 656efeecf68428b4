"""The catalog of SMI kinds: group, names, versions, hub version, CRD printer columns.

Read by `documents` (which model parses an apiVersion/kind), `conversion` (which version is
the hub) and `crdgen` (names, short names, columns). Metrics kinds are listed but have no CRD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from smimesh.smi import access, metrics, specs, split
from smimesh.smi.objects import Resource

__all__ = ["KINDS", "Column", "KindInfo", "by_kind", "groups", "lookup"]


@dataclass(frozen=True)
class Column:
    """An `additionalPrinterColumns` entry."""

    name: str
    type: str
    json_path: str
    description: str


AGE = Column("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


@dataclass(frozen=True)
class KindInfo:
    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    versions: Mapping[str, type[Resource]]
    hub_version: str
    crd: bool = True
    columns: tuple[Column, ...] = field(default=(AGE,))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def hub(self) -> type[Resource]:
        return self.versions[self.hub_version]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        split.GROUP,
        "TrafficSplit",
        "trafficsplits",
        ("ts",),
        split.VERSIONS,
        split.HUB_VERSION,
        columns=(
            Column("Service", "string", ".spec.service", "The root service of this split."),
            Column("Backends", "string", ".spec.backends[*].service", "The backend services."),
            Column("Weights", "string", ".spec.backends[*].weight", "The backends' weights."),
            AGE,
        ),
    ),
    KindInfo(
        access.GROUP,
        "TrafficTarget",
        "traffictargets",
        ("tt",),
        access.VERSIONS,
        access.HUB_VERSION,
    ),
    KindInfo(
        specs.GROUP,
        "HTTPRouteGroup",
        "httproutegroups",
        ("htr",),
        specs.VERSIONS["HTTPRouteGroup"],
        specs.HUB_VERSION,
    ),
    KindInfo(specs.GROUP, "TCPRoute", "tcproutes", ("tr",), specs.VERSIONS["TCPRoute"], "v1alpha4"),
    KindInfo(specs.GROUP, "UDPRoute", "udproutes", ("ur",), specs.VERSIONS["UDPRoute"], "v1alpha4"),
    KindInfo(
        metrics.GROUP,
        "TrafficMetrics",
        "trafficmetrics",
        (),
        metrics.VERSIONS["TrafficMetrics"],
        "v1alpha1",
        crd=False,
    ),
    KindInfo(
        metrics.GROUP,
        "TrafficMetricsList",
        "trafficmetricslists",
        (),
        metrics.VERSIONS["TrafficMetricsList"],
        "v1alpha1",
        crd=False,
    ),
)


def groups() -> frozenset[str]:
    return frozenset(info.group for info in KINDS)


def by_kind(group: str, kind: str) -> KindInfo | None:
    for info in KINDS:
        if info.group == group and info.kind == kind:
            return info
    return None


def lookup(api_version: str, kind: str) -> type[Resource] | None:
    """The model for an apiVersion and kind, or None if SMI has no such version of it."""
    group, _, version = api_version.partition("/")
    info = by_kind(group, kind)
    return None if info is None else info.versions.get(version)
