"""Inbound configuration: per local port, which peer identities may call and, for HTTP,
which requests they may make (TrafficTarget + HTTPRouteGroup/TCPRoute, compiled).

Produced by the compiler; enforced by the sidecar's authorization filter. Deny by default:
a port whose `rules` match nothing refuses the caller, unless the port is permissive.
`InboundPolicy` is the part pods of one ServiceAccount share (a `resources` body); `bind`
adds the pod's own app port.
"""

from __future__ import annotations

from pydantic import Field

from smimesh.proxyconfig.matches import HttpMatch
from smimesh.proxyconfig.outbound import Protocol
from smimesh.proxyconfig.refs import Frozen


class InboundRule(Frozen):
    """Callers with one of `sources` may make requests matching one of `http_matches`
    (any request if empty, and always for TCP)."""

    target: str = Field(description="namespace/name of the TrafficTarget, for diagnostics.")
    sources: tuple[str, ...] = Field(description="SPIFFE ids allowed to call.")
    http_matches: tuple[HttpMatch, ...] = ()


class InboundPort(Frozen):
    """A port of the local app, as the mesh exposes it."""

    port: int = Field(ge=1, le=65535, description="The port callers connect to.")
    app_port: int = Field(ge=1, le=65535, description="Where the local app listens.")
    protocol: Protocol
    permissive: bool = Field(
        default=False, description="Allow every caller, including plaintext ones."
    )
    rules: tuple[InboundRule, ...] = ()


class InboundPolicy(Frozen):
    """An `InboundPort` without the pod's app port: what every pod of one ServiceAccount
    serving `port` with `protocol` shares."""

    port: int = Field(ge=1, le=65535, description="The port callers connect to.")
    protocol: Protocol
    permissive: bool = False
    rules: tuple[InboundRule, ...] = ()

    def bind(self, app_port: int) -> InboundPort:
        """The port as one pod exposes it: this policy, with its app listening on `app_port`."""
        return InboundPort(
            port=self.port,
            app_port=app_port,
            protocol=self.protocol,
            permissive=self.permissive,
            rules=self.rules,
        )
