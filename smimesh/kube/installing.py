"""The one way smimesh is installed: render the kustomization shipped in the package,
`smimesh/manifests/` (`kustomizing`; reached through `importlib.resources`, so an installed
wheel carries it), move it to another mesh namespace when asked (`relocate`), point the
operator at another image (`with_image`), apply every object server-side as field manager
`smimesh`, and wait until its CRDs are Established (`rollouts` waits for the operator itself);
uninstalling deletes the same objects in reverse order, then what the operator made outside
its namespace (`leftovers`).

Used by `kubectl smi install|uninstall` (`smimesh.cli.installing`, which reports each `Step`)
and by the local meshes of tests and `make demo` (`smimesh.testing.meshes`, through
`install`), so the tests install exactly what users install.
"""

from __future__ import annotations

import copy
import importlib.resources
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic import exceptions

import smimesh
from smimesh._aio import waiting
from smimesh.kube import kustomizing, names

Object = dict[str, Any]
MANIFESTS = Path(str(importlib.resources.files("smimesh") / "manifests"))
"""The kustomize base shipped as package data (its HA overlay is `overlays/ha` below it): in
a checkout `smimesh/manifests/`, in an installed wheel the copy in site-packages."""

DEFAULT_IMAGE = f"{names.IMAGE_REPOSITORY}:{smimesh.__version__}"
"""The image the manifests name: this version's."""

Outcome = Literal["applied", "unchecked", "deleted", "gone", "kept", "refused"]
"""What became of one object: `unchecked` is a server dry run into a namespace not created
yet; `kept` a CRD that uninstall leaves; `refused` the apiserver said no (see `message`)."""


class InstallError(RuntimeError):
    """The manifests cannot be rendered, or the install did not complete."""


class NoManifestsError(InstallError):
    """The kustomization directory does not exist."""


@dataclass(frozen=True)
class Step:
    obj: Object
    outcome: Outcome
    message: str = ""
    """The apiserver's reason, for `refused`."""


def label(obj: Object) -> str:
    """`kind/namespace/name` (or `kind/name`), as the CLI reports an object."""
    meta = obj.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{str(obj.get('kind', '?')).lower()}/{where}{meta.get('name', '?')}"


def relocate(objects: list[Object], namespace: str) -> list[Object]:
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


def is_operator(obj: Object) -> bool:
    """Whether `obj` is the operator's Deployment."""
    return (
        obj.get("kind") == "Deployment"
        and obj.get("metadata", {}).get("name") == names.OPERATOR_DEPLOYMENT
    )


def with_image(objects: list[Object], image: str) -> list[Object]:
    """The objects with the operator Deployment's container running `image`; InstallError if
    the manifests have no such Deployment."""
    moved = copy.deepcopy(objects)
    containers = [
        container
        for obj in moved
        if is_operator(obj)
        for container in obj["spec"]["template"]["spec"].get("containers") or []
        if container.get("name") == names.OPERATOR_CONTAINER
    ]
    if not containers:
        raise InstallError(
            f"the manifests have no Deployment {names.OPERATOR_DEPLOYMENT} with a container "
            f"{names.OPERATOR_CONTAINER!r} to set the image of"
        )
    for container in containers:
        container["image"] = image
    return moved


def rendered(
    manifests: Path | None = None,
    *,
    ha: bool = False,
    namespace: str = names.MESH_NAMESPACE,
    kubectl: str | None = None,
) -> list[Object]:
    """The objects to install, in apply order: `manifests` (default `MANIFESTS`) or its HA
    overlay, rendered with `kubectl` if given or on PATH, moved into `namespace`."""
    root = manifests or MANIFESTS
    directory = root / "overlays" / "ha" if ha else root
    if not directory.is_dir():
        raise NoManifestsError(f"no manifests at {directory}")
    try:
        objects = kustomizing.render(directory, kubectl=kubectl)
    except kustomizing.RenderError as exc:
        raise InstallError(str(exc)) from None
    return relocate(objects, namespace)


def _resource(api: dynamic.DynamicClient, obj: Object) -> Any:
    return api.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])


def _message(exc: Exception) -> str:
    if isinstance(exc, client.ApiException):
        body = getattr(exc, "body", None)
        try:
            message = yaml.safe_load(body).get("message") if body else None
        except (yaml.YAMLError, AttributeError):
            message = None
        return str(message or getattr(exc, "reason", exc))
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _absent_namespaces(api: dynamic.DynamicClient, objects: Sequence[Object]) -> set[str]:
    absent = set()
    for obj in objects:
        if obj["kind"] == "Namespace":
            try:
                api.resources.get(api_version="v1", kind="Namespace").get(
                    name=obj["metadata"]["name"]
                )
            except exceptions.NotFoundError:
                absent.add(obj["metadata"]["name"])
    return absent


def apply(
    api: dynamic.DynamicClient, objects: Sequence[Object], *, dry_run: bool = False
) -> Iterator[Step]:
    """Apply each object server-side as `names.FIELD_MANAGER`, taking over fields other
    managers set; one `Step` per object, in order. `dry_run` lets the apiserver check every
    write without persisting it. Errors other than the apiserver's refusals (an unreachable
    apiserver) propagate while the object after the last step is being applied."""
    absent = _absent_namespaces(api, objects)
    return _applying(api, objects, dry_run, absent)


def _applying(
    api: dynamic.DynamicClient, objects: Sequence[Object], dry_run: bool, absent: set[str]
) -> Iterator[Step]:
    for obj in objects:
        try:
            _resource(api, obj).server_side_apply(
                body=obj,
                field_manager=names.FIELD_MANAGER,
                force_conflicts=True,
                dry_run="All" if dry_run else None,
            )
        except exceptions.NotFoundError as exc:
            if dry_run and obj["metadata"].get("namespace") in absent:
                yield Step(obj, "unchecked")
            else:
                yield Step(obj, "refused", _message(exc))
        except (exceptions.DynamicApiError, exceptions.ResourceNotFoundError) as exc:
            yield Step(obj, "refused", _message(exc))
        else:
            yield Step(obj, "applied")


def delete(
    api: dynamic.DynamicClient,
    objects: Sequence[Object],
    *,
    dry_run: bool = False,
    crds: bool = False,
) -> Iterator[Step]:
    """Delete the objects in reverse order, one `Step` each; CRDs are `kept` unless `crds`
    (deleting one deletes every object of its kind, Flagger's and Argo's splits included)."""
    for obj in reversed(objects):
        if obj["kind"] == "CustomResourceDefinition" and not crds:
            yield Step(obj, "kept")
            continue
        meta = obj["metadata"]
        try:
            _resource(api, obj).delete(
                name=meta["name"],
                namespace=meta.get("namespace"),
                dry_run="All" if dry_run else None,
            )
        except exceptions.NotFoundError:
            yield Step(obj, "gone")
        except (exceptions.DynamicApiError, exceptions.ResourceNotFoundError) as exc:
            yield Step(obj, "refused", _message(exc))
        else:
            yield Step(obj, "deleted")


def wait_established(
    api: dynamic.DynamicClient, objects: Sequence[Object], *, timeout: float = 60
) -> None:
    """Until every CRD among `objects` is Established; InstallError after `timeout` seconds."""
    extensions = client.ApiextensionsV1Api(api.client)
    crds = [o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"]
    pending = list(crds)

    def established() -> bool:
        while pending:
            crd = extensions.read_custom_resource_definition(pending[0])
            conditions = (crd.status.conditions if crd.status else None) or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
            pending.pop(0)
        return True

    waiting.eventually_sync(
        established,
        timeout=timeout,
        message=lambda: f"CRD {pending[0]} did not become Established",
        interval=0.2,
        error=InstallError,
    )


def install(api: client.ApiClient, *, kubectl: str | None = None) -> int:
    """Install the packaged manifests (`MANIFESTS`) into smimesh-system, as `kubectl smi
    install` does, and wait for the CRDs; the number of objects applied. InstallError names
    every object the apiserver refused."""
    objects = rendered(kubectl=kubectl)
    applier = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    refused = [
        f"{label(step.obj)}: {step.message}"
        for step in apply(applier, objects)
        if step.outcome == "refused"
    ]
    if refused:
        raise InstallError(f"{len(refused)} of {len(objects)} objects refused: {refused}")
    wait_established(applier, objects)
    return len(objects)


def leftovers(api: dynamic.DynamicClient, objects: Sequence[Object]) -> list[Object]:
    """What a running operator made outside the mesh namespace and uninstalling removes: the
    trust-bundle ConfigMaps of meshed namespaces (labelled part of smimesh). What it made
    inside (the CA Secret, its Lease) goes with the namespace. None unless `objects` (what
    is being uninstalled) hold the operator: manifests of one's own leave the mesh's alone."""
    if not any(is_operator(obj) for obj in objects):
        return []
    config_maps = api.resources.get(api_version="v1", kind="ConfigMap")
    found = config_maps.get(
        label_selector=f"{names.PART_OF_LABEL}={names.PART_OF}",
        field_selector=f"metadata.name={names.TRUST_BUNDLE_CONFIGMAP}",
    )
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": item.metadata.name, "namespace": item.metadata.namespace},
        }
        for item in found.items
    ]
