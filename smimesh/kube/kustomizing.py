"""Renders a kustomization (smimesh/manifests/ or an overlay) into a list of objects, in apply
order.

Used by `installing`, the one install path of `kubectl smi install` and the tests' local
meshes. Uses `kubectl kustomize` when given a kubectl or one is on PATH, else a built-in
renderer for the subset smimesh's own kustomizations use — `resources` (files and
directories), `replicas`, and `patches` of whole objects merged as JSON merge patches (lists
are replaced, so our patches only add whole lists) — and refuses anything else rather than
guess. Both give the same objects (a test compares them) in kustomize's legacy order:
namespaces and CRDs first, webhook configurations last.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "patches", "replicas"}

# kustomize's "legacy" sort order (api/resid/gvk.go): these kinds first, in this order …
ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
# … and these last, once everything they call exists.
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class RenderError(ValueError):
    """A kustomization that cannot be rendered; the message names the file."""


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise RenderError(f"{directory}: no kustomization.yaml")


def _load(path: Path) -> list[Object]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: {exc}") from None
    for document in documents:
        if not isinstance(document, dict) or "kind" not in document:
            raise RenderError(f"{path}: a document is not a Kubernetes object")
    return documents


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def _matches(obj: Object, target: dict[str, Any]) -> bool:
    meta = obj.get("metadata", {})
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    wanted = {
        "kind": obj.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "group": group,
        "version": version,
    }
    return all(wanted.get(key) == value for key, value in target.items())


def _patch(objects: list[Object], entry: dict[str, Any], root: Path) -> None:
    if "path" in entry:
        documents = _load(root / entry["path"])
    elif "patch" in entry:
        documents = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
    else:
        raise RenderError(f"{root}: a patch needs `path` or `patch`")
    for document in documents:
        if not isinstance(document, dict):
            raise RenderError(f"{root}: JSON6902 patches need `kubectl kustomize`")
        target = entry.get("target") or {
            "kind": document.get("kind"),
            "name": document.get("metadata", {}).get("name"),
        }
        hits = [i for i, obj in enumerate(objects) if _matches(obj, target)]
        if not hits:
            raise RenderError(f"{root}: patch target {target} matches nothing")
        body = {k: v for k, v in document.items() if k not in ("apiVersion", "kind", "metadata")}
        for i in hits:
            objects[i] = merge(objects[i], body)


def _render(directory: Path, seen: tuple[Path, ...]) -> list[Object]:
    directory = directory.resolve()
    if directory in seen:
        raise RenderError(f"{directory}: kustomizations include each other")
    path = _kustomization_file(directory)
    spec = yaml.safe_load(path.read_text()) or {}
    unsupported = sorted(set(spec) - SUPPORTED)
    if unsupported:
        raise RenderError(
            f"{path}: {', '.join(unsupported)} need `kubectl kustomize` (put kubectl on PATH)"
        )
    objects: list[Object] = []
    for resource in spec.get("resources") or []:
        target = directory / resource
        if target.is_dir():
            objects += _render(target, (*seen, directory))
        elif target.is_file():
            objects += _load(target)
        else:
            raise RenderError(f"{path}: resource {resource} does not exist")
    for entry in spec.get("patches") or []:
        _patch(objects, entry, directory)
    for entry in spec.get("replicas") or []:
        hits = [o for o in objects if o.get("metadata", {}).get("name") == entry["name"]]
        for obj in hits:
            if "replicas" in obj.get("spec", {}):
                obj["spec"]["replicas"] = entry["count"]
    return objects


def sort_key(obj: Object) -> tuple[int, str, str, str]:
    """kustomize's legacy order: listed kinds first, webhooks last, then by GVK and name."""
    kind = str(obj.get("kind", ""))
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    meta = obj.get("metadata", {})
    return (
        rank,
        f"{obj.get('apiVersion')}/{kind}",
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def render_builtin(directory: Path) -> list[Object]:
    """Render with the built-in subset renderer (no kubectl needed)."""
    return sorted(_render(directory, ()), key=sort_key)


def render_kubectl(directory: Path, kubectl: str) -> list[Object]:
    """Render with `kubectl kustomize`."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def render(directory: Path, *, kubectl: str | None = None) -> list[Object]:
    """The objects of a kustomization, in apply order; `kubectl` (or the one on PATH) if
    found, else the built-in renderer."""
    found = kubectl or shutil.which("kubectl")
    objects = render_kubectl(directory, found) if found else render_builtin(directory)
    return sorted(objects, key=sort_key)
