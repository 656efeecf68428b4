"""What each mesh profile renders: the opt-in labels and annotations of the stage's
Namespaces and Pods, the control port left out of interception, and which access modes a
mesh can express per namespace (the rest make cases skip)."""

from __future__ import annotations

from typing import Any

import pytest

from smimesh.conformance import apps, deploying, profiles

pytestmark = pytest.mark.fast


def _render(mesh: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spaces, rest = deploying.manifests(
        profiles.lookup(mesh), prefix="t", image="registry.example/smimesh:dev"
    )
    return spaces, [o for o in rest if o["kind"] == "Pod"]


def test_smimesh_labels_namespaces_for_injection_and_sets_each_access_mode() -> None:
    spaces, pods = _render("smimesh")
    assert [s["metadata"] for s in spaces] == [
        {
            "name": "t-strict",
            "labels": {"smimesh.dev/inject": "enabled"},
            "annotations": {"smimesh.dev/access-mode": "strict"},
        },
        {
            "name": "t-permis",
            "labels": {"smimesh.dev/inject": "enabled"},
            "annotations": {"smimesh.dev/access-mode": "permissive"},
        },
    ]
    for pod in pods:
        assert pod["metadata"]["annotations"] == {"smimesh.dev/exclude-inbound-ports": "9090"}
    assert profiles.lookup("smimesh").programmed == "conditions"


def test_osm_monitors_and_injects_namespaces_and_excludes_the_control_port() -> None:
    spaces, pods = _render("osm")
    for space in spaces:
        assert space["metadata"]["labels"] == {"openservicemesh.io/monitored-by": "osm"}
        assert space["metadata"]["annotations"] == {
            "openservicemesh.io/sidecar-injection": "enabled"
        }
    assert {p["metadata"]["annotations"]["openservicemesh.io/inbound-port-exclusion-list"]
            for p in pods} == {"9090"}  # fmt: skip
    assert "mesh-wide" in profiles.lookup("osm").no_permissive


def test_linkerd_injects_by_namespace_annotation_and_sets_the_default_inbound_policy() -> None:
    spaces, pods = _render("linkerd")
    assert [s["metadata"]["annotations"] for s in spaces] == [
        {"linkerd.io/inject": "enabled", "config.linkerd.io/default-inbound-policy": "deny"},
        {
            "linkerd.io/inject": "enabled",
            "config.linkerd.io/default-inbound-policy": "all-unauthenticated",
        },
    ]
    assert all("labels" not in s["metadata"] for s in spaces)
    for pod in pods:
        assert pod["metadata"]["annotations"] == {"config.linkerd.io/skip-inbound-ports": "9090"}
    assert profiles.lookup("linkerd").no_permissive == ""


def test_consul_opts_pods_in_and_cannot_make_a_namespace_permissive() -> None:
    spaces, pods = _render("consul")
    assert all(set(s["metadata"]) == {"name"} for s in spaces)
    for pod in pods:
        assert pod["metadata"]["annotations"] == {
            "consul.hashicorp.com/connect-inject": "true",
            "consul.hashicorp.com/transparent-proxy-exclude-inbound-ports": "9090",
        }
    assert profiles.lookup("consul").no_permissive


def test_none_adds_nothing_at_all() -> None:
    spaces, pods = _render("none")
    assert all(set(s["metadata"]) == {"name"} for s in spaces)
    assert all("annotations" not in p["metadata"] for p in pods)


def test_every_profile_renders_the_same_layout_of_apps_and_services() -> None:
    for mesh in profiles.PROFILES:
        _, rest = deploying.manifests(profiles.lookup(mesh), prefix="t", image="img")
        names = sorted((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in rest)
        for namespace in ("t-strict", "t-permis"):
            assert [n for k, ns, n in names if ns == namespace and k == "Pod"] == [
                "a-1", "b-1", "c-1"
            ]  # fmt: skip
            assert [n for k, ns, n in names if ns == namespace and k == "Service"] == [
                "a", "b", "backend", "c"
            ]  # fmt: skip
            assert [n for k, ns, n in names if ns == namespace and k == "ServiceAccount"] == [
                "service-a", "service-b", "service-c"
            ]  # fmt: skip


def test_a_pod_runs_the_test_app_from_the_image_on_both_ports() -> None:
    _, pods = _render("smimesh")
    pod = next(p for p in pods if p["metadata"]["name"] == "b-1")
    assert pod["metadata"]["labels"] == {"app": "b", "tier": "backend"}
    assert pod["spec"]["serviceAccountName"] == "service-b"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example/smimesh:dev"
    assert container["command"] == ["smimesh", "conformance", "app"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "PORT": str(apps.MESH_PORT),
        "CONTROL_PORT": str(apps.CONTROL_PORT),
        "SMIMESH_WORKLOAD": "t-strict/b-1",
    }


def test_an_unknown_mesh_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="smimesh, osm, linkerd, consul, none"):
        profiles.lookup("istio")
