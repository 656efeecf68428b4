"""`kubectl smi install` and `kubectl smi uninstall`: apply (or delete) the rendered
manifests/ kustomization server-side, as field manager `smimesh`.

Registered by `smimesh.cli.main`. Renders with `smimesh.cli.kustomizing`, moves the objects to
another mesh namespace when asked (`relocate`), and talks to the apiserver through the dynamic
client built on `smimesh.cli.connecting`. `--dry-run` asks the apiserver to check every write
without persisting it; `--render` prints the YAML and contacts nothing.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic import exceptions

from smimesh.cli import connecting, kustomizing
from smimesh.kube import names

FIELD_MANAGER = "smimesh"
REPO_MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
    "PriorityClass",
}

Manifests = Annotated[
    Path | None,
    typer.Option(
        "--manifests", help="A kustomization directory (default: this checkout's manifests/)."
    ),
]
MeshNamespace = Annotated[
    str, typer.Option("--namespace", "-n", help="The mesh namespace to install into.")
]
Ha = Annotated[
    bool, typer.Option("--ha", help="Two operator replicas on different nodes (overlays/ha).")
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Let the apiserver check every write; persist nothing.")
]


def _label(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{str(obj.get('kind', '?')).lower()}/{where}{meta.get('name', '?')}"


def relocate(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The objects moved from smimesh-system to `namespace`: the Namespace itself, every
    namespaced object, ServiceAccount subjects of bindings, and service references (CRD
    conversion, admission webhooks, the APIService). Cluster-scoped names stay: one mesh per
    cluster."""
    old = names.MESH_NAMESPACE
    if namespace == old:
        return objects
    moved = []
    for original in objects:
        obj = copy.deepcopy(original)
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") == "Namespace" and meta.get("name") == old:
            meta["name"] = namespace
        if meta.get("namespace") == old:
            meta["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") == old:
                subject["namespace"] = namespace
        conversion = (obj.get("spec") or {}).get("conversion") or {}
        hooks = [conversion.get("webhook") or {}, *(obj.get("webhooks") or [])]
        services = [(hook.get("clientConfig") or {}).get("service") or {} for hook in hooks]
        if obj.get("kind") == "APIService":
            services.append((obj.get("spec") or {}).get("service") or {})
        for service in services:
            if service.get("namespace") == old:
                service["namespace"] = namespace
        moved.append(obj)
    return moved


def rendered(manifests: Path | None, *, ha: bool, namespace: str) -> list[dict[str, Any]]:
    """The objects to install; exits 2 if the manifests cannot be found or rendered."""
    root = manifests or REPO_MANIFESTS
    directory = root / "overlays" / "ha" if ha else root
    if not directory.is_dir():
        connecting.fail(f"no manifests at {directory}; pass --manifests DIR")
    try:
        objects = kustomizing.render(directory)
    except kustomizing.RenderError as exc:
        connecting.fail(str(exc))
    return relocate(objects, namespace)


def _resource(api: dynamic.DynamicClient, obj: dict[str, Any]) -> Any:
    return api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def _dynamic(kubeconfig: Path | None, context: str | None) -> dynamic.DynamicClient:
    api = connecting.api_client(kubeconfig, context)
    connecting.require_reachable(api)
    try:
        return dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    except connecting.UNREACHABLE as exc:
        connecting.fail(f"API discovery failed: {connecting.describe(exc)}")


def _error(exc: Exception) -> str:
    if isinstance(exc, client.ApiException | exceptions.DynamicApiError):
        body = getattr(exc, "body", None)
        try:
            message = yaml.safe_load(body).get("message") if body else None
        except (yaml.YAMLError, AttributeError):
            message = None
        return str(message or getattr(exc, "reason", exc))
    return connecting.describe(exc)


def _wait_established(api: dynamic.DynamicClient, crds: list[str], timeout: float = 60) -> None:
    extensions = client.ApiextensionsV1Api(api.client)
    deadline = time.monotonic() + timeout
    for name in crds:
        while True:
            crd = extensions.read_custom_resource_definition(name)
            conditions = (crd.status.conditions if crd.status else None) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                connecting.fail(f"CRD {name} did not become Established", connecting.FAILED)
            time.sleep(0.2)


def install(
    dry_run: DryRun = False,
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    ha: Ha = False,
    render: Annotated[
        bool, typer.Option("--render", help="Print the manifests as YAML; contact no cluster.")
    ] = False,
    manifests: Manifests = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Install smimesh: namespace, SMI CRDs, RBAC, operator Deployment, Service and PDB.

    Renders the manifests/ kustomization (overlays/ha with --ha) and applies every object
    server-side as field manager "smimesh", taking over fields other managers set.
    Running it again upgrades in place. Exit code 0 when applied, 1 if the apiserver
    refused an object, 2 for bad arguments or an unreachable cluster.

    Example: kubectl smi install --dry-run && kubectl smi install --ha
    """
    objects = rendered(manifests, ha=ha, namespace=namespace)
    if render:
        typer.echo(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True), nl=False)
        return
    api = _dynamic(kubeconfig, context)
    suffix = " (server dry run)" if dry_run else ""
    new_namespaces = set()
    for obj in objects:
        if obj["kind"] == "Namespace":
            try:
                api.resources.get(api_version="v1", kind="Namespace").get(
                    name=obj["metadata"]["name"]
                )
            except exceptions.NotFoundError:
                new_namespaces.add(obj["metadata"]["name"])
    failed = 0
    for obj in objects:
        try:
            _resource(api, obj).server_side_apply(
                body=obj,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            )
        except exceptions.NotFoundError as exc:
            if dry_run and obj["metadata"].get("namespace") in new_namespaces:
                typer.echo(f"- {_label(obj)}: not checked (its namespace is not created yet)")
                continue
            typer.echo(f"✖ {_label(obj)}: {_error(exc)}", err=True)
            failed += 1
        except (exceptions.DynamicApiError, exceptions.ResourceNotFoundError) as exc:
            typer.echo(f"✖ {_label(obj)}: {_error(exc)}", err=True)
            failed += 1
        except connecting.UNREACHABLE as exc:
            connecting.fail(f"{_label(obj)}: {connecting.describe(exc)}")
        else:
            typer.echo(f"✔ {_label(obj)} applied{suffix}")
    if failed:
        connecting.fail(f"{failed} of {len(objects)} objects were refused", connecting.FAILED)
    crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    if not dry_run:
        _wait_established(api, crds)
    typer.echo(
        f"{len(objects)} objects {'checked' if dry_run else 'applied'} in {namespace}; "
        "next: kubectl smi check"
    )


def uninstall(
    dry_run: DryRun = False,
    namespace: MeshNamespace = names.MESH_NAMESPACE,
    crds: Annotated[
        bool,
        typer.Option(
            "--crds", help="Also delete the SMI CRDs, and with them every SMI object (!)."
        ),
    ] = False,
    manifests: Manifests = None,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Remove what `install` created, in reverse order.

    The SMI CRDs stay unless --crds is given: deleting them deletes every TrafficSplit,
    TrafficTarget and route in the cluster, including those Flagger or Argo Rollouts own.
    Exit code 0 when deleted (or already gone), 1 if a deletion was refused, 2 for bad
    arguments or an unreachable cluster.

    Example: kubectl smi uninstall --dry-run
    """
    objects = rendered(manifests, ha=False, namespace=namespace)
    api = _dynamic(kubeconfig, context)
    suffix = " (server dry run)" if dry_run else ""
    failed = 0
    for obj in reversed(objects):
        if obj["kind"] == "CustomResourceDefinition" and not crds:
            typer.echo(f"- {_label(obj)}: kept (pass --crds to delete it)")
            continue
        meta = obj["metadata"]
        try:
            _resource(api, obj).delete(
                name=meta["name"],
                namespace=meta.get("namespace"),
                dry_run="All" if dry_run else None,
            )
        except exceptions.NotFoundError:
            typer.echo(f"- {_label(obj)}: already gone")
        except (exceptions.DynamicApiError, exceptions.ResourceNotFoundError) as exc:
            typer.echo(f"✖ {_label(obj)}: {_error(exc)}", err=True)
            failed += 1
        except connecting.UNREACHABLE as exc:
            connecting.fail(f"{_label(obj)}: {connecting.describe(exc)}")
        else:
            typer.echo(f"✔ {_label(obj)} deleted{suffix}")
    if failed:
        connecting.fail(f"{failed} deletions were refused", connecting.FAILED)


def register(app: typer.Typer) -> None:
    app.command("install")(connecting.guarded(install))
    app.command("uninstall")(connecting.guarded(uninstall))
