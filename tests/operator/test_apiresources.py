"""What the TrafficMetrics API announces in discovery, and how its lists select pods."""

from __future__ import annotations

import pytest

from smimesh.operator import apiresources

pytestmark = pytest.mark.fast


def test_discovery_announces_each_kind_with_its_edges_subresource() -> None:
    listed = apiresources.resource_list()
    assert listed["groupVersion"] == "metrics.smi-spec.io/v1alpha1"
    verbs = {r["name"]: (r["namespaced"], r["kind"], r["verbs"]) for r in listed["resources"]}
    assert verbs["pods"] == (True, "TrafficMetrics", ["get", "list"])
    assert verbs["pods/edges"] == (True, "TrafficMetricsList", ["get"])
    assert verbs["namespaces"] == (False, "TrafficMetrics", ["get", "list"])
    assert set(verbs) == {
        f"{k}{s}" for k in ("pods", "deployments", "namespaces") for s in ("", "/edges")
    }


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "api"}, False),
        ("app!=web", {}, True),
        ("app=web,tier", {"app": "web"}, False),
        ("!canary", {"app": "web"}, True),
        ("!canary", {"canary": "1"}, False),
    ],
)
def test_equality_selectors_select_as_kubernetes_does(
    selector: str, labels: dict[str, str], selected: bool
) -> None:
    assert apiresources.label_filter(selector)(labels) is selected


def test_set_based_selectors_are_refused_with_the_term() -> None:
    with pytest.raises(apiresources.SelectorError, match="'app in \\(web\\)'"):
        apiresources.label_filter("app in (web)")
