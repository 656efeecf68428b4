"""What the compiler decides, stated as behaviour over the golden scenarios' inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smimesh.compiler import compiling, parsing
from smimesh.proxyconfig import outbound, snapshots

pytestmark = pytest.mark.fast

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "compiler"


def _compile(name: str) -> compiling.Compilation:
    objects = yaml.safe_load_all((GOLDEN / name / "input.yaml").read_text())
    return compiling.compile_mesh(parsing.mesh_state(list(objects)))


def _config(result: compiling.Compilation, namespace: str, pod: str) -> snapshots.ProxyConfig:
    for ref, config in result.configs.items():
        if (ref.namespace, ref.pod) == (namespace, pod):
            return config
    raise AssertionError(f"no config for {namespace}/{pod}: {list(result.configs)}")


def _service(config: snapshots.ProxyConfig, name: str) -> outbound.OutboundService:
    return next(s for s in config.outbound if s.service.name == name)


def test_only_meshed_pods_with_an_address_get_a_config() -> None:
    result = _compile("canary-split")
    assert sorted(ref.pod for ref in result.configs) == ["podinfo-canary-1", "podinfo-primary-1"]


def test_a_split_routes_matching_requests_by_weight_and_keeps_the_root_as_backend() -> None:
    config = _config(_compile("canary-split"), "test", "podinfo-primary-1")
    (route,) = _service(config, "podinfo").routes
    weights = {backend.service.name: backend.weight for backend in route.backends}
    assert weights == {"podinfo-primary": 90, "podinfo-canary": 10}
    (match,) = route.matches
    assert (match.path_regex, match.methods, match.headers) == (
        "/api",
        ("GET",),
        (("x-canary", "yes"),),
    )


def test_unready_endpoints_are_left_out_and_endpoints_carry_identity() -> None:
    config = _config(_compile("canary-split"), "test", "podinfo-primary-1")
    endpoints = _service(config, "podinfo").endpoints
    assert [e.address for e in endpoints] == ["10.0.0.2", "10.0.0.3"]
    assert {e.identity for e in endpoints} == {"spiffe://cluster.local/ns/test/sa/podinfo"}


def test_protocols_come_from_app_protocol_or_port_name_and_app_ports_from_the_annotation() -> None:
    config = _config(_compile("canary-split"), "test", "podinfo-canary-1")
    by_port = {port.port: port for port in config.inbound}
    assert (by_port[9898].protocol, by_port[9898].app_port) == ("http", 19898)
    assert by_port[9999].protocol == "http2"


def test_strict_access_allows_only_what_targets_name() -> None:
    config = _config(_compile("strict-access"), "strict", "server-1")
    http, tcp = (
        next(p for p in config.inbound if p.port == 8080),
        next(p for p in config.inbound if p.port == 5432),
    )
    assert not http.permissive
    assert not tcp.permissive
    sources = {rule.target: rule.sources for rule in http.rules}
    assert sources == {
        "strict/a-reads-metrics": ("spiffe://cluster.local/ns/other/sa/service-a",),
        "strict/c-connects": ("spiffe://cluster.local/ns/strict/sa/service-c",),
    }
    metrics_rule = next(rule for rule in http.rules if rule.target == "strict/a-reads-metrics")
    assert [m.name for m in metrics_rule.http_matches] == ["metrics"]
    # HTTP rules cannot be enforced on an opaque TCP port: only the TCPRoute target applies.
    assert [rule.target for rule in tcp.rules] == ["strict/c-connects"]


def test_permissive_namespaces_allow_everyone() -> None:
    config = _config(_compile("strict-access"), "open", "web-1")
    assert [port.permissive for port in config.inbound] == [True]


def test_the_oldest_split_wins_and_quantity_weights_keep_their_ratio() -> None:
    result = _compile("conflicts-and-missing-refs")
    config = _config(result, "apps", "client-1")
    (route,) = _service(config, "root").routes
    assert route.split == "apps/older"
    weights = {backend.service.name: backend.weight for backend in route.backends}
    assert weights["root"] == 2 * weights["stable"]  # "1" vs "500m"
    assert "ghost" not in weights
    reasons = {(f.name, f.reason) for f in result.findings}
    assert reasons == {
        ("newer", "Conflict"),
        ("older", "BackendNotFound"),
        ("zero", "AllWeightsZero"),
        ("dangling", "RouteNotFound"),
    }


def test_a_change_in_weights_changes_only_the_version_of_affected_content() -> None:
    objects = list(yaml.safe_load_all((GOLDEN / "canary-split" / "input.yaml").read_text()))
    before = compiling.compile_mesh(parsing.mesh_state(objects)).configs
    for item in objects:
        if item["kind"] == "TrafficSplit":
            item["spec"]["backends"][1]["weight"] = 50
    after = compiling.compile_mesh(parsing.mesh_state(objects)).configs
    again = compiling.compile_mesh(parsing.mesh_state(objects)).configs
    assert set(before) == set(after)
    for ref in before:
        old, new = before[ref], after[ref]
        # every proxy holds the split's root Service, and only that content differs
        assert [s.service.name for s in old.outbound if s not in new.outbound] == ["podinfo"]
        assert (old.inbound, old.settings) == (new.inbound, new.settings)
        assert old.version != new.version
        assert again[ref].version == new.version  # equal content, equal version


def test_a_change_in_access_changes_only_the_version_of_the_destination_proxy() -> None:
    objects = list(yaml.safe_load_all((GOLDEN / "strict-access" / "input.yaml").read_text()))
    before = compiling.compile_mesh(parsing.mesh_state(objects)).configs
    for item in objects:
        if item["kind"] == "TrafficTarget" and item["metadata"]["name"] == "c-connects":
            item["spec"]["sources"].append(
                {"kind": "ServiceAccount", "name": "service-d", "namespace": "strict"}
            )
    after = compiling.compile_mesh(parsing.mesh_state(objects)).configs
    versions = {
        f"{ref.namespace}/{ref.pod}": before[ref].version == after[ref].version for ref in before
    }
    assert versions == {"strict/server-1": False, "open/web-1": True}


def test_a_malformed_object_is_named_in_the_error() -> None:
    with pytest.raises(parsing.ParseError, match="Service default/broken"):
        parsing.mesh_state(
            [
                {
                    "kind": "Service",
                    "metadata": {"name": "broken", "namespace": "default"},
                    "spec": {"ports": [{}]},
                }
            ]
        )
    with pytest.raises(parsing.ParseError, match="TrafficSplit"):
        parsing.mesh_state(
            [
                {
                    "apiVersion": "split.smi-spec.io/v1alpha2",
                    "kind": "TrafficSplit",
                    "metadata": {"name": "x", "namespace": "y"},
                    "spec": {"backends": "nope"},
                }
            ]
        )


def test_a_source_that_is_no_identity_is_reported_not_fatal() -> None:
    objects = list(yaml.safe_load_all((GOLDEN / "strict-access" / "input.yaml").read_text()))
    for item in objects:
        if item["kind"] == "TrafficTarget" and item["metadata"]["name"] == "c-connects":
            item["spec"]["sources"].append({"kind": "ServiceAccount", "name": "Not_A_Name"})
    result = compiling.compile_mesh(parsing.mesh_state(objects))
    assert ("c-connects", "InvalidSource") in {(f.name, f.reason) for f in result.findings}
    config = _config(result, "strict", "server-1")
    tcp = next(p for p in config.inbound if p.port == 5432)
    assert tcp.rules[0].sources == ("spiffe://cluster.local/ns/strict/sa/service-c",)
