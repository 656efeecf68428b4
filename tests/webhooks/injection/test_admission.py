"""AdmissionReviews in and out: the patch the apiserver applies, denials with the reason."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from smimesh.webhooks.injection import admission, settings

from .pods import annotated, app_pod, apply_patch

pytestmark = pytest.mark.fast

CONFIG = settings.InjectionSettings()
ENABLED_NS = {"smimesh.dev/inject": "enabled"}


def _review(obj: dict[str, Any], kind: str = "Pod", operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d5c-42",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "namespace": "shop",
            "operation": operation,
            "object": obj,
        },
    }


def test_a_meshed_pod_is_allowed_with_a_json_patch_that_injects_it() -> None:
    answer = admission.review(_review(app_pod()), namespace_labels=ENABLED_NS, config=CONFIG)
    response = answer["response"]
    assert (answer["kind"], response["uid"], response["allowed"]) == (
        "AdmissionReview",
        "0d5c-42",
        True,
    )
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    injected = apply_patch(app_pod(), patch)
    assert injected["metadata"]["annotations"]["smimesh.dev/injected"] == CONFIG.proxy_image


def test_a_pod_outside_the_mesh_is_allowed_unchanged() -> None:
    response = admission.review(_review(app_pod()), namespace_labels={}, config=CONFIG)["response"]
    assert response == {"uid": "0d5c-42", "allowed": True}


def test_a_pod_that_cannot_be_injected_is_denied_with_the_reason() -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/exclude-outbound-ports": "postgres"})
    response = admission.review(_review(pod), namespace_labels=ENABLED_NS, config=CONFIG)[
        "response"
    ]
    assert response["allowed"] is False
    assert "'postgres' is not a port" in response["status"]["message"]


def test_other_kinds_and_operations_are_allowed_unchanged() -> None:
    for review in (
        _review({"kind": "Service"}, kind="Service"),
        _review(app_pod(), operation="UPDATE"),
    ):
        response = admission.review(review, namespace_labels=ENABLED_NS, config=CONFIG)["response"]
        assert response == {"uid": "0d5c-42", "allowed": True}
