"""`kubectl smi version`: the client's version and, when a cluster is configured, the
apiserver's (operator and proxy versions come once the operator reports them).

Registered by `smimesh.cli.main`; reaches the cluster through `smimesh.cli.connecting`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

import smimesh
from smimesh.cli import connecting
from smimesh.kube import clients


def _configured(kubeconfig: Path | None) -> bool:
    """Whether any cluster is configured at all (else there is no server to ask)."""
    if kubeconfig is not None or os.environ.get("KUBECONFIG"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return (Path.home() / ".kube" / "config").is_file()


def version(
    client_only: Annotated[
        bool, typer.Option("--client", help="Only the client version; never contact a cluster.")
    ] = False,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Print the smimesh client version and the Kubernetes server version.

    Without any kubeconfig only the client version is printed. Exit code 0, or 2 (after
    printing the client version) when a configured cluster cannot be reached.

    Example: kubectl smi version --context kind-smimesh
    """
    typer.echo(f"smimesh client {smimesh.__version__}")
    if client_only or not _configured(kubeconfig):
        return
    try:
        api = clients.api_client(kubeconfig, context=context)
    except clients.NoClusterError as exc:
        connecting.fail(str(exc))
    with api:
        try:
            server = connecting.server_version(api)
        except connecting.UnreachableError as exc:
            connecting.fail(f"cannot reach the Kubernetes API at {api.configuration.host}: {exc}")
    typer.echo(f"Kubernetes server {server}")


def register(app: typer.Typer) -> None:
    app.command("version")(connecting.guarded(version))
