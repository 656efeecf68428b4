"""Lossless conversion between every SMI version and its kind's hub (the newest version).

Called by `validating` (every object is checked as its hub) and, later, by the conversion
webhook and the operator (which read only hubs). Data one side cannot express rides in an
annotation on the other side: `conversion.smimesh.io/hub` on an older object holds hub-only
fields, `conversion.smimesh.io/<version>` on a hub holds that version's extra fields; each is
consumed when converting back, so version -> hub -> version (and hub -> version -> hub) returns
the object unchanged. Per-version field moves live in `conversion_rules`.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from smimesh.smi import conversion_rules, kinds, quantities
from smimesh.smi.objects import Resource

__all__ = ["ANNOTATION_PREFIX", "ConversionError", "convert", "from_hub", "hub_of", "to_hub"]

ANNOTATION_PREFIX = "conversion.smimesh.io/"
HUB_ANNOTATION = ANNOTATION_PREFIX + "hub"
_ENVELOPE = ("apiVersion", "kind", "metadata", "status")


class ConversionError(ValueError):
    """An object that cannot be converted; `path` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _info(obj: Resource) -> tuple[kinds.KindInfo, str]:
    group, _, version = obj.api_version.partition("/")
    info = kinds.by_kind(group, obj.kind)
    if info is None or version not in info.versions:
        raise ConversionError("apiVersion", f"{obj.api_version} {obj.kind} is not an SMI kind")
    return info, version


def hub_of(obj: Resource) -> type[Resource]:
    return _info(obj)[0].hub


def _split(wire: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    envelope = {key: wire[key] for key in _ENVELOPE if key in wire}
    body = {key: value for key, value in wire.items() if key not in _ENVELOPE}
    return envelope, body


def _pop_annotation(envelope: dict[str, Any], key: str) -> dict[str, Any] | None:
    metadata = dict(envelope.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    if key not in annotations:
        return None
    text = annotations.pop(key)
    metadata["annotations"] = annotations or None
    envelope["metadata"] = {k: v for k, v in metadata.items() if v is not None}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        raise ConversionError(f"metadata.annotations[{key}]", "is not JSON") from None
    if not isinstance(loaded, dict):
        raise ConversionError(f"metadata.annotations[{key}]", "is not a JSON object")
    return loaded


def _put_annotation(envelope: dict[str, Any], key: str, data: dict[str, Any]) -> None:
    if not data:
        return
    metadata = dict(envelope.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[key] = json.dumps(data, sort_keys=True, separators=(",", ":"))
    metadata["annotations"] = annotations
    envelope["metadata"] = metadata


def _build(model: type[Resource], wire: dict[str, Any]) -> Resource:
    try:
        return model.model_validate(wire)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise ConversionError(path, first["msg"]) from None


def to_hub(obj: Resource) -> Resource:
    """The hub form of `obj` (itself if it already is the hub)."""
    info, version = _info(obj)
    if version == info.hub_version:
        return obj
    envelope, body = _split(obj.to_wire())
    rules = conversion_rules.for_version(info.kind, version)
    try:
        hub_body, extras = rules.up(body)
    except quantities.QuantityError as error:
        raise ConversionError("spec.backends", str(error)) from None
    saved = _pop_annotation(envelope, HUB_ANNOTATION)
    if saved:
        hub_body = rules.restore_up(hub_body, saved)
    _put_annotation(envelope, ANNOTATION_PREFIX + version, extras)
    envelope["apiVersion"] = f"{info.group}/{info.hub_version}"
    return _build(info.hub, {**envelope, **hub_body})


def from_hub(hub: Resource, version: str) -> Resource:
    """`hub` expressed in `version` of its kind."""
    info, hub_version = _info(hub)
    if hub_version != info.hub_version:
        raise ConversionError("apiVersion", f"{hub.api_version} is not the hub of {hub.kind}")
    if version not in info.versions:
        raise ConversionError("apiVersion", f"{info.kind} has no version {version}")
    if version == info.hub_version:
        return hub
    envelope, hub_body = _split(hub.to_wire())
    rules = conversion_rules.for_version(info.kind, version)
    body, lost = rules.down(hub_body)
    extras = _pop_annotation(envelope, ANNOTATION_PREFIX + version)
    if extras:
        body = rules.restore_down(body, extras)
    _put_annotation(envelope, HUB_ANNOTATION, lost)
    envelope["apiVersion"] = f"{info.group}/{version}"
    return _build(info.versions[version], {**envelope, **body})


def convert(obj: Resource, version: str) -> Resource:
    """`obj` in another version of its kind, through the hub."""
    return from_hub(to_hub(obj), version)
