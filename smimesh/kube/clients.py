"""Kubernetes API clients built from a kubeconfig file or the in-cluster ServiceAccount.

Used by the operator, the CLI and `smimesh.testing`; a leaf module (imports nothing of ours).
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config


class NoClusterError(RuntimeError):
    """No kubeconfig and not in a cluster; the message says where we looked."""


def api_client(kubeconfig: Path | None = None, *, context: str | None = None) -> client.ApiClient:
    """An ApiClient for `kubeconfig`; else $KUBECONFIG, in-cluster, or ~/.kube/config."""
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
    if path is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            path = str(Path.home() / ".kube" / "config")
    try:
        loaded: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context
        )
    except (config.ConfigException, OSError) as exc:
        raise NoClusterError(
            f"cannot load a kubeconfig from {path} ({exc}); pass --kubeconfig, set "
            "KUBECONFIG, or run inside a cluster"
        ) from exc
    return loaded
