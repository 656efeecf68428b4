"""The names injection reads and writes: annotation and label keys, container and volume names.

Read by `decisions` (whether to inject), `iptables` (per-pod exclusions) and `probes` (where the
original probes go); users write the inputs, the sidecar reads `ORIGINAL_PROBES`.
"""

from __future__ import annotations

INJECT = "smimesh.dev/inject"
"""Namespace label or pod annotation: `enabled` or `disabled` (the pod annotation wins)."""
ENABLED = "enabled"
DISABLED = "disabled"
INJECTED = "smimesh.dev/injected"
"""Set on injected pods (value: the proxy image); its presence makes injection a no-op."""
ORIGINAL_PROBES = "smimesh.dev/original-probes"
"""JSON `{"<container>/<livez|readyz|startupz>": <original probe action>}` for the sidecar."""
EXCLUDE_INBOUND_PORTS = "smimesh.dev/exclude-inbound-ports"
EXCLUDE_OUTBOUND_PORTS = "smimesh.dev/exclude-outbound-ports"
EXCLUDE_OUTBOUND_CIDRS = "smimesh.dev/exclude-outbound-ip-ranges"
"""Comma-separated lists that bypass interception (e.g. a database outside the mesh)."""

PROXY_CONTAINER = "smimesh-proxy"
INIT_CONTAINER = "smimesh-init"
IDENTITY_VOLUME = "smimesh-identity"
