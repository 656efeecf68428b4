"""The validating webhook's answers: semantic errors deny with the field path, warnings are
admission warnings, DELETE always passes, an UPDATE is held only to errors it introduces."""

from __future__ import annotations

from typing import Any

import pytest

from smimesh.webhooks import reviews, validating

from .reviewing import admission, split

pytestmark = pytest.mark.fast

VALID = split([("web-v1", 90), ("web-v2", 10)])
DUPLICATE = split([("web-v1", 50), ("web-v1", 50)])


def _response(body: dict[str, Any]) -> dict[str, Any]:
    answer = validating.review(body)
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert answer["response"]["uid"] == "4dm1"
    response: dict[str, Any] = answer["response"]
    return response


def test_a_valid_split_is_allowed_without_warnings() -> None:
    assert _response(admission(VALID)) == {"uid": "4dm1", "allowed": True}


def test_a_semantic_error_denies_with_the_field_path_in_the_message() -> None:
    response = _response(admission(DUPLICATE))
    assert response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"].startswith("TrafficSplit web is invalid: spec.backends[1].service:")
    assert "listed twice" in status["message"]
    assert status["details"]["name"] == "web"
    assert [cause["field"] for cause in status["details"]["causes"]] == ["spec.backends[1].service"]


def test_all_zero_weights_are_allowed_with_a_warning() -> None:
    response = _response(admission(split([("web-v1", 0), ("web-v2", 0)])))
    assert response["allowed"] is True
    assert response["warnings"] == [
        "spec.backends: every weight is 0: no traffic reaches any backend"
    ]


def test_paths_are_those_of_the_version_written() -> None:
    group = {
        "apiVersion": "specs.smi-spec.io/v1alpha1",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "routes", "namespace": "shop"},
        "matches": [{"name": "a", "pathRegex": "(x"}],
    }
    response = _response(admission(group))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        "HTTPRouteGroup routes is invalid: matches[0].pathRegex:"
    )


def test_delete_is_always_allowed() -> None:
    assert _response(admission(None, operation="DELETE", old=DUPLICATE))["allowed"] is True


def test_an_update_is_denied_only_for_errors_it_introduces() -> None:
    relabelled = {**DUPLICATE, "metadata": {**DUPLICATE["metadata"], "labels": {"a": "b"}}}
    assert _response(admission(relabelled, operation="UPDATE", old=DUPLICATE))["allowed"]
    broken = _response(admission(DUPLICATE, operation="UPDATE", old=VALID))
    assert broken["allowed"] is False


def test_schema_problems_deny_too() -> None:
    bad = split([("web-v1", 1)])
    bad["spec"]["mirror"] = "web-v2"
    response = _response(admission(bad))
    assert response["allowed"] is False
    assert "spec.mirror: unknown field" in response["status"]["message"]


def test_other_kinds_are_allowed_untouched() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert _response(admission(config_map)) == {"uid": "4dm1", "allowed": True}


def test_warnings_are_printable_and_bounded() -> None:
    assert reviews.warning_text("a\nb\u00e9") == "a?b?"
    long = reviews.warning_text("x" * 1000)
    assert len(long) == reviews.WARNING_LIMIT
    assert long.endswith("...")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("review", "must be a AdmissionReview object, got str"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}, "v1beta1"),
        ({**admission(VALID), "request": {"kind": {}}}, "has no uid"),
        ({**admission(VALID), "request": {"uid": "u", "kind": "Pod"}}, "request.kind"),
        (
            {**admission(VALID), "request": {**admission(VALID)["request"], "operation": "GET"}},
            "request.operation",
        ),
        (
            {**admission(VALID), "request": {**admission(VALID)["request"], "object": [1]}},
            "request.object must be an object",
        ),
    ],
)
def test_a_malformed_review_is_refused_with_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(reviews.MalformedReviewError, match=message.replace(".", r"\.")):
        validating.review(body)
