"""Reading SMI objects from a cluster the way they are stored, and typing them.

Used by the `split` and `status` command modules. Objects are listed in the version their CRD
stores (which the apiserver serves without a conversion webhook), then typed with
`smimesh.smi`: first as the version they are served as, else as the version whose layout they
still have (a CRD without conversion serves a v1alpha1 body, Quantity weights and all, under
any version), so a v1alpha1 split's weights keep their ratio in the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic
from kubernetes import client

from smimesh.cli import connecting
from smimesh.smi import conversion, kinds
from smimesh.smi.objects import Resource

CRD_KINDS: tuple[kinds.KindInfo, ...] = tuple(info for info in kinds.KINDS if info.crd)


class NotInstalledError(LookupError):
    """The kind's CRD is not in the cluster."""


@dataclass(frozen=True)
class Stored:
    """One object as read: the raw JSON, the version whose layout it has, and its hub form."""

    raw: dict[str, Any]
    shape_version: str
    hub: Resource | None
    problem: str | None = None

    @property
    def namespace(self) -> str:
        return str(self.raw.get("metadata", {}).get("namespace", ""))

    @property
    def name(self) -> str:
        return str(self.raw.get("metadata", {}).get("name", ""))

    @property
    def conditions(self) -> list[dict[str, Any]]:
        found = (self.raw.get("status") or {}).get("conditions") or []
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


def typed(raw: dict[str, Any], info: kinds.KindInfo) -> Stored:
    """Type `raw` in the version it is served as, else in the newest version it fits."""
    served = str(raw.get("apiVersion", "")).rpartition("/")[2]
    order = [served, *sorted((v for v in info.versions if v != served), reverse=True)]
    first_error = ""
    for version in order:
        model = info.versions.get(version)
        if model is None:
            continue
        try:
            obj = model.model_validate({**raw, "apiVersion": f"{info.group}/{version}"})
            return Stored(raw, version, conversion.to_hub(obj))
        except (pydantic.ValidationError, conversion.ConversionError) as exc:
            first_error = first_error or _first(exc)
    return Stored(raw, served, None, first_error or "not an SMI object")


def _first(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}"
    return str(exc)
