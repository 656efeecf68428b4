"""The validating webhook's logic: an AdmissionReview for an SMI object in, allowed or denied
out, with the semantic problems of `smimesh.smi.validating` (field path and reason).

The operator's `/validate` handler passes the decoded body to `review`. Errors deny the
write (kubectl prints the message, field paths included); warnings become admission
`warnings` (kubectl prints them as `Warning: ...`). DELETE is always allowed. An UPDATE is
denied only for errors the old object did not already have, so that Flagger, Argo Rollouts
or a finalizer can still touch an object stored before the webhook existed (ratcheting, as
Kubernetes' own validation does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smimesh.smi import documents, problems, validating
from smimesh.webhooks import reviews


def problems_of(raw: Mapping[str, Any]) -> list[problems.Problem] | None:
    """Schema and semantic problems of one object; None if it is not an SMI object."""
    parsed = documents.parse(dict(raw), quirks=True, hub=False)
    if not parsed.smi:
        return None
    found = list(parsed.problems)
    if parsed.obj is not None:
        found += validating.check(parsed.obj)
    return found


def _name(raw: Mapping[str, Any]) -> str:
    meta = raw.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return str(meta.get("name") or meta.get("generateName") or "(unnamed)")


def review(body: Any) -> dict[str, Any]:
    """The AdmissionReview answering `body`; raise MalformedReviewError if it is none."""
    request = reviews.admission_request(body)
    if request.operation == "DELETE" or request.object is None:
        return reviews.admission_response(request, allowed=True)
    found = problems_of(request.object)
    if found is None:
        return reviews.admission_response(request, allowed=True)
    errors = [problem for problem in found if problem.severity == "error"]
    if request.operation == "UPDATE" and request.old_object is not None:
        before = set(problems_of(request.old_object) or ())
        errors = [problem for problem in errors if problem not in before]
    warnings = [f"{p.path or '(object)'}: {p.reason}" for p in found if p.severity == "warning"]
    if not errors:
        return reviews.admission_response(request, allowed=True, warnings=warnings)
    message = f"{request.kind} {_name(request.object)} is invalid: " + "; ".join(
        f"{p.path or '(object)'}: {p.reason}" for p in errors
    )
    return reviews.admission_response(
        request,
        allowed=False,
        message=message,
        name=_name(request.object),
        causes=[(p.path, p.reason) for p in errors],
        warnings=warnings,
    )
