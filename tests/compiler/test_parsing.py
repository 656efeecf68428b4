"""The compiler's edge: each kind the mesh reads becomes its typed `state.MeshObject` (SMI
objects their hub, through the one parser, strictly), other kinds are ignored, a bad object
raises a ParseError naming it and the field, and `MeshState.of` files each in its field."""

from __future__ import annotations

from typing import Any

import pytest

from smimesh.compiler import parsing, state
from smimesh.smi import access, specs, split

pytestmark = pytest.mark.fast

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"ports": [{"port": 80}]},
}
SPLIT: dict[str, Any] = {
    "apiVersion": "split.smi-spec.io/v1alpha1",
    "kind": "TrafficSplit",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": "500m"}]},
}
TARGET: dict[str, Any] = {
    "apiVersion": "access.smi-spec.io/v1alpha1",
    "kind": "TrafficTarget",
    "metadata": {"name": "api", "namespace": "shop"},
    "destination": {"kind": "ServiceAccount", "name": "api", "namespace": "shop"},
    "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": "shop"}],
}
ROUTES: dict[str, Any] = {
    "apiVersion": "specs.smi-spec.io/v1alpha4",
    "kind": "HTTPRouteGroup",
    "metadata": {"name": "routes", "namespace": "shop"},
    "spec": {"matches": [{"name": "all", "pathRegex": ".*"}]},
}


def test_each_kind_becomes_its_typed_form_and_smi_objects_their_hub() -> None:
    service = parsing.parse_object(SERVICE)
    assert isinstance(service, state.Service)
    assert service.ports[0].target_port == 80
    hub = parsing.parse_object(SPLIT)
    assert isinstance(hub, split.TrafficSplit)
    assert hub.api_version == "split.smi-spec.io/v1alpha4"
    assert isinstance(parsing.parse_object(TARGET), access.TrafficTarget)
    assert isinstance(parsing.parse_object(ROUTES), specs.HTTPRouteGroup)


@pytest.mark.parametrize(
    "raw",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {**SPLIT, "apiVersion": "split.smi-spec.io/v1alpha9"},
        {**SPLIT, "kind": "Canary"},
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "UDPRoute",
            "metadata": {"name": "dns"},
            "spec": {"matches": {"name": "dns", "ports": [53]}},
        },
        {"kind": "TrafficSplit"},
    ],
)
def test_kinds_and_versions_the_mesh_does_not_read_are_ignored(raw: dict[str, Any]) -> None:
    assert parsing.parse_object(raw) is None


def test_a_bad_smi_object_raises_naming_it_and_the_field() -> None:
    bad = {**SPLIT, "apiVersion": "split.smi-spec.io/v1alpha2", "spec": {"backends": "nope"}}
    with pytest.raises(parsing.ParseError) as caught:
        parsing.parse_object(bad)
    assert str(caught.value).startswith("TrafficSplit shop/web: ")
    assert {p.path for p in caught.value.problems} == {"spec.service", "spec.backends"}


def test_producers_quirks_are_not_read_by_the_mesh() -> None:
    quirk = {key: value for key, value in ROUTES.items() if key != "spec"}
    quirk["matches"] = ROUTES["spec"]["matches"]
    with pytest.raises(
        parsing.ParseError, match=r"^HTTPRouteGroup shop/routes: .*matches: unknown field"
    ):
        parsing.parse_object(quirk)


def test_mesh_state_of_files_each_object_in_the_field_of_its_type() -> None:
    objects = [parsing.parse_object(raw) for raw in (SPLIT, SERVICE, TARGET, ROUTES)]
    mesh = state.MeshState.of(obj for obj in objects if obj is not None)
    assert (mesh.splits, mesh.services) == ((objects[0],), (objects[1],))
    assert (mesh.targets, mesh.route_groups) == ((objects[2],), (objects[3],))
    assert (mesh.pods, mesh.namespaces, mesh.endpoint_slices, mesh.tcp_routes) == ((), (), (), ())
    assert mesh == parsing.mesh_state([SPLIT, SERVICE, TARGET, ROUTES])
