"""Kubelet probes rewritten to reach the app through the sidecar's probe port.

With traffic redirected (and mTLS required inbound) kubelet's plain probes would hit the proxy,
not the app. Called by `injecting`: each httpGet, tcpSocket and grpc probe of an app container
becomes an httpGet on the proxy's probe port at `/app-health/<container>/<livez|readyz|startupz>`;
the original action (named ports resolved) goes into the `smimesh.dev/original-probes`
annotation, which the sidecar reads and probes on kubelet's behalf. exec probes run inside the
container, so they stay as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from smimesh.webhooks.injection import settings

KINDS: Mapping[str, str] = {
    "livenessProbe": "livez",
    "readinessProbe": "readyz",
    "startupProbe": "startupz",
}
NETWORK_ACTIONS = ("httpGet", "tcpSocket", "grpc")


def health_path(container: str, kind: str) -> str:
    return f"/app-health/{container}/{kind}"


def rewrite_probes(
    containers: list[dict[str, Any]], config: settings.InjectionSettings
) -> dict[str, dict[str, Any]]:
    """Rewrite the probes of `containers` in place; return the originals by `container/kind`.

    A probe on a named port the container does not declare is left alone: kubelet reports
    that error exactly as it would without the mesh.
    """
    originals: dict[str, dict[str, Any]] = {}
    for container in containers:
        name = container["name"]
        for field, kind in KINDS.items():
            probe = container.get(field)
            if not isinstance(probe, dict):
                continue
            action = next((key for key in NETWORK_ACTIONS if key in probe), None)
            if action is None:
                continue
            original = copy.deepcopy(probe[action])
            port = _resolve_port(original.get("port"), container)
            if port is None:
                continue
            original["port"] = port
            originals[f"{name}/{kind}"] = {action: original}
            rewritten = {key: value for key, value in probe.items() if key not in NETWORK_ACTIONS}
            rewritten["httpGet"] = {
                "path": health_path(name, kind),
                "port": config.ports.probes,
                "scheme": "HTTP",
            }
            container[field] = rewritten
    return originals


def _resolve_port(port: object, container: Mapping[str, Any]) -> int | None:
    if isinstance(port, int):
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
    return None
