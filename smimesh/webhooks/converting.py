"""The CRD conversion webhook's logic: a ConversionReview (v1) in, its response out.

The operator's `/convert` handler passes the decoded body to `review`. Every object is typed
by `smimesh.smi.documents` and converted with `smimesh.smi.conversion.convert` to the
desired version (through the hub, losslessly: what a version cannot express rides in an
annotation). One object that cannot be converted fails the whole review with a message that
names it and the field, as the apiserver requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smimesh.smi import conversion, documents, kinds
from smimesh.webhooks import reviews


class ObjectConversionError(Exception):
    """One object could not be converted; the message names it and the field."""


def _describe(raw: Mapping[str, Any]) -> str:
    meta = raw.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    where = "/".join(str(part) for part in (meta.get("namespace"), meta.get("name")) if part)
    return f"{raw.get('kind')} {where or '(unnamed)'} ({raw.get('apiVersion')})"


def convert_object(raw: Mapping[str, Any], desired_api_version: str) -> dict[str, Any]:
    """`raw` (an SMI object as stored) in `desired_api_version`; raise ObjectConversionError.

    Only labels and annotations of the metadata may change (the apiserver checks it): the
    rest is copied from `raw` as is.
    """
    if raw.get("apiVersion") == desired_api_version:
        return dict(raw)
    group, _, version = desired_api_version.partition("/")
    info = kinds.by_kind(group, str(raw.get("kind")))
    if info is None or version not in info.versions:
        raise ObjectConversionError(
            f"{_describe(raw)}: cannot convert to {desired_api_version}, which has no "
            f"kind {raw.get('kind')}"
        )
    parsed = documents.parse(dict(raw), quirks=True, hub=False)
    errors = [problem for problem in parsed.problems if problem.severity == "error"]
    if parsed.obj is None or errors:
        found = "; ".join(f"{p.path or '(object)'}: {p.reason}" for p in errors) or "unreadable"
        raise ObjectConversionError(f"{_describe(raw)} cannot be read: {found}")
    try:
        converted = conversion.convert(parsed.obj, version).to_wire()
    except conversion.ConversionError as exc:
        raise ObjectConversionError(f"{_describe(raw)}: {exc}") from None
    original = raw.get("metadata")
    metadata = {
        key: value
        for key, value in (original if isinstance(original, Mapping) else {}).items()
        if key not in ("labels", "annotations")
    }
    for key in ("labels", "annotations"):
        value = (converted.get("metadata") or {}).get(key)
        if value:
            metadata[key] = value
    converted["metadata"] = metadata
    return converted


def review(body: Any) -> dict[str, Any]:
    """The ConversionReview answering `body`; raise MalformedReviewError if it is none."""
    request = reviews.conversion_request(body)
    try:
        converted = [convert_object(raw, request.desired_api_version) for raw in request.objects]
    except ObjectConversionError as exc:
        return reviews.conversion_response(request, failure=str(exc))
    return reviews.conversion_response(request, converted=converted)
