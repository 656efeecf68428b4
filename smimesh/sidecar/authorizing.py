"""Inbound authorization: may this caller (its SPIFFE id, from its certificate) make this
request on this port? Deny by default; compiled TrafficTarget rules are additive.

Called by `inbound` per HTTP request and per TCP connection, with an `InboundPolicy` built by
`tables`. A permissive port admits everyone; otherwise a rule must name the caller's identity
and (for HTTP) one of its matches must admit the request; a rule without matches admits all.
"""

from __future__ import annotations

from dataclasses import dataclass

from smimesh.sidecar import matching, tables


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


ALLOW_PERMISSIVE = Decision(True, "permissive")


def authorize(
    policy: tables.InboundPolicy,
    identity: str | None,
    request: matching.RequestFacts | None,
) -> Decision:
    """`request` is None for a TCP connection (ports are the only TCP condition, and the
    port was settled by picking `policy`)."""
    if policy.port.permissive:
        return ALLOW_PERMISSIVE
    if identity is None:
        return Decision(False, "a verified client certificate (mTLS) is required")
    named = False
    for sources, matches, target in policy.rules:
        if identity not in sources:
            continue
        named = True
        if request is None or not matches:
            return Decision(True, target)
        found = matching.first_match(matches, request)
        if found is not None:
            return Decision(True, f"{target} ({found.name})" if found.name else target)
    if not named:
        return Decision(False, f"no TrafficTarget allows {identity} on port {policy.port.port}")
    assert request is not None
    return Decision(
        False, f"no route of a TrafficTarget allows {identity} to {request.method} {request.path}"
    )
