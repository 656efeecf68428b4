"""HTTP request matches, compiled from HTTPRouteGroup matches and TrafficSplit `matches`.

Produced by the compiler; evaluated by the sidecar's route stage (outbound) and its
authorization filter (inbound). Semantics follow the SMI spec: `path_regex` is anchored at the
start only, the conditions of one match are ANDed, a list of matches is ORed, method `*`
matches any method, header values are regular expressions matched against the whole value.
"""

from __future__ import annotations

from pydantic import Field

from smimesh.proxyconfig.refs import Frozen

ANY_METHOD = "*"


class HttpMatch(Frozen):
    """One HTTP match; an empty field matches anything."""

    name: str = Field(default="", description="The HTTPRouteGroup match name, for diagnostics.")
    path_regex: str | None = None
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = Field(
        default=(), description="(lower-case header name, value regex) pairs, sorted."
    )

    def allows_any_method(self) -> bool:
        return not self.methods or ANY_METHOD in self.methods
