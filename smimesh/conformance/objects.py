"""SMI objects as the conformance cases write them, in the exact shapes producers use.

Used by `cases`; every function returns a plain Kubernetes object (namespace filled in by
`stages.Stage.apply`). Versions are explicit so each case states which spec version it checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Object = dict[str, Any]


def tcp_route(name: str, ports: Sequence[int] = (), *, version: str = "v1alpha4") -> Object:
    return {
        "apiVersion": f"specs.smi-spec.io/{version}",
        "kind": "TCPRoute",
        "metadata": {"name": name},
        "spec": {"matches": {"ports": list(ports)}},
    }


def route_group(name: str, matches: Sequence[Mapping[str, Any]]) -> Object:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": name},
        "spec": {"matches": [dict(match) for match in matches]},
    }


def target(
    name: str,
    *,
    destination: str,
    sources: Sequence[tuple[str, str]],
    rules: Sequence[Mapping[str, Any]],
    namespace: str,
) -> Object:
    """access.smi-spec.io/v1alpha3; `sources` are (namespace, ServiceAccount) pairs."""
    return {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": name},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": destination, "namespace": namespace},
            "sources": [
                {"kind": "ServiceAccount", "name": account, "namespace": space}
                for space, account in sources
            ],
            "rules": [dict(rule) for rule in rules],
        },
    }


def split(
    name: str,
    root: str,
    weights: Mapping[str, int | str],
    *,
    version: str = "v1alpha4",
    matches: Sequence[str] = (),
) -> Object:
    """A TrafficSplit in `version`: v1alpha1 weights may be Quantities ("500m")."""
    spec: dict[str, Any] = {
        "service": root,
        "backends": [{"service": service, "weight": weight} for service, weight in weights.items()],
    }
    if matches:
        spec["matches"] = [{"kind": "HTTPRouteGroup", "name": group} for group in matches]
    return {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {"name": name},
        "spec": spec,
    }
