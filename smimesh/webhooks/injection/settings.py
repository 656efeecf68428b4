"""What the injector adds: the proxy image, its ports, user, resources and token, as one frozen
settings object with sane defaults.

Built once by the operator (from its flags) or by `kubectl smi inject` (from its options) and
passed to `injecting.inject_pod`; every other module of this package reads it, none changes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import smimesh
from smimesh.kube import names as kube_names

NATIVE_SIDECARS_SINCE = (1, 29)
"""Restartable init containers (KEP-753) are on by default from Kubernetes 1.29."""


@dataclass(frozen=True)
class Ports:
    """The proxy's ports inside the pod; an app container may not declare any of them. The
    admin port binds 127.0.0.1 (the pod alone reaches it); Prometheus scrapes `metrics` and
    kubelet probes `probes`, both on the pod's address."""

    admin: int = kube_names.SIDECAR_ADMIN_PORT
    outbound: int = 15001
    inbound: int = 15003
    probes: int = kube_names.SIDECAR_PROBE_PORT
    metrics: int = kube_names.SIDECAR_METRICS_PORT

    def all(self) -> tuple[int, ...]:
        return (self.admin, self.outbound, self.inbound, self.probes, self.metrics)


def _frozen(mapping: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({key: MappingProxyType(dict(value)) for key, value in mapping.items()})


@dataclass(frozen=True)
class InjectionSettings:
    """Everything injection needs to know; the defaults are a working mesh in `smimesh-system`."""

    proxy_image: str = f"{kube_names.IMAGE_REPOSITORY}:{smimesh.__version__}"
    """The mesh's one image (operator, sidecar, init); the operator's `--proxy-image`."""
    image_pull_policy: str = "IfNotPresent"
    mesh_namespace: str = kube_names.MESH_NAMESPACE
    trust_domain: str = "cluster.local"
    control_plane_address: str = "smimesh-operator.smimesh-system.svc:15010"
    native_sidecars: bool = True
    """Add the proxy as a restartable init container (set from the cluster version)."""
    cni_mode: bool = False
    """A CNI plugin sets up interception: no privileged iptables init container."""
    rewrite_probes: bool = True
    """Send kubelet's app probes through the proxy's probe port (see `probes`)."""
    proxy_uid: int = 1337
    """The proxy runs as this user; iptables lets its own traffic through unredirected."""
    ports: Ports = field(default_factory=Ports)
    token_audience: str = kube_names.TOKEN_AUDIENCE
    token_expiration_seconds: int = 3600
    trust_bundle_config_map: str = kube_names.TRUST_BUNDLE_CONFIGMAP
    proxy_command: tuple[str, ...] = ("smimesh", "sidecar", "run")
    init_command: tuple[str, ...] = ("smimesh", "sidecar", "init")
    wait_command: tuple[str, ...] = ("smimesh", "sidecar", "wait-ready")
    proxy_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: _frozen(
            {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
        )
    )
    init_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: _frozen(
            {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
        )
    )

    def __post_init__(self) -> None:
        if self.token_expiration_seconds < 600:
            raise ValueError("token_expiration_seconds must be at least 600 (a Kubernetes limit)")
        if len(set(self.ports.all())) != len(self.ports.all()):
            raise ValueError(f"the proxy ports must be distinct, got {self.ports}")


def supports_native_sidecars(version: str) -> bool:
    """Whether a cluster at `version` (`v1.30.2`, `1.29+`, `v1.28.3-gke.1`) runs native sidecars."""
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return (int(match.group(1)), int(match.group(2))) >= NATIVE_SIDECARS_SINCE
