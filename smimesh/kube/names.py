"""The names smimesh gives things in Kubernetes: its labels, annotations, namespace and the
identifiers of its API objects. One place, so the operator, webhooks, CLI and local workloads
agree. A leaf module.
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "smimesh.dev"
MESH_NAMESPACE: Final = "smimesh-system"
OPERATOR_SERVICE: Final = "smimesh-operator"
OPERATOR_LEASE: Final = "smimesh-operator"
"""The coordination.k8s.io Lease the operator replicas elect their leader on."""

# Namespaces: membership in the mesh, and their access mode: "strict" (deny unless a
# TrafficTarget allows) or "permissive" (allow every caller).
NAMESPACE_MESH_LABEL: Final = f"{DOMAIN}/inject"
NAMESPACE_ACCESS_ANNOTATION: Final = f"{DOMAIN}/access-mode"

# Pods: injection requests and the marker a proxy-carrying pod bears.
INJECT_ANNOTATION: Final = f"{DOMAIN}/inject"
INJECTED_ANNOTATION: Final = f"{DOMAIN}/injected"
# "port=app_port,..." for workloads whose app listens elsewhere than the port callers use
# (local workloads share one host, so the app cannot listen on the Service's target port).
APP_PORTS_ANNOTATION: Final = f"{DOMAIN}/app-ports"
# Services: the protocol of ports that neither appProtocol nor the port name tells.
PROTOCOL_ANNOTATION: Final = f"{DOMAIN}/protocol"

TOKEN_AUDIENCE: Final = "smimesh"
# TokenReview's user.extra keys of a token bound to a Pod (what the kubelet projects).
TOKEN_POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
TOKEN_POD_UID_EXTRA: Final = "authentication.kubernetes.io/pod-uid"

# The sidecar's ports in a pod. The admin port (everything, `/config` only with
# `--admin-config`) binds 127.0.0.1; the metrics port serves `/metrics`, `/ready`, `/live` on
# the pod's address for Prometheus; the probe port answers kubelet.
SIDECAR_ADMIN_PORT: Final = 15000
SIDECAR_METRICS_PORT: Final = 15090
SIDECAR_PROBE_PORT: Final = 15020
# Pods: `enabled` makes the injected sidecar serve `/config` on its (loopback) admin port.
ADMIN_CONFIG_ANNOTATION: Final = f"{DOMAIN}/admin-config"
# Set on injected pods (unless the pod has its own) so that Prometheus' usual
# `kubernetes-pods` scrape job finds the sidecar's metrics port.
PROMETHEUS_SCRAPE_ANNOTATION: Final = "prometheus.io/scrape"
PROMETHEUS_PORT_ANNOTATION: Final = "prometheus.io/port"
PROMETHEUS_PATH_ANNOTATION: Final = "prometheus.io/path"
