"""Traffic specs (`specs.smi-spec.io`): HTTPRouteGroup, TCPRoute, UDPRoute; v1alpha4 is the hub.

HTTPRouteGroup v1alpha1/v1alpha2 keep `matches` at the top level (no `spec`); v1alpha2 adds
header matches, which producers write either as a map or as a list of one-key maps (both are
kept as written; `header_pairs` reads either). TCPRoute has no fields before v1alpha4, which
adds `spec.matches.ports`; UDPRoute exists only in v1alpha4. Parsed by `documents`, converted
by `conversion`, checked by `validating`.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from smimesh.smi.objects import Model, Resource

__all__ = [
    "GROUP",
    "HTTP_METHODS",
    "HUB_VERSION",
    "VERSIONS",
    "HTTPMatch",
    "HTTPMatchV1alpha1",
    "HTTPRouteGroup",
    "HTTPRouteGroupSpec",
    "HTTPRouteGroupV1alpha1",
    "HTTPRouteGroupV1alpha2",
    "HTTPRouteGroupV1alpha3",
    "Headers",
    "PortMatch",
    "PortRouteSpec",
    "TCPRoute",
    "TCPRouteV1alpha1",
    "TCPRouteV1alpha2",
    "TCPRouteV1alpha3",
    "UDPRoute",
    "header_pairs",
]

GROUP = "specs.smi-spec.io"
HUB_VERSION = "v1alpha4"

Method = Literal[
    "*", "GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"
]
HTTP_METHODS: tuple[str, ...] = get_args(Method)
Headers = dict[str, str] | list[dict[str, str]]

MatchName = Annotated[str, Field(description="Name of this match, referenced by TrafficTargets.")]
PathRegex = Annotated[
    str | None,
    Field(description="RE2 regular expression for the URI path, anchored at the start."),
]
Methods = Annotated[
    list[Method] | None, Field(description='HTTP methods; "*" or absent means any.')
]
HeaderField = Annotated[
    Headers | None,
    Field(
        description="Header name -> RE2 value regex, as a map or a list of one-key maps; "
        "all must match."
    ),
]
Port = Annotated[int, Field(ge=1, le=65535)]


def header_pairs(headers: Headers | None) -> list[tuple[str, str]]:
    """(name, value) pairs from either header format, in the order written."""
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return [pair for item in headers for pair in item.items()]


class HTTPMatchV1alpha1(Model):
    name: MatchName
    methods: Methods = None
    path_regex: PathRegex = None


class HTTPMatch(Model):
    name: MatchName
    methods: Methods = None
    path_regex: PathRegex = None
    headers: HeaderField = None


MatchesV1alpha1 = Annotated[list[HTTPMatchV1alpha1], Field(description="Routes (ORed).")]
Matches = Annotated[list[HTTPMatch], Field(description="Routes; a request matching any.")]


class HTTPRouteGroupV1alpha1(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha1"]
    kind: Literal["HTTPRouteGroup"]
    matches: MatchesV1alpha1


class HTTPRouteGroupV1alpha2(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha2"]
    kind: Literal["HTTPRouteGroup"]
    matches: Matches


class HTTPRouteGroupSpec(Model):
    matches: Matches


class HTTPRouteGroupV1alpha3(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha3"]
    kind: Literal["HTTPRouteGroup"]
    spec: HTTPRouteGroupSpec


class HTTPRouteGroup(Resource):
    """The hub: specs.smi-spec.io/v1alpha4."""

    api_version: Literal["specs.smi-spec.io/v1alpha4"]
    kind: Literal["HTTPRouteGroup"]
    spec: HTTPRouteGroupSpec


class EmptySpec(Model):
    """TCPRoute v1alpha3's `spec`: an object with no fields."""


class PortMatch(Model):
    name: Annotated[str | None, Field(description="Name of this match.")] = None
    ports: Annotated[list[Port], Field(description="Ports to match; [] means all ports.")]


class PortRouteSpec(Model):
    matches: Annotated[PortMatch, Field(description="Match conditions of this route.")]


class TCPRouteV1alpha1(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha1"]
    kind: Literal["TCPRoute"]


class TCPRouteV1alpha2(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha2"]
    kind: Literal["TCPRoute"]


class TCPRouteV1alpha3(Resource):
    api_version: Literal["specs.smi-spec.io/v1alpha3"]
    kind: Literal["TCPRoute"]
    spec: EmptySpec | None = None


class TCPRoute(Resource):
    """The hub: specs.smi-spec.io/v1alpha4."""

    api_version: Literal["specs.smi-spec.io/v1alpha4"]
    kind: Literal["TCPRoute"]
    spec: PortRouteSpec


class UDPRoute(Resource):
    """specs.smi-spec.io/v1alpha4, the only version of UDPRoute (and so its hub)."""

    api_version: Literal["specs.smi-spec.io/v1alpha4"]
    kind: Literal["UDPRoute"]
    spec: PortRouteSpec


VERSIONS: dict[str, dict[str, type[Resource]]] = {
    "HTTPRouteGroup": {
        "v1alpha1": HTTPRouteGroupV1alpha1,
        "v1alpha2": HTTPRouteGroupV1alpha2,
        "v1alpha3": HTTPRouteGroupV1alpha3,
        "v1alpha4": HTTPRouteGroup,
    },
    "TCPRoute": {
        "v1alpha1": TCPRouteV1alpha1,
        "v1alpha2": TCPRouteV1alpha2,
        "v1alpha3": TCPRouteV1alpha3,
        "v1alpha4": TCPRoute,
    },
    "UDPRoute": {"v1alpha4": UDPRoute},
}
