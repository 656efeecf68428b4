"""The names smimesh gives things in Kubernetes: its labels, annotations, namespace, the
Secret, ConfigMap and webhook configurations it owns, and the containers and volumes injection
adds. One place, so the operator, webhooks, CLI, conformance suite and local workloads agree.
A leaf module.
"""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "smimesh.dev"
MESH_NAMESPACE: Final = "smimesh-system"
OPERATOR_SERVICE: Final = "smimesh-operator"
OPERATOR_LEASE: Final = "smimesh-operator"
"""The coordination.k8s.io Lease the operator replicas elect their leader on."""
# The source component of the operator's Events.
EVENT_COMPONENT: Final = "smimesh-operator"
# The one image of the operator, the sidecar, its init container and the test app
# (docs/image.md); its tag is `smimesh.__version__`.
IMAGE_REPOSITORY: Final = "ghcr.io/smimesh/smimesh"
# The operator's Deployment and its container in the manifests (`kubectl smi install --image`).
OPERATOR_DEPLOYMENT: Final = "smimesh-operator"
OPERATOR_CONTAINER: Final = "operator"
# The label every object smimesh installs or the operator creates carries.
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
PART_OF: Final = "smimesh"
# The field manager of everything smimesh applies server-side (install, `kubectl smi split`).
FIELD_MANAGER: Final = "smimesh"

# Namespaces: membership in the mesh, and their access mode: "strict" (deny unless a
# TrafficTarget allows) or "permissive" (allow every caller).
NAMESPACE_MESH_LABEL: Final = f"{DOMAIN}/inject"
NAMESPACE_ACCESS_ANNOTATION: Final = f"{DOMAIN}/access-mode"

# Pods: injection requests and the marker a proxy-carrying pod bears.
INJECT_ANNOTATION: Final = f"{DOMAIN}/inject"
"""Namespace label or pod annotation: `enabled` or `disabled` (the pod annotation wins)."""
ENABLED: Final = "enabled"
DISABLED: Final = "disabled"
INJECTED_ANNOTATION: Final = f"{DOMAIN}/injected"
"""Set on injected pods (value: the proxy image); its presence makes injection a no-op."""
ORIGINAL_PROBES_ANNOTATION: Final = f"{DOMAIN}/original-probes"
"""JSON `{"<container>/<livez|readyz|startupz>": <original probe action>}` for the sidecar."""
# Comma-separated lists that bypass interception (e.g. a database outside the mesh).
EXCLUDE_INBOUND_PORTS_ANNOTATION: Final = f"{DOMAIN}/exclude-inbound-ports"
EXCLUDE_OUTBOUND_PORTS_ANNOTATION: Final = f"{DOMAIN}/exclude-outbound-ports"
EXCLUDE_OUTBOUND_CIDRS_ANNOTATION: Final = f"{DOMAIN}/exclude-outbound-ip-ranges"
# What injection adds to a pod.
PROXY_CONTAINER: Final = "smimesh-proxy"
INIT_CONTAINER: Final = "smimesh-init"
IDENTITY_VOLUME: Final = "smimesh-identity"
# "port=app_port,..." for workloads whose app listens elsewhere than the port callers use
# (local workloads share one host, so the app cannot listen on the Service's target port).
APP_PORTS_ANNOTATION: Final = f"{DOMAIN}/app-ports"
# Services: the protocol of ports that neither appProtocol nor the port name tells.
PROTOCOL_ANNOTATION: Final = f"{DOMAIN}/protocol"

# The mesh CA: its Secret in the mesh namespace, with the annotations of a root rotation
# (`kubectl smi ca rotate` sets the request, an RFC 3339 time; the operator records the
# request it acted on), and the ConfigMap of trust roots published for workloads.
CA_SECRET: Final = "smimesh-ca"
ROTATE_REQUESTED_ANNOTATION: Final = f"{DOMAIN}/rotate-requested-at"
ROTATE_HANDLED_ANNOTATION: Final = f"{DOMAIN}/rotate-handled"
TRUST_BUNDLE_CONFIGMAP: Final = "smimesh-trust-bundle"
TRUST_BUNDLE_KEY: Final = "ca.crt"
# The admission webhook configurations the operator keeps (and fills the CA bundle of).
INJECTOR_WEBHOOK: Final = "smimesh-injector"
VALIDATOR_WEBHOOK: Final = "smimesh-validator"

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
