"""The resources of the TrafficMetrics API: which kinds it serves (its discovery documents)
and how a list selects pods (equality-based label selectors). Pure.

Read by `aggregating`, which serves the discovery documents and routes `/<plural>/...` by
`BY_PLURAL`; the objects themselves come from `trafficmetrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from smimesh.operator import trafficmetrics
from smimesh.smi import metrics

VERSION = "v1alpha1"
GROUP_VERSION = f"{metrics.GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kinds:
    """One resource of the API: its plural (the URL segment), kind, and whether namespaced."""

    plural: str
    kind: trafficmetrics.Kind
    namespaced: bool


RESOURCES = (
    Kinds("namespaces", "Namespace", namespaced=False),
    Kinds("deployments", "Deployment", namespaced=True),
    Kinds("pods", "Pod", namespaced=True),
)
BY_PLURAL = {resource.plural: resource for resource in RESOURCES}


def api_group() -> dict[str, Any]:
    """Discovery: the group and its one version (an `APIGroup` without kind)."""
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": metrics.GROUP, "versions": [version], "preferredVersion": version}


def resource_list() -> dict[str, Any]:
    """Discovery (`APIResourceList`): each kind `get`/`list`, its `edges` subresource `get`."""
    resources = []
    for kind in RESOURCES:
        common = {"singularName": "", "namespaced": kind.namespaced}
        resources.append(
            {"name": kind.plural, **common, "kind": "TrafficMetrics", "verbs": ["get", "list"]}
        )
        resources.append(
            {"name": f"{kind.plural}/edges", **common, "kind": "TrafficMetricsList",
             "verbs": ["get"]}
        )  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": resources}  # fmt: skip


class SelectorError(ValueError):
    """A label selector this API does not evaluate (set-based terms)."""


def label_filter(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """An equality-based label selector (`a=b,c!=d,e,!f`) as a predicate on labels."""
    terms: list[tuple[str, str, str]] = []
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, _, value = term.partition("!=")
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            terms.append(("=", key.strip(), value.strip()))
        elif term.startswith("!"):
            terms.append(("absent", term[1:].strip(), ""))
        elif " " not in term and "(" not in term:
            terms.append(("present", term, ""))
        else:
            raise SelectorError(f"unsupported label selector term {term!r} (equality only)")

    def holds(labels: Mapping[str, str], op: str, key: str, value: str) -> bool:
        return {
            "=": labels.get(key) == value,
            "!=": labels.get(key) != value,
            "absent": key not in labels,
            "present": key in labels,
        }[op]

    return lambda labels: all(holds(labels, *term) for term in terms)
