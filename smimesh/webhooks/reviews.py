"""AdmissionReview and ConversionReview bodies, parsed once at the edge into frozen requests,
and the responses the apiserver expects back.

The operator's HTTPS handlers pass the decoded JSON body to `converting.review`,
`validating.review` (and the injector); those call `admission_request` / `conversion_request`
here, which raise `MalformedReviewError` for anything that is not a v1 review (the server
answers 400 with its message). Only `admission.k8s.io/v1` and `apiextensions.k8s.io/v1` are
spoken: our webhook configurations and CRDs ask for exactly those.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

ADMISSION_API_VERSION = "admission.k8s.io/v1"
CONVERSION_API_VERSION = "apiextensions.k8s.io/v1"
WARNING_LIMIT = 256
"""The apiserver may truncate longer admission warnings; we cut them ourselves, visibly."""

_PRINTABLE = frozenset(string.printable) - frozenset("\r\n\t\x0b\x0c")

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class MalformedReviewError(ValueError):
    """The body is not a review we can answer; the message says what is wrong with it."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    group: str
    kind: str
    operation: Operation
    namespace: str | None
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None


@dataclass(frozen=True)
class ConversionRequest:
    uid: str
    desired_api_version: str
    objects: tuple[Mapping[str, Any], ...]


def _envelope(body: Any, api_version: str, kind: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedReviewError(f"the body must be a {kind} object, got {type(body).__name__}")
    if body.get("apiVersion") != api_version or body.get("kind") != kind:
        raise MalformedReviewError(
            f"expected apiVersion {api_version} kind {kind}, got apiVersion "
            f"{body.get('apiVersion')!r} kind {body.get('kind')!r}"
        )
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReviewError(f"the {kind} has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReviewError(f"the {kind}'s request has no uid")
    return request


def _optional_object(request: Mapping[str, Any], field: str) -> Mapping[str, Any] | None:
    value = request.get(field)
    if value is not None and not isinstance(value, Mapping):
        raise MalformedReviewError(f"request.{field} must be an object")
    return value


def admission_request(body: Any) -> AdmissionRequest:
    """The request of an `admission.k8s.io/v1` AdmissionReview; raise MalformedReviewError."""
    request = _envelope(body, ADMISSION_API_VERSION, "AdmissionReview")
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or not isinstance(kind.get("kind"), str):
        raise MalformedReviewError("request.kind must be a {group, version, kind} object")
    operation = request.get("operation")
    if operation not in get_args(Operation):
        raise MalformedReviewError(
            f"request.operation {operation!r} is not one of {', '.join(get_args(Operation))}"
        )
    namespace = request.get("namespace")
    return AdmissionRequest(
        uid=request["uid"],
        group=str(kind.get("group") or ""),
        kind=kind["kind"],
        operation=cast(Operation, operation),
        namespace=namespace if isinstance(namespace, str) and namespace else None,
        object=_optional_object(request, "object"),
        old_object=_optional_object(request, "oldObject"),
    )


def conversion_request(body: Any) -> ConversionRequest:
    """The request of an `apiextensions.k8s.io/v1` ConversionReview; raise MalformedReviewError."""
    request = _envelope(body, CONVERSION_API_VERSION, "ConversionReview")
    desired = request.get("desiredAPIVersion")
    if not isinstance(desired, str) or "/" not in desired:
        raise MalformedReviewError(
            f"request.desiredAPIVersion must be group/version, got {desired!r}"
        )
    objects = request.get("objects")
    if not isinstance(objects, list) or not all(isinstance(o, Mapping) for o in objects):
        raise MalformedReviewError("request.objects must be a list of objects")
    return ConversionRequest(request["uid"], desired, tuple(objects))


def warning_text(text: str) -> str:
    """An admission warning: printable ASCII only (it travels in an HTTP header), at most
    256 characters."""
    printable = "".join(c if c in _PRINTABLE else "?" for c in text)
    return printable if len(printable) <= WARNING_LIMIT else printable[: WARNING_LIMIT - 3] + "..."


def admission_response(
    request: AdmissionRequest,
    *,
    allowed: bool,
    message: str | None = None,
    name: str = "",
    causes: Iterable[tuple[str, str]] = (),
    warnings: Iterable[str] = (),
) -> dict[str, Any]:
    """The AdmissionReview answering `request`. A denial carries a 422 Invalid status, as the
    apiserver's own validation does: kubectl prints `The <kind> "<name>" is invalid:` and one
    line per (field, reason) cause; other clients get `message`, which the apiserver prefixes
    with the webhook's name."""
    response: dict[str, Any] = {"uid": request.uid, "allowed": allowed}
    if not allowed:
        response["status"] = {
            "code": 422,
            "reason": "Invalid",
            "message": message or "denied",
            "details": {
                "group": request.group,
                "kind": request.kind,
                "name": name,
                "causes": [
                    {"field": field, "message": reason, "reason": "FieldValueInvalid"}
                    for field, reason in causes
                ],
            },
        }
    texts = [warning_text(text) for text in warnings]
    if texts:
        response["warnings"] = texts
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def conversion_response(
    request: ConversionRequest,
    *,
    converted: list[dict[str, Any]] | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """The ConversionReview answering `request`: every object converted, or a Failed result."""
    response: dict[str, Any] = {"uid": request.uid}
    if failure is None:
        response["convertedObjects"] = converted or []
        response["result"] = {"status": "Success"}
    else:
        response["convertedObjects"] = []
        response["result"] = {"status": "Failed", "message": failure}
    return {"apiVersion": CONVERSION_API_VERSION, "kind": "ConversionReview", "response": response}
