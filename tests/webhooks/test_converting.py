"""The conversion webhook's answers: every object in the desired version, losslessly, with
only labels and annotations of the metadata changed; one bad object fails the review."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from smimesh.webhooks import converting, reviews

from .reviewing import SPLIT_V1ALPHA1, conversion

pytestmark = pytest.mark.fast


def _converted(desired: str, *objects: dict[str, Any]) -> list[dict[str, Any]]:
    response = converting.review(conversion(desired, *objects))["response"]
    assert response["result"] == {"status": "Success"}, response
    assert response["uid"] == "c0nv"
    converted: list[dict[str, Any]] = response["convertedObjects"]
    return converted


def test_quantity_weights_become_integer_weights_of_the_same_ratio() -> None:
    (hub,) = _converted("split.smi-spec.io/v1alpha4", SPLIT_V1ALPHA1)
    assert hub["apiVersion"] == "split.smi-spec.io/v1alpha4"
    weights = [backend["weight"] for backend in hub["spec"]["backends"]]
    assert weights[1] == 2 * weights[0]


def test_a_round_trip_through_the_hub_returns_the_object_unchanged() -> None:
    hub = _converted("split.smi-spec.io/v1alpha4", SPLIT_V1ALPHA1)
    assert _converted("split.smi-spec.io/v1alpha1", *hub) == [SPLIT_V1ALPHA1]


def test_only_labels_and_annotations_of_the_metadata_change() -> None:
    (hub,) = _converted("split.smi-spec.io/v1alpha4", SPLIT_V1ALPHA1)
    untouched = {k: v for k, v in hub["metadata"].items() if k not in ("labels", "annotations")}
    assert untouched == SPLIT_V1ALPHA1["metadata"]


def test_top_level_fields_of_access_v1alpha1_move_under_spec() -> None:
    target = {
        "apiVersion": "access.smi-spec.io/v1alpha1",
        "kind": "TrafficTarget",
        "metadata": {"name": "api", "namespace": "shop"},
        "destination": {"kind": "ServiceAccount", "name": "api", "namespace": "shop"},
        "specs": [{"kind": "HTTPRouteGroup", "name": "routes", "matches": ["get"]}],
        "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}],
    }
    (v3,) = _converted("access.smi-spec.io/v1alpha3", target)
    assert v3["spec"]["rules"] == target["specs"]
    assert v3["spec"]["destination"] == target["destination"]
    assert _converted("access.smi-spec.io/v1alpha1", v3) == [target]


def test_every_object_of_a_list_is_converted_in_order() -> None:
    second = copy.deepcopy(SPLIT_V1ALPHA1)
    second["metadata"]["name"] = "api"
    converted = _converted("split.smi-spec.io/v1alpha2", SPLIT_V1ALPHA1, second)
    assert [o["metadata"]["name"] for o in converted] == ["web", "api"]
    assert {o["apiVersion"] for o in converted} == {"split.smi-spec.io/v1alpha2"}


def test_an_object_already_in_the_desired_version_is_returned_as_is() -> None:
    assert _converted("split.smi-spec.io/v1alpha1", SPLIT_V1ALPHA1) == [SPLIT_V1ALPHA1]


@pytest.mark.parametrize(
    ("desired", "weight", "message"),
    [
        ("split.smi-spec.io/v1alpha9", "1", "has no kind TrafficSplit"),
        ("access.smi-spec.io/v1alpha3", "1", "has no kind TrafficSplit"),
        ("split.smi-spec.io/v1alpha4", "5x", "spec.backends[0].weight"),
    ],
)
def test_an_object_that_cannot_be_converted_fails_the_review_naming_it(
    desired: str, weight: str, message: str
) -> None:
    broken = copy.deepcopy(SPLIT_V1ALPHA1)
    broken["spec"]["backends"][0]["weight"] = weight
    response = converting.review(conversion(desired, broken))["response"]
    assert response["result"]["status"] == "Failed"
    assert response["convertedObjects"] == []
    assert "TrafficSplit shop/web" in response["result"]["message"]
    assert message in response["result"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a ConversionReview object, got list"),
        ({"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview"}, "v1beta1"),
        ({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"}, "no request"),
        (
            {**conversion("split.smi-spec.io/v1alpha4"), "request": {"uid": "u", "objects": []}},
            "desiredAPIVersion",
        ),
        (
            {
                **conversion("split.smi-spec.io/v1alpha4"),
                "request": {"uid": "u", "desiredAPIVersion": "a/b", "objects": [1]},
            },
            "request.objects",
        ),
    ],
)
def test_a_malformed_review_is_refused_with_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(reviews.MalformedReviewError, match=message.replace(".", r"\.")):
        converting.review(body)
