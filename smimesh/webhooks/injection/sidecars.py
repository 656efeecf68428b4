"""The proxy container itself: image, command, env, ports, probes, resources, security.

Called by `injecting`, which places it as a native sidecar (an init container with
`restartPolicy: Always`, started and ready before the app, stopped after it, so Jobs complete)
or, on older clusters, as the first app container with a postStart hook that blocks the app's
start until the proxy is ready.
"""

from __future__ import annotations

from typing import Any

from smimesh.kube import names
from smimesh.webhooks.injection import settings, volumes

READY_PATH = "/ready"
LIVE_PATH = "/live"
"""Served by the proxy on its probe port to kubelet (and on the loopback admin port, which
`wait-ready` polls)."""


def proxy_container(
    config: settings.InjectionSettings, *, native: bool, app_probes: bool
) -> dict[str, Any]:
    """The sidecar container; `app_probes` adds the env that hands it the original probes."""
    ports = config.ports
    container: dict[str, Any] = {
        "name": names.PROXY_CONTAINER,
        "image": config.proxy_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(config.proxy_command),
        # The token goes to the config server only over TLS verified against the mesh roots
        # (the sidecar refuses a token without them).
        "args": [
            "--token-file",
            f"{volumes.MOUNT_PATH}/{volumes.TOKEN_FILE}",
            "--trust-bundle",
            f"{volumes.MOUNT_PATH}/{volumes.BUNDLE_FILE}",
        ],
        "env": _env(config, app_probes=app_probes),
        "ports": [
            # The admin port is not listed: it binds 127.0.0.1, out of reach of the pod network.
            {"name": "smimesh-metrics", "containerPort": ports.metrics, "protocol": "TCP"},
            {"name": "smimesh-probes", "containerPort": ports.probes, "protocol": "TCP"},
        ],
        "readinessProbe": _probe(config, READY_PATH, period=2, failures=3),
        "livenessProbe": _probe(config, LIVE_PATH, period=10, failures=3),
        "resources": {kind: dict(values) for kind, values in config.proxy_resources.items()},
        "securityContext": {
            "runAsUser": config.proxy_uid,
            "runAsGroup": config.proxy_uid,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [volumes.identity_mount()],
    }
    if native:
        container["restartPolicy"] = "Always"
        # kubelet starts the next container only once this succeeds: the app finds the proxy up.
        container["startupProbe"] = _probe(config, READY_PATH, period=1, failures=120)
    else:
        container["lifecycle"] = {"postStart": {"exec": {"command": list(config.wait_command)}}}
    return container


def _probe(
    config: settings.InjectionSettings, path: str, *, period: int, failures: int
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": config.ports.probes, "scheme": "HTTP"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    }


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _env(config: settings.InjectionSettings, *, app_probes: bool) -> list[dict[str, Any]]:
    ports = config.ports
    env = [
        _field("SMIMESH_POD_NAME", "metadata.name"),
        _field("SMIMESH_POD_NAMESPACE", "metadata.namespace"),
        _field("SMIMESH_POD_IP", "status.podIP"),
        _field("SMIMESH_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        {"name": "SMIMESH_TRUST_DOMAIN", "value": config.trust_domain},
        {"name": "SMIMESH_CONTROL_PLANE", "value": config.control_plane_address},
        {"name": "SMIMESH_INTERCEPTION", "value": "transparent"},
        {"name": "SMIMESH_ADMIN_PORT", "value": str(ports.admin)},
        {"name": "SMIMESH_INBOUND_PORT", "value": str(ports.inbound)},
        {"name": "SMIMESH_OUTBOUND_PORT", "value": str(ports.outbound)},
        {"name": "SMIMESH_PROBE_PORT", "value": str(ports.probes)},
        {"name": "SMIMESH_METRICS_PORT", "value": str(ports.metrics)},
    ]
    if app_probes:
        env.append(
            _field(
                "SMIMESH_APP_PROBES", f"metadata.annotations['{names.ORIGINAL_PROBES_ANNOTATION}']"
            )
        )
    return env
