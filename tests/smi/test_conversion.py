"""Every version converts to its hub and back unchanged (property-based), and hubs survive
a trip through every older version (what cannot be expressed rides in an annotation)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smimesh.smi import conversion, kinds, split
from tests.smi import strategies

pytestmark = pytest.mark.fast


def _model(wire: strategies.Wire):  # type: ignore[no-untyped-def]
    model = kinds.lookup(wire["apiVersion"], wire["kind"])
    assert model is not None
    return model.model_validate(wire)


@pytest.mark.parametrize(("kind", "version"), strategies.VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_version_to_hub_and_back_is_unchanged(kind: str, version: str, data: st.DataObject) -> None:
    obj = _model(data.draw(strategies.objects(kind, version)))
    hub = conversion.to_hub(obj)
    assert hub.api_version.endswith(kinds.by_kind(hub.api_version.split("/")[0], kind).hub_version)  # type: ignore[union-attr]
    back = conversion.from_hub(hub, version)
    assert back.to_wire() == obj.to_wire()


@pytest.mark.parametrize(("kind", "version"), strategies.VERSIONS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_hub_through_every_version_is_unchanged(
    kind: str, version: str, data: st.DataObject
) -> None:
    group = strategies.objects(kind, version)
    info = kinds.by_kind(data.draw(group)["apiVersion"].split("/")[0], kind)
    assert info is not None
    hub = _model(data.draw(strategies.objects(kind, info.hub_version)))
    assert conversion.to_hub(conversion.from_hub(hub, version)).to_wire() == hub.to_wire()


def test_quantity_weights_keep_their_exact_ratio_in_the_hub() -> None:
    v1 = split.TrafficSplitV1alpha1.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {"name": "s"},
            "spec": {
                "service": "web",
                "backends": [{"service": "a", "weight": "1"}, {"service": "b", "weight": "500m"}],
            },
        }
    )
    hub = conversion.to_hub(v1)
    assert isinstance(hub, split.TrafficSplit)
    assert [b.weight for b in hub.spec.backends] == [2, 1]
    assert conversion.from_hub(hub, "v1alpha1") == v1


def test_edited_hub_weights_win_over_the_saved_quantities() -> None:
    v1 = split.TrafficSplitV1alpha1.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {"name": "s"},
            "spec": {
                "service": "web",
                "backends": [{"service": "a", "weight": "1"}, {"service": "b", "weight": "500m"}],
            },
        }
    )
    hub = conversion.to_hub(v1).to_wire()
    hub["spec"]["backends"][1]["weight"] = 2
    back = conversion.from_hub(split.TrafficSplit.model_validate(hub), "v1alpha1")
    assert [b.weight.written for b in back.spec.backends] == [2, 2]  # type: ignore[attr-defined]


def test_split_matches_survive_a_trip_through_v1alpha2_in_an_annotation() -> None:
    hub = split.TrafficSplit.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "s"},
            "spec": {
                "service": "web",
                "matches": [{"kind": "HTTPRouteGroup", "name": "r"}],
                "backends": [{"service": "a", "weight": 1}],
            },
        }
    )
    old = conversion.from_hub(hub, "v1alpha2")
    saved = json.loads(old.metadata.annotations[conversion.HUB_ANNOTATION])  # type: ignore[index]
    assert saved == {"matches": [{"kind": "HTTPRouteGroup", "name": "r"}]}
    assert conversion.to_hub(old) == hub


def test_overflowing_quantities_are_a_conversion_error_naming_the_field() -> None:
    v1 = split.TrafficSplitV1alpha1.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {"name": "s"},
            "spec": {
                "service": "web",
                "backends": [{"service": "a", "weight": "1E"}, {"service": "b", "weight": "1n"}],
            },
        }
    )
    with pytest.raises(conversion.ConversionError) as caught:
        conversion.to_hub(v1)
    assert caught.value.path == "spec.backends"
