"""Sidecar injection as pure builders: one Pod (`injecting`), manifests (`workloads`) and
AdmissionReviews (`admission`), shared by the operator's mutating webhook and `kubectl smi
inject`. Split by concern as OSM's injector is: `decisions` (whether), `sidecars` (the proxy
container), `initcontainers` + `iptables` (interception), `probes` (kubelet probes through the
proxy), `volumes` (the identity volume), `patches` (JSON Patch); `settings` holds the knobs; the
annotations and container names are `smimesh.kube.names`.
"""

from smimesh.webhooks.injection import (
    admission,
    decisions,
    errors,
    initcontainers,
    injecting,
    iptables,
    patches,
    probes,
    settings,
    sidecars,
    volumes,
    workloads,
)

__all__ = [
    "admission",
    "decisions",
    "errors",
    "initcontainers",
    "injecting",
    "iptables",
    "patches",
    "probes",
    "settings",
    "sidecars",
    "volumes",
    "workloads",
]
