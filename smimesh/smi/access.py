"""TrafficTarget (`access.smi-spec.io`) in every released version; v1alpha3 is the hub.

v1alpha1 keeps `destination`, `sources` and `specs` at the top level (no `spec`); v1alpha2
moves them under `spec` and renames `specs` to `rules`; v1alpha3 drops `destination.port`
(ports move to TCPRoute) and adds UDPRoute rules. Parsed by `documents`, converted by
`conversion`, checked by `validating`; the compiler reads only the hub (`TrafficTarget`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from smimesh.smi.objects import Model, Resource

__all__ = [
    "GROUP",
    "HUB_VERSION",
    "VERSIONS",
    "PortedSubject",
    "Rule",
    "RuleV1alpha2",
    "Subject",
    "TrafficTarget",
    "TrafficTargetSpec",
    "TrafficTargetV1alpha1",
    "TrafficTargetV1alpha2",
]

GROUP = "access.smi-spec.io"
HUB_VERSION = "v1alpha3"

Port = Annotated[int, Field(ge=1, le=65535, description="Destination port.")]
RuleName = Annotated[str, Field(description="Name of the route object in this namespace.")]
RuleMatches = Annotated[
    list[str] | None,
    Field(description="Names of matches in the route object; all of them if absent."),
]


class Subject(Model):
    """An identity: a ServiceAccount (the only kind the mesh issues identities for)."""

    kind: Annotated[str, Field(description="Kind of the identity: ServiceAccount.")]
    name: Annotated[str, Field(description="Name of the ServiceAccount.")]
    namespace: Annotated[str | None, Field(description="Namespace; the object's if absent.")] = None


class PortedSubject(Subject):
    """A v1alpha1/v1alpha2 destination, which may name a port."""

    port: Port | None = None


class PortedSubjectV1alpha1(Subject):
    """v1alpha1 destinations: producers wrote the port as a number or as a string."""

    port: Annotated[
        int | str | None, Field(description="Destination port (number or digit string).")
    ] = None


class RuleV1alpha2(Model):
    kind: Annotated[Literal["HTTPRouteGroup", "TCPRoute"], Field(description="Route kind.")]
    name: RuleName
    matches: RuleMatches = None


class Rule(Model):
    kind: Annotated[
        Literal["HTTPRouteGroup", "TCPRoute", "UDPRoute"], Field(description="Route kind.")
    ]
    name: RuleName
    matches: RuleMatches = None


class TrafficTargetV1alpha1(Resource):
    api_version: Literal["access.smi-spec.io/v1alpha1"]
    kind: Literal["TrafficTarget"]
    destination: Annotated[PortedSubjectV1alpha1, Field(description="Who is reached.")]
    sources: Annotated[list[Subject] | None, Field(description="Who may connect.")] = None
    specs: Annotated[list[RuleV1alpha2] | None, Field(description="Allowed routes.")] = None


class SpecV1alpha2(Model):
    destination: Annotated[PortedSubject, Field(description="Who is reached.")]
    rules: Annotated[list[RuleV1alpha2] | None, Field(description="Allowed routes.")] = None
    sources: Annotated[list[Subject] | None, Field(description="Who may connect.")] = None


class TrafficTargetV1alpha2(Resource):
    api_version: Literal["access.smi-spec.io/v1alpha2"]
    kind: Literal["TrafficTarget"]
    spec: SpecV1alpha2


class TrafficTargetSpec(Model):
    destination: Annotated[Subject, Field(description="Who is reached.")]
    rules: Annotated[list[Rule], Field(description="Allowed routes.")]
    sources: Annotated[list[Subject], Field(description="Who may connect.")]


class TrafficTarget(Resource):
    """The hub: access.smi-spec.io/v1alpha3."""

    api_version: Literal["access.smi-spec.io/v1alpha3"]
    kind: Literal["TrafficTarget"]
    spec: TrafficTargetSpec


VERSIONS: dict[str, type[Resource]] = {
    "v1alpha1": TrafficTargetV1alpha1,
    "v1alpha2": TrafficTargetV1alpha2,
    "v1alpha3": TrafficTarget,
}
