"""Whether a pod gets the sidecar, and why not: the one place the opt-in/opt-out rules live.

Called by `injecting.inject_pod` before anything is built; the reason ends up in the CLI's
report and in the webhook's logs. Order: the mesh's own namespace, host networking, the pod's
annotation (opt-out wins), already injected, then the namespace label (or the caller's default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from smimesh.kube import names
from smimesh.webhooks.injection import errors, settings

Reason = Literal[
    "enabled",
    "mesh-namespace",
    "host-network",
    "opted-out",
    "already-injected",
    "not-enabled",
]


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: Reason
    detail: str


def decide(
    pod: Mapping[str, Any],
    *,
    namespace: str | None,
    namespace_labels: Mapping[str, str],
    config: settings.InjectionSettings,
    enabled_by_default: bool = False,
) -> Decision:
    """Decide for a Pod (or a pod template: same `metadata`/`spec` shape).

    `enabled_by_default` stands in for the namespace label where there is no namespace to ask
    (`kubectl smi inject` on files: asking for injection is the opt-in).
    """
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    pod_annotations: Mapping[str, str] = metadata.get("annotations") or {}
    if namespace == config.mesh_namespace:
        return Decision(False, "mesh-namespace", f"the mesh's own namespace {namespace!r}")
    if spec.get("hostNetwork"):
        return Decision(False, "host-network", "hostNetwork pods share the node's network")
    requested = pod_annotations.get(names.INJECT_ANNOTATION)
    if requested is not None and requested not in (names.ENABLED, names.DISABLED):
        raise errors.InjectionError(
            f"annotation {names.INJECT_ANNOTATION}={requested!r}: "
            f"use {names.ENABLED!r} or {names.DISABLED!r}"
        )
    if requested == names.DISABLED:
        return Decision(False, "opted-out", f"annotation {names.INJECT_ANNOTATION}=disabled")
    if names.INJECTED_ANNOTATION in pod_annotations:
        return Decision(False, "already-injected", f"annotation {names.INJECTED_ANNOTATION} is set")
    if requested == names.ENABLED:
        return Decision(True, "enabled", f"annotation {names.INJECT_ANNOTATION}=enabled")
    label = namespace_labels.get(names.NAMESPACE_MESH_LABEL)
    if label == names.ENABLED:
        return Decision(True, "enabled", f"namespace label {names.NAMESPACE_MESH_LABEL}=enabled")
    if enabled_by_default and label != names.DISABLED:
        return Decision(True, "enabled", "injection requested explicitly")
    return Decision(
        False, "not-enabled", f"neither the namespace nor the pod sets {names.INJECT_ANNOTATION}"
    )
