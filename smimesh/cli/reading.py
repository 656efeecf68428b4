"""Reading SMI objects from a cluster the way they are stored, and typing them.

Used by the `split` and `status` command modules. Objects are listed in the version their CRD
stores (which the apiserver serves without a conversion webhook), then typed by
`smimesh.smi.documents.parse` with `any_version`: first as the version they are served as,
else as the version whose layout they still have (a CRD without conversion serves a v1alpha1
body, Quantity weights and all, under any version), so a v1alpha1 split's weights keep their
ratio in the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from smimesh.cli import connecting
from smimesh.smi import documents, kinds
from smimesh.smi.objects import Resource

CRD_KINDS: tuple[kinds.KindInfo, ...] = tuple(info for info in kinds.KINDS if info.crd)


class NotInstalledError(LookupError):
    """The kind's CRD is not in the cluster."""


@dataclass(frozen=True)
class Stored:
    """One object as read: the raw JSON, and what `smimesh.smi.documents.parse` made of it."""

    raw: dict[str, Any]
    parsed: documents.Parsed

    @property
    def shape_version(self) -> str:
        """The version whose layout the object has (its apiVersion's if it fits none)."""
        served = str(self.raw.get("apiVersion", "")).rpartition("/")[2]
        return self.parsed.version if self.hub is not None and self.parsed.version else served

    @property
    def hub(self) -> Resource | None:
        return self.parsed.hub

    @property
    def problem(self) -> str | None:
        """Why the object has no hub: its first error (path and reason)."""
        if self.hub is not None:
            return None
        errors = [p for p in self.parsed.problems if p.severity == "error"]
        if not errors:
            return "not an SMI object"
        return f"{errors[0].path}: {errors[0].reason}" if errors[0].path else errors[0].reason

    @property
    def namespace(self) -> str:
        return str(self.raw.get("metadata", {}).get("namespace", ""))

    @property
    def name(self) -> str:
        return str(self.raw.get("metadata", {}).get("name", ""))

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return conditions(self.raw)


def stored(raw: dict[str, Any]) -> Stored:
    """`raw` typed in the version it is served as, else in the newest version it fits."""
    return Stored(raw, documents.parse(raw, any_version=True))


def conditions(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The object's `status.conditions` (entries that are no objects left out)."""
    found = (raw.get("status") or {}).get("conditions") or []
    return [c for c in found if isinstance(c, dict)]


def storage_version(api: client.ApiClient, info: kinds.KindInfo) -> str:
    """The version the cluster stores `info` in; raises NotInstalledError without the CRD."""
    try:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
            info.crd_name, _request_timeout=connecting.REQUEST_TIMEOUT
        )
    except client.ApiException as exc:
        if exc.status == 404:
            raise NotInstalledError(f"the CRD {info.crd_name} is not installed") from None
        raise
    for version in crd.spec.versions:
        if version.storage:
            return str(version.name)
    return info.hub_version


def list_raw(
    api: client.ApiClient, info: kinds.KindInfo, version: str, namespace: str | None
) -> list[dict[str, Any]]:
    """Every object of a kind, in one namespace or (None) all of them, sorted by ns/name."""
    objects = client.CustomObjectsApi(api)
    listed: Any
    if namespace is None:
        listed = objects.list_cluster_custom_object(
            info.group, version, info.plural, _request_timeout=connecting.REQUEST_TIMEOUT
        )
    else:
        listed = objects.list_namespaced_custom_object(
            info.group, version, namespace, info.plural, _request_timeout=connecting.REQUEST_TIMEOUT
        )
    items: list[dict[str, Any]] = list(listed.get("items", []))
    return sorted(
        items, key=lambda o: (o.get("metadata", {}).get("namespace", ""), o["metadata"]["name"])
    )
