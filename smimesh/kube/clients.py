"""Kubernetes API clients built from a kubeconfig file.

Used by the operator, the CLI and `smimesh.testing`; a leaf module (imports nothing of ours).
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path | None = None, *, context: str | None = None) -> client.ApiClient:
    """An ApiClient for `kubeconfig` (default: $KUBECONFIG or ~/.kube/config, or in-cluster)."""
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    loaded: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig else None, context=context
    )
    return loaded
