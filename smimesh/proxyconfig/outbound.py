"""Outbound configuration: the Services a proxy may call, their ports and protocols, their
endpoints, and the TrafficSplit routes that divide their traffic between backends.

Produced by the compiler; consumed by the sidecar's listener, route, cluster and endpoint
stages. Weights are already normalised to integers that sum to the split's total.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from smimesh.proxyconfig.matches import HttpMatch
from smimesh.proxyconfig.refs import Frozen, ServiceRef

Protocol = Literal["http", "http2", "tcp"]


class ServicePort(Frozen):
    """A Service port and the protocol the mesh speaks on it."""

    name: str = ""
    port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    protocol: Protocol


class Endpoint(Frozen):
    """One ready backend pod of a Service: where to connect and whom to expect there."""

    address: str
    pod: str
    identity: str = Field(description="The SPIFFE id the endpoint's certificate must carry.")
    meshed: bool = Field(description="Whether a sidecar fronts it (then mTLS is originated).")


class WeightedBackend(Frozen):
    """A TrafficSplit backend with its normalised weight (0 keeps it, sending nothing)."""

    service: ServiceRef
    weight: int = Field(ge=0)


class SplitRoute(Frozen):
    """A TrafficSplit applied to a root Service: requests matching `matches` (all, if empty)
    are divided between `backends` by weight; all-zero weights send no traffic."""

    split: str = Field(description="namespace/name of the TrafficSplit, for metrics and status.")
    matches: tuple[HttpMatch, ...] = ()
    backends: tuple[WeightedBackend, ...]


class OutboundService(Frozen):
    """A Service this proxy can reach, addressed by its hostnames or cluster IP."""

    service: ServiceRef
    cluster_ip: str | None = None
    hostnames: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...] = ()
    routes: tuple[SplitRoute, ...] = Field(
        default=(), description="Tried in order; a request no route matches goes to the root."
    )
