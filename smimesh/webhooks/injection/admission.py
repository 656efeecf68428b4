"""AdmissionReview in, AdmissionReview out: the mutating webhook's logic, without serving.

The operator's HTTPS handler parses the request body, looks up the namespace's labels (the one
thing a pure builder cannot know) and calls `review`; the response carries the JSON Patch from
`injecting.inject_pod`. A pod that cannot be injected is denied with the reason; every other
object, and every pod not to be injected, is allowed unchanged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from smimesh.webhooks.injection import errors, injecting, settings


def review(
    admission_review: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str],
    config: settings.InjectionSettings,
) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) to answer `admission_review` with."""
    request = admission_review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    pod = request.get("object")
    is_pod = (request.get("kind") or {}).get("kind") == "Pod"
    if is_pod and isinstance(pod, Mapping) and request.get("operation", "CREATE") == "CREATE":
        try:
            result = injecting.inject_pod(
                pod,
                namespace=request.get("namespace") or (pod.get("metadata") or {}).get("namespace"),
                namespace_labels=namespace_labels,
                config=config,
            )
        except errors.InjectionError as exc:
            response["allowed"] = False
            response["status"] = {"code": 400, "reason": "BadRequest", "message": str(exc)}
        else:
            if result.patch:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(result.patch).encode()).decode()
    return {
        "apiVersion": admission_review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }
