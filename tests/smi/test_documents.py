"""The one parser, `documents.parse`: every released version of every kind is typed as its
version's model and converted to its hub; everything else comes back as problems with a field
path, and `require` raises them as one ParseError naming the object."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smimesh.smi import documents, kinds, metrics
from smimesh.smi.problems import Problem
from tests.smi import strategies

pytestmark = pytest.mark.fast

SPLIT_V1ALPHA1: dict[str, Any] = {
    "apiVersion": "split.smi-spec.io/v1alpha1",
    "kind": "TrafficSplit",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "service": "web",
        "backends": [{"service": "web-v1", "weight": "1"}, {"service": "web-v2", "weight": "500m"}],
    },
}
METRICS: dict[str, Any] = {
    "apiVersion": "metrics.smi-spec.io/v1alpha1",
    "kind": "TrafficMetrics",
    "metadata": {"name": "web-1", "namespace": "shop"},
    "resource": {"kind": "Pod", "name": "web-1", "namespace": "shop"},
    "metrics": [{"name": "success_count", "value": "5"}],
}


def _target(destination: dict[str, Any], *, rule: str = "TCPRoute") -> dict[str, Any]:
    return {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "api"},
        "spec": {
            "destination": destination,
            "rules": [{"kind": rule, "name": "routes"}],
            "sources": [{"kind": "ServiceAccount", "name": "web"}],
        },
    }


def _info(kind: str, version: str) -> kinds.KindInfo:
    group = {"TrafficSplit": "split", "TrafficTarget": "access"}.get(kind, "specs")
    info = kinds.by_kind(f"{group}.smi-spec.io", kind)
    assert info is not None
    assert version in info.versions
    return info


@pytest.mark.parametrize(("kind", "version"), strategies.VERSIONS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_every_released_version_is_typed_as_its_model_and_its_hub(
    kind: str, version: str, data: st.DataObject
) -> None:
    raw = data.draw(strategies.objects(kind, version))
    info = _info(kind, version)
    parsed = documents.parse(copy.deepcopy(raw))
    assert parsed.problems == ()
    assert (parsed.smi, parsed.version, parsed.kind) == (True, version, kind)
    assert (parsed.api_version, parsed.name) == (raw["apiVersion"], raw["metadata"]["name"])
    assert parsed.namespace == raw["metadata"].get("namespace")
    assert type(parsed.obj) is info.versions[version]
    assert type(parsed.hub) is info.hub
    assert parsed.require() is parsed.hub
    if version == info.hub_version:
        assert parsed.hub is parsed.obj
    without_hub = documents.parse(copy.deepcopy(raw), hub=False)
    assert (without_hub.obj, without_hub.hub) == (parsed.obj, None)
    assert without_hub.require() == parsed.obj


@pytest.mark.parametrize("kind", ["TrafficMetrics", "TrafficMetricsList"])
def test_metrics_kinds_are_typed_too(kind: str) -> None:
    raw = METRICS if kind == "TrafficMetrics" else {**METRICS, "kind": kind, "items": []}
    raw = {key: value for key, value in raw.items() if kind == "TrafficMetrics" or key != "metrics"}
    parsed = documents.parse(raw)
    assert parsed.problems == ()
    assert type(parsed.obj) is metrics.VERSIONS[kind]["v1alpha1"]
    assert parsed.hub is parsed.obj


def test_v1alpha1_quantity_weights_reach_the_hub_in_their_ratio() -> None:
    hub = documents.parse(copy.deepcopy(SPLIT_V1ALPHA1)).require()
    assert [b["weight"] for b in hub.to_wire()["spec"]["backends"]] == [2, 1]


@pytest.mark.parametrize(
    ("raw", "smi", "problem"),
    [
        ([1], False, Problem("", "document is not a mapping (an object)")),
        (
            {"kind": "TrafficSplit"},
            False,
            Problem("apiVersion", "required string field is missing"),
        ),
        ({"apiVersion": "v1"}, False, Problem("kind", "required string field is missing")),
        (
            {"apiVersion": "v1", "kind": "ConfigMap"},
            False,
            Problem("", "not an SMI kind (v1 ConfigMap): ignored", "note"),
        ),
        (
            {"apiVersion": "split.smi-spec.io/v1alpha9", "kind": "TrafficSplit"},
            True,
            Problem(
                "apiVersion",
                "split.smi-spec.io/v1alpha9 has no kind TrafficSplit (released versions of "
                "TrafficSplit: v1alpha1, v1alpha2, v1alpha3, v1alpha4)",
            ),
        ),
        (
            {"apiVersion": "specs.smi-spec.io/v1alpha1", "kind": "UDPRoute"},
            True,
            Problem(
                "apiVersion",
                "specs.smi-spec.io/v1alpha1 has no kind UDPRoute (released versions of "
                "UDPRoute: v1alpha4)",
            ),
        ),
        (
            {"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "Canary"},
            True,
            Problem(
                "apiVersion",
                "split.smi-spec.io/v1alpha4 has no kind Canary (released versions of Canary: none)",
            ),
        ),
    ],
)
def test_what_is_no_smi_object_of_a_released_version_is_one_problem(
    raw: Any, smi: bool, problem: Problem
) -> None:
    parsed = documents.parse(raw)
    assert (parsed.smi, parsed.version, parsed.obj, parsed.hub) == (smi, None, None, None)
    assert parsed.problems == (problem,)


def test_any_version_reads_an_unreleased_version_as_the_newest_it_fits() -> None:
    raw = {**copy.deepcopy(SPLIT_V1ALPHA1), "apiVersion": "split.smi-spec.io/v1alpha9"}
    parsed = documents.parse(raw, any_version=True)
    assert (parsed.version, parsed.problems) == ("v1alpha1", ())
    raw["spec"]["backends"] = "nope"
    failed = documents.parse(raw, any_version=True)
    assert (failed.version, failed.obj, failed.hub) == (None, None, None)
    assert [p.path for p in failed.problems] == ["spec.backends"]


def test_every_schema_error_is_reported_with_its_field_path() -> None:
    raw = copy.deepcopy(SPLIT_V1ALPHA1)
    raw["apiVersion"] = "split.smi-spec.io/v1alpha2"
    raw["spec"]["mirror"] = "web-v3"
    del raw["spec"]["service"]
    parsed = documents.parse(raw)
    assert (parsed.version, parsed.obj, parsed.hub) == ("v1alpha2", None, None)
    assert set(parsed.problems) == {
        Problem("spec.service", "required field is missing"),
        Problem(
            "spec.backends[1].weight",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        Problem("spec.mirror", "unknown field (not part of this version's schema)"),
    }


def test_a_wrong_literal_says_what_is_expected() -> None:
    raw = _target({"kind": "ServiceAccount", "name": "api"}, rule="Deployment")
    (problem,) = documents.parse(raw).problems
    assert problem.path == "spec.rules[0].kind"
    assert problem.reason == (
        "'Deployment' is not allowed here; expected 'HTTPRouteGroup', 'TCPRoute' or 'UDPRoute'"
    )


def test_a_conversion_error_keeps_the_object_but_no_hub() -> None:
    raw = copy.deepcopy(SPLIT_V1ALPHA1)
    raw["spec"]["backends"][0]["weight"] = "1Ei"
    parsed = documents.parse(raw)
    assert parsed.obj is not None
    assert parsed.hub is None
    assert [p.path for p in parsed.problems] == ["spec.backends"]
    assert "orders of magnitude" in parsed.problems[0].reason
    assert documents.parse(raw, hub=False).problems == ()


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    raw = {**SPLIT_V1ALPHA1, "status": deep}
    parsed = documents.parse(raw)
    assert parsed.hub is None
    (problem,) = parsed.problems
    assert problem.severity == "error"
    assert problem.reason.startswith("cannot be converted to its hub: ")
    with pytest.raises(documents.ParseError, match="TrafficSplit shop/web: cannot be converted"):
        parsed.require()


def test_require_raises_one_typed_error_naming_the_object_and_every_error() -> None:
    raw = copy.deepcopy(SPLIT_V1ALPHA1)
    raw["spec"]["backends"] = "nope"
    raw["spec"]["mirror"] = "x"
    with pytest.raises(documents.ParseError) as caught:
        documents.parse(raw).require()
    assert caught.value.subject == "TrafficSplit shop/web"
    assert {p.path for p in caught.value.problems} == {"spec.backends", "spec.mirror"}
    assert str(caught.value).startswith("TrafficSplit shop/web: spec.")
    assert "; spec." in str(caught.value)
    unconvertible = copy.deepcopy(SPLIT_V1ALPHA1)
    unconvertible["spec"]["backends"][0]["weight"] = "1Ei"
    typed_but_no_hub = documents.parse(unconvertible)
    assert typed_but_no_hub.obj is not None
    with pytest.raises(documents.ParseError, match=r"^TrafficSplit shop/web: spec\.backends: "):
        typed_but_no_hub.require()
    with pytest.raises(documents.ParseError, match=r"^ConfigMap /c: not an SMI object$"):
        documents.parse(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
        ).require()


def test_quirks_are_read_with_a_warning_only_when_asked() -> None:
    group = {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "routes"},
        "matches": [{"name": "all", "pathRegex": ".*"}],
    }
    lenient = documents.parse(group, quirks=True)
    assert [(p.path, p.severity) for p in lenient.problems] == [("matches", "warning")]
    assert lenient.require().to_wire()["spec"]["matches"][0]["name"] == "all"
    strict = documents.parse(group)
    assert strict.obj is None
    assert (
        Problem("matches", "unknown field (not part of this version's schema)") in strict.problems
    )
    target = _target({"kind": "ServiceAccount", "name": "api", "port": 8080})
    lenient = documents.parse(target, quirks=True)
    assert [(p.path, p.severity) for p in lenient.problems] == [
        ("spec.destination.port", "warning")
    ]
    assert lenient.hub is not None
    assert documents.parse(target).hub is None


def test_any_version_reads_a_body_in_the_newest_version_whose_layout_it_has() -> None:
    served = {**copy.deepcopy(SPLIT_V1ALPHA1), "apiVersion": "split.smi-spec.io/v1alpha4"}
    assert documents.parse(served).hub is None
    parsed = documents.parse(served, any_version=True)
    assert (parsed.version, parsed.problems) == ("v1alpha1", ())
    assert parsed.api_version == "split.smi-spec.io/v1alpha4"
    assert [b["weight"] for b in parsed.require().to_wire()["spec"]["backends"]] == [2, 1]
    newest = {**served, "spec": {**served["spec"], "backends": [{"service": "a", "weight": 1}]}}
    newest["spec"]["matches"] = [{"kind": "HTTPRouteGroup", "name": "m"}]
    assert documents.parse(newest, any_version=True).version == "v1alpha4"


def test_any_version_reports_the_problems_of_the_own_version_when_none_fits() -> None:
    served = {**copy.deepcopy(SPLIT_V1ALPHA1), "apiVersion": "split.smi-spec.io/v1alpha3"}
    served["spec"]["backends"][0]["weight"] = "5x"
    parsed = documents.parse(served, any_version=True)
    assert (parsed.version, parsed.hub) == ("v1alpha3", None)
    assert parsed.problems == documents.parse(served).problems
    assert [p.path for p in parsed.problems] == [
        "spec.backends[0].weight",
        "spec.backends[1].weight",
    ]


def test_yaml_streams_expand_lists_with_their_positions() -> None:
    text = "a: 1\n---\n---\nkind: List\nitems: [{b: 2}, {c: 3}]\n"
    loaded = documents.load_stream(text)
    assert list(documents.expand(loaded)) == [
        ("0", {"a": 1}),
        ("1.items[0]", {"b": 2}),
        ("1.items[1]", {"c": 3}),
    ]
    with pytest.raises(documents.YAMLError, match=r"^not YAML at line 1, column 2"):
        documents.load_stream("[: x")
