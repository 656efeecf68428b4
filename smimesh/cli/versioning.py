"""`kubectl smi version`: the client's version and, when a cluster is configured, the
apiserver's, the operator's and the proxies'.

Registered by `smimesh.cli.main`; reaches the cluster through `smimesh.cli.connecting` and the
sidecars through `smimesh.cli.meshedpods`. Where each version comes from:
- operator: the image tag of the Deployment smimesh-system/smimesh-operator (what is
  installed; the release tags images with the package version), with its ready replicas and
  the holder of the leader Lease (which also names an operator running outside the cluster,
  as in `make demo`; its version is not recorded anywhere, so it is not shown);
- proxies: each meshed pod's sidecar reports its version on its metrics-only port (`/`); pods are
  counted per version. (The sidecar also sends it to the operator in `Hello.proxy_version`,
  but the operator does not publish it.)
"""

from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from kubernetes import client

import smimesh
from smimesh.cli import connecting, meshedpods
from smimesh.kube import clients, names


def _configured(kubeconfig: Path | None) -> bool:
    """Whether any cluster is configured at all (else there is no server to ask)."""
    if kubeconfig is not None or os.environ.get("KUBECONFIG"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return (Path.home() / ".kube" / "config").is_file()


def _read(read: Any, *args: Any) -> Any:
    """The object, or None when it does not exist or we may not read it."""
    try:
        return read(*args, _request_timeout=connecting.REQUEST_TIMEOUT)
    except client.ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise


def operator_version(api: client.ApiClient) -> str:
    """`smimesh operator ...`: the Deployment's image tag, ready replicas and Lease holder."""
    namespace, name = names.MESH_NAMESPACE, names.OPERATOR_SERVICE
    deployment = _read(client.AppsV1Api(api).read_namespaced_deployment, name, namespace)
    lease = _read(client.CoordinationV1Api(api).read_namespaced_lease, name, namespace)
    spec = lease.spec if lease is not None else None
    leader = ""
    if spec is not None and spec.holder_identity:
        renewed = spec.renew_time or spec.acquire_time
        age = (datetime.datetime.now(datetime.UTC) - renewed).total_seconds() if renewed else 1e9
        fresh = age <= float(spec.lease_duration_seconds or 15)
        leader = f"leader {spec.holder_identity}" + ("" if fresh else " (Lease expired)")
    if deployment is None:
        where = f"no Deployment {namespace}/{name}"
        return f"smimesh operator: not installed ({where}{'; ' + leader if leader else ''})"
    containers = deployment.spec.template.spec.containers or []
    image = next((c.image for c in containers if c.name == "operator"), None) or (
        containers[0].image if containers else ""
    )
    tag = _tag(str(image or ""))
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    ready = (deployment.status.ready_replicas if deployment.status else None) or 0
    details = [f"image {image}", f"{ready}/{wanted} replicas ready", *([leader] if leader else [])]
    return f"smimesh operator {tag} ({', '.join(details)})"


def _tag(image: str) -> str:
    """The tag of an image reference (`repo/name:tag@digest` -> tag), else `unknown`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "unknown"


def proxy_versions(api: client.ApiClient, *, port: int) -> str:
    """`smimesh proxies ...`: meshed pods counted per version their sidecars report."""
    try:
        meshed = [pod for pod in meshedpods.list_pods(api, None) if pod.meshed]
    except client.ApiException as exc:
        if exc.status != 403:
            raise
        return "smimesh proxies: unknown (not allowed to list pods)"
    if not meshed:
        return "smimesh proxies: none (no meshed pods)"
    found: Counter[str] = Counter()
    reachable = [pod for pod in meshed if pod.ip]
    for answer in meshedpods.get_all(reachable, "/", port=port).values():
        version = None
        if not isinstance(answer, meshedpods.AdminError):
            try:
                version = json.loads(answer).get("version")
            except (ValueError, AttributeError):
                version = None
        found[str(version) if version else "unknown (metrics port did not answer)"] += 1
    if len(reachable) < len(meshed):
        found["unknown (no pod IP)"] += len(meshed) - len(reachable)
    return "; ".join(
        f"smimesh proxies {version} ({count} pod{'s' if count != 1 else ''})"
        for version, count in sorted(found.items())
    )


def version(
    client_only: Annotated[
        bool, typer.Option("--client", help="Only the client version; never contact a cluster.")
    ] = False,
    metrics_port: meshedpods.MetricsPort = meshedpods.METRICS_PORT,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Print the versions of the smimesh client, Kubernetes, the operator and the proxies.

    The operator's is the image tag of its Deployment (with its ready replicas and the Lease
    holder); each proxy reports its own on its metrics-only port, and pods are counted per
    version. Without any kubeconfig only the client version is printed. Exit code 0, or 2
    (after printing the client version) when a configured cluster cannot be reached.

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
        typer.echo(operator_version(api))
        typer.echo(proxy_versions(api, port=metrics_port))


def register(app: typer.Typer) -> None:
    app.command("version")(connecting.guarded(version))
