"""TrafficSplit (`split.smi-spec.io`) in every released version; v1alpha4 is the hub.

Parsed by `smimesh.smi.documents`, converted by `smimesh.smi.conversion`, checked by
`smimesh.smi.validating`, turned into CRD schemas by `smimesh.smi.crdgen`; the compiler reads
only the hub (`TrafficSplit`).
v1alpha1 weights are Quantities (Flagger's linkerd provider, Argo Rollouts' default);
v1alpha2 onwards they are integers; v1alpha3 adds `matches` (HTTPRouteGroup references).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from smimesh.smi import quantities
from smimesh.smi.objects import Model, Resource

__all__ = [
    "GROUP",
    "HUB_VERSION",
    "INT32_MAX",
    "MAX_WEIGHT_SUM",
    "VERSIONS",
    "Backend",
    "BackendV1alpha1",
    "Match",
    "TrafficSplit",
    "TrafficSplitSpec",
    "TrafficSplitV1alpha1",
    "TrafficSplitV1alpha2",
    "TrafficSplitV1alpha3",
]

GROUP = "split.smi-spec.io"
HUB_VERSION = "v1alpha4"
INT32_MAX = 2**31 - 1
# Proxies (Envoy) keep the total of a route's weights in 32 bits.
MAX_WEIGHT_SUM = 2**32 - 1

ServiceName = Annotated[str, Field(description="Name of a Kubernetes Service in this namespace.")]
Weight = Annotated[
    int,
    Field(ge=0, le=INT32_MAX, description="Relative weight; traffic share = weight / sum."),
]


class BackendV1alpha1(Model):
    service: ServiceName
    weight: Annotated[
        quantities.Quantity,
        Field(description='Relative weight as a Quantity (5, "5", "500m").'),
    ]


class Backend(Model):
    service: ServiceName
    weight: Weight


class Match(Model):
    """A reference to the HTTPRouteGroup whose routes this split applies to."""

    kind: Annotated[Literal["HTTPRouteGroup"], Field(description="Kind of the route group.")]
    name: Annotated[str, Field(description="Name of the route group in this namespace.")]
    api_group: Annotated[str | None, Field(description="specs.smi-spec.io, if given.")] = None


class SpecV1alpha1(Model):
    service: Annotated[str, Field(description="The root (apex) service clients address.")]
    backends: Annotated[list[BackendV1alpha1], Field(description="Services that get traffic.")]


class SpecV1alpha2(Model):
    service: Annotated[str, Field(description="The root (apex) service clients address.")]
    backends: Annotated[list[Backend], Field(description="Services that get traffic.")]


class TrafficSplitSpec(Model):
    service: Annotated[str, Field(description="The root (apex) service clients address.")]
    matches: Annotated[
        list[Match] | None,
        Field(description="HTTPRouteGroups this split applies to; all traffic if absent."),
    ] = None
    backends: Annotated[list[Backend], Field(description="Services that get traffic.")]


class TrafficSplitV1alpha1(Resource):
    api_version: Literal["split.smi-spec.io/v1alpha1"]
    kind: Literal["TrafficSplit"]
    spec: SpecV1alpha1


class TrafficSplitV1alpha2(Resource):
    api_version: Literal["split.smi-spec.io/v1alpha2"]
    kind: Literal["TrafficSplit"]
    spec: SpecV1alpha2


class TrafficSplitV1alpha3(Resource):
    api_version: Literal["split.smi-spec.io/v1alpha3"]
    kind: Literal["TrafficSplit"]
    spec: TrafficSplitSpec


class TrafficSplit(Resource):
    """The hub: split.smi-spec.io/v1alpha4."""

    api_version: Literal["split.smi-spec.io/v1alpha4"]
    kind: Literal["TrafficSplit"]
    spec: TrafficSplitSpec


VERSIONS: dict[str, type[Resource]] = {
    "v1alpha1": TrafficSplitV1alpha1,
    "v1alpha2": TrafficSplitV1alpha2,
    "v1alpha3": TrafficSplitV1alpha3,
    "v1alpha4": TrafficSplit,
}
