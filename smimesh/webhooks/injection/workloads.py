"""Injection into manifests: every workload kind's pod template, Lists, and pass-through.

Called by `kubectl smi inject` (offline files) with `enabled_by_default=True`; finds the pod
template of Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs
and CronJobs (or the Pod itself), runs `injecting.inject_pod` on it, and puts the result back
in a copy. Other kinds come back unchanged, reported as passed through.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from smimesh.webhooks.injection import errors, injecting, settings

TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

Action = Literal["injected", "skipped", "passed-through"]


@dataclass(frozen=True)
class Report:
    """What happened to one object, for the CLI's stderr: `deployment "web" injected`."""

    kind: str
    name: str
    action: Action
    detail: str = ""

    def __str__(self) -> str:
        text = f'{self.kind.lower()} "{self.name}" {self.action.replace("-", " ")}'
        return f"{text} ({self.detail})" if self.detail else text


def inject_manifest(
    document: Mapping[str, Any],
    *,
    config: settings.InjectionSettings,
    namespace: str | None = None,
    enabled_by_default: bool = True,
) -> tuple[dict[str, Any], list[Report]]:
    """A copy of `document` with every pod template injected, and one report per object."""
    kind = str(document.get("kind", ""))
    name = str((document.get("metadata") or {}).get("name") or document.get("generateName") or "")
    items = document.get("items")
    if kind.endswith("List") and isinstance(items, list):
        results = [
            inject_manifest(
                item,
                config=config,
                namespace=namespace,
                enabled_by_default=enabled_by_default,
            )
            for item in items
            if isinstance(item, Mapping)
        ]
        copied = copy.deepcopy(dict(document))
        copied["items"] = [result for result, _ in results]
        return copied, [report for _, reports in results for report in reports]
    path = TEMPLATE_PATHS.get(kind)
    if path is None:
        return copy.deepcopy(dict(document)), [Report(kind or "object", name, "passed-through")]
    mutated = copy.deepcopy(dict(document))
    holder, key, template = _template(mutated, path, kind, name)
    own_namespace = (document.get("metadata") or {}).get("namespace") or namespace
    result = injecting.inject_pod(
        template,
        namespace=own_namespace,
        config=config,
        enabled_by_default=enabled_by_default,
    )
    if not result.injected:
        return mutated, [Report(kind, name, "skipped", result.decision.detail)]
    if holder is None:
        return result.pod, [Report(kind, name, "injected")]
    holder[key] = result.pod
    return mutated, [Report(kind, name, "injected")]


def _template(
    document: dict[str, Any], path: tuple[str, ...], kind: str, name: str
) -> tuple[dict[str, Any] | None, str, dict[str, Any]]:
    """The dict holding the template, its key, and the template (the Pod itself for Pods)."""
    if not path:
        return None, "", document
    holder = document
    for key in path[:-1]:
        child = holder.get(key)
        if not isinstance(child, dict):
            raise errors.InjectionError(f'{kind.lower()} "{name}" has no {".".join(path)}')
        holder = child
    template = holder.get(path[-1])
    if not isinstance(template, dict):
        raise errors.InjectionError(f'{kind.lower()} "{name}" has no {".".join(path)}')
    return holder, path[-1], template
