"""Compiled HTTP matches: the contract's `HttpMatch` turned into RE2 programs once per
snapshot, evaluated per request.

Built by `tables` from a ProxyConfig; used by `routes` (TrafficSplit matches, outbound) and
`authorizing` (HTTPRouteGroup matches, inbound). SMI semantics: `path_regex` is anchored at the
start only, header values must match whole, one match ANDs its conditions, a list ORs.
RE2 keeps every check linear in the input, whatever regex a user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from smimesh.proxyconfig import matches


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a match can look at: method, path (no query), lower-case headers."""

    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    name: str
    path: Any  # re2 pattern or None
    methods: frozenset[str] | None  # None: any method
    headers: tuple[tuple[str, Any], ...]

    def matches(self, request: RequestFacts) -> bool:
        if self.methods is not None and request.method not in self.methods:
            return False
        if self.path is not None and self.path.match(request.path) is None:
            return False
        for name, pattern in self.headers:
            value = request.headers.get(name)
            if value is None or pattern.fullmatch(value) is None:
                return False
        return True


def compile_match(match: matches.HttpMatch) -> CompiledMatch:
    return CompiledMatch(
        name=match.name,
        path=re2.compile(match.path_regex) if match.path_regex else None,
        methods=None if match.allows_any_method() else frozenset(m.upper() for m in match.methods),
        headers=tuple((name.lower(), re2.compile(value)) for name, value in match.headers),
    )


def compile_all(items: Sequence[matches.HttpMatch]) -> tuple[CompiledMatch, ...]:
    return tuple(compile_match(item) for item in items)


def first_match(compiled: Sequence[CompiledMatch], request: RequestFacts) -> CompiledMatch | None:
    """The first match the request satisfies (ORed), or None."""
    for match in compiled:
        if match.matches(request):
            return match
    return None
