"""The `smimesh-init` container: runs `smimesh sidecar init` once to redirect the pod's traffic.

Called by `injecting` unless settings say CNI mode (then a CNI plugin does the same job without
privileges). Its arguments come from `iptables`; it needs NET_ADMIN and NET_RAW, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smimesh.kube import names
from smimesh.webhooks.injection import iptables, settings


def init_container(
    pod_annotations: Mapping[str, str], config: settings.InjectionSettings
) -> dict[str, Any]:
    return {
        "name": names.INIT_CONTAINER,
        "image": config.proxy_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(config.init_command),
        "args": iptables.init_arguments(pod_annotations, config),
        "resources": {kind: dict(values) for kind, values in config.init_resources.items()},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    }
