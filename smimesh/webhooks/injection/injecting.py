"""Sidecar injection into one Pod (or pod template): the builder the webhook and the CLI share.

`inject_pod` takes a Pod as the apiserver sends it, asks `decisions` whether to inject, and
builds a mutated copy from `sidecars`, `initcontainers`, `probes` and `volumes`, plus the JSON
Patch (`patches`) that turns the original into it. The input is never changed. Injecting an
injected pod changes nothing (the `smimesh.dev/injected` annotation marks it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smimesh.kube import names
from smimesh.webhooks.injection import (
    decisions,
    errors,
    initcontainers,
    patches,
    probes,
    settings,
    sidecars,
    volumes,
)


@dataclass(frozen=True)
class Injection:
    """The outcome for one pod: the (possibly) mutated pod, the patch, and why."""

    pod: dict[str, Any]
    patch: list[patches.Operation]
    decision: decisions.Decision

    @property
    def injected(self) -> bool:
        return self.decision.inject


def inject_pod(
    pod: Mapping[str, Any],
    *,
    namespace: str | None,
    namespace_labels: Mapping[str, str] | None = None,
    config: settings.InjectionSettings | None = None,
    enabled_by_default: bool = False,
) -> Injection:
    """Inject the sidecar into a copy of `pod` if `decisions.decide` says so.

    Raises `errors.InjectionError` for pods that cannot be injected as written.
    """
    config = config or settings.InjectionSettings()
    decision = decisions.decide(
        pod,
        namespace=namespace,
        namespace_labels=namespace_labels or {},
        config=config,
        enabled_by_default=enabled_by_default,
    )
    original = copy.deepcopy(dict(pod))
    if not decision.inject:
        return Injection(original, [], decision)
    mutated = copy.deepcopy(original)
    metadata = mutated.setdefault("metadata", {})
    spec = mutated.setdefault("spec", {})
    pod_annotations = metadata.get("annotations") or {}
    containers: list[dict[str, Any]] = spec.setdefault("containers", [])
    _check_ports(containers, config)

    originals = probes.rewrite_probes(containers, config) if config.rewrite_probes else {}
    proxy = sidecars.proxy_container(
        config, native=config.native_sidecars, app_probes=bool(originals)
    )
    if pod_annotations.get(names.ADMIN_CONFIG_ANNOTATION) == names.ENABLED:
        proxy["env"].append({"name": "SMIMESH_ADMIN_CONFIG", "value": "true"})  # /config on
    init_containers: list[dict[str, Any]] = list(spec.get("initContainers") or [])
    interception = (
        [] if config.cni_mode else [initcontainers.init_container(pod_annotations, config)]
    )
    if config.native_sidecars:
        # iptables first, then the proxy, then the pod's own init containers (meshed already).
        init_containers = [*interception, proxy, *init_containers]
    else:
        # The pod's own init containers run before any proxy exists: intercept after them.
        init_containers = [*init_containers, *interception]
        containers.insert(0, proxy)
    if init_containers:
        spec["initContainers"] = init_containers
    spec["volumes"] = [*(spec.get("volumes") or []), volumes.identity_volume(config)]

    pod_annotations = dict(pod_annotations)
    pod_annotations[names.INJECTED_ANNOTATION] = config.proxy_image
    if names.PROMETHEUS_SCRAPE_ANNOTATION not in pod_annotations:
        # Prometheus' `kubernetes-pods` job scrapes the proxy's metrics-only port; a pod that
        # already asks Prometheus to scrape its app keeps its own annotations.
        pod_annotations[names.PROMETHEUS_SCRAPE_ANNOTATION] = "true"
        pod_annotations[names.PROMETHEUS_PORT_ANNOTATION] = str(config.ports.metrics)
        pod_annotations[names.PROMETHEUS_PATH_ANNOTATION] = "/metrics"
    if originals:
        pod_annotations[names.ORIGINAL_PROBES_ANNOTATION] = json.dumps(
            originals, sort_keys=True, separators=(",", ":")
        )
    metadata["annotations"] = pod_annotations
    return Injection(mutated, patches.json_patch(original, mutated), decision)


def _check_ports(containers: list[dict[str, Any]], config: settings.InjectionSettings) -> None:
    reserved = set(config.ports.all())
    for container in containers:
        if container.get("name") == names.PROXY_CONTAINER:
            raise errors.InjectionError(
                f"the pod already has a container named {names.PROXY_CONTAINER!r} "
                f"but no {names.INJECTED_ANNOTATION} annotation; remove one or the other"
            )
        for port in container.get("ports") or []:
            if port.get("containerPort") in reserved:
                raise errors.InjectionError(
                    f"container {container.get('name')!r} uses port {port['containerPort']}, "
                    f"which the smimesh proxy needs ({', '.join(map(str, sorted(reserved)))})"
                )
