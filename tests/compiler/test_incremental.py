"""The incremental compiler against the reference: random small meshes, random change
sequences; after every step its resources equal a fresh compilation of the same state, its
delta is what changed, and `resources.assemble` equals `compile_mesh` for every proxy. Then
examples of how little one change touches."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smimesh.compiler import compiling, incremental, state
from smimesh.proxyconfig import refs, resources, snapshots
from smimesh.smi import access, specs, split
from tests import fuzzing

pytestmark = pytest.mark.fast

NAMESPACES = ("a", "b")
SERVICES = ("s1", "s2", "s3")
PODS = ("p1", "p2", "p3")
ACCOUNTS = ("sa1", "sa2")
GROUPS = ("g1", "g2")
TCP_ROUTES = ("t1", "t2")
namespaces = st.sampled_from([*NAMESPACES, "a", "a", "a"])  # mostly one, so objects meet


def _meta(namespace: str, name: str, created: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name}
    if created:
        meta["creationTimestamp"] = created
    return meta


service_ports = st.builds(
    state.ServicePort,
    name=st.sampled_from(["", "http", "grpc", "tcp-db"]),
    port=st.sampled_from([80, 81]),
    target_port=st.sampled_from([8080, 9090, "http"]),
    transport=st.sampled_from(["TCP"] * 5 + ["UDP"]),
    app_protocol=st.sampled_from([None, "http2", "tcp"]),
)
services = st.builds(
    state.Service,
    ref=st.builds(refs.ServiceRef, namespace=namespaces, name=st.sampled_from(SERVICES)),
    cluster_ip=st.sampled_from([None, "10.96.0.1"]),
    ports=st.lists(service_ports, min_size=1, max_size=2).map(tuple),
)
endpoint_slices = st.builds(
    state.EndpointSlice,
    namespace=namespaces,
    name=st.sampled_from(["e1", "e2", "e3"]),
    service=st.sampled_from(SERVICES),
    ports=st.lists(
        st.builds(state.SlicePort, name=st.just("http"), port=st.sampled_from([8080, 7070])),
        max_size=1,
    ).map(tuple),
    endpoints=st.lists(
        st.builds(
            state.SliceEndpoint,
            address=st.sampled_from([f"10.0.0.{n}" for n in range(1, 5)]),
            pod=st.sampled_from([None, *PODS, *PODS]),
            ready=st.sampled_from([True, True, False]),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
)
pods = st.builds(
    state.Pod,
    namespace=namespaces,
    name=st.sampled_from(PODS),
    service_account=st.sampled_from([*ACCOUNTS, "sa1"]),
    ip=st.sampled_from([None, "10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    meshed=st.sampled_from([True, True, False]),
    app_ports=st.sampled_from([{}, {8080: 18080}]),
)
mesh_namespaces = st.builds(
    state.Namespace,
    name=namespaces,
    access=st.sampled_from([None, "strict", "permissive"]),
)


@st.composite
def traffic_splits(draw: st.DrawFn) -> split.TrafficSplit:
    spec: dict[str, Any] = {
        "service": draw(st.sampled_from(SERVICES)),
        "backends": [
            {"service": name, "weight": draw(st.integers(0, 3))}
            for name in draw(st.lists(st.sampled_from(SERVICES), max_size=3, unique=True))
        ],
    }
    if draw(st.booleans()):
        spec["matches"] = [{"kind": "HTTPRouteGroup", "name": draw(st.sampled_from(GROUPS))}]
    created = draw(st.sampled_from([None, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]))
    return split.TrafficSplit.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": _meta(draw(namespaces), draw(st.sampled_from(["x1", "x2"])), created),
            "spec": spec,
        }
    )


def _subject(draw: st.DrawFn) -> dict[str, Any]:
    subject: dict[str, Any] = {"kind": "ServiceAccount", "name": draw(st.sampled_from(ACCOUNTS))}
    if draw(st.integers(0, 3)) == 0:
        subject["namespace"] = draw(namespaces)
    return subject


@st.composite
def traffic_targets(draw: st.DrawFn) -> access.TrafficTarget:
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            rule: dict[str, Any] = {"kind": "HTTPRouteGroup", "name": draw(st.sampled_from(GROUPS))}
            if draw(st.booleans()):
                rule["matches"] = ["m1"]
        else:
            rule = {"kind": "TCPRoute", "name": draw(st.sampled_from(TCP_ROUTES))}
        rules.append(rule)
    return access.TrafficTarget.model_validate(
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": _meta(draw(namespaces), draw(st.sampled_from(["tt1", "tt2"]))),
            "spec": {
                "destination": _subject(draw),
                "sources": [
                    _subject(draw) | draw(st.sampled_from([{}, {}, {"name": "Not_An_Identity"}]))
                    for _ in range(draw(st.integers(0, 2)))
                ],
                "rules": rules,
            },
        }
    )


@st.composite
def route_groups(draw: st.DrawFn) -> specs.HTTPRouteGroup:
    matches = [
        {"name": name, "pathRegex": draw(st.sampled_from(["/", "/api"])), "methods": ["GET"]}
        for name in draw(st.lists(st.sampled_from(["m1", "m2"]), min_size=1, unique=True))
    ]
    return specs.HTTPRouteGroup.model_validate(
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "HTTPRouteGroup",
            "metadata": _meta(draw(namespaces), draw(st.sampled_from(GROUPS))),
            "spec": {"matches": matches},
        }
    )


@st.composite
def tcp_routes(draw: st.DrawFn) -> specs.TCPRoute:
    return specs.TCPRoute.model_validate(
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "TCPRoute",
            "metadata": _meta(draw(namespaces), draw(st.sampled_from(TCP_ROUTES))),
            "spec": {"matches": {"ports": draw(st.sampled_from([[], [8080], [9090]]))}},
        }
    )


mesh_objects: st.SearchStrategy[state.MeshObject] = st.one_of(
    services,
    endpoint_slices,
    pods,
    endpoint_slices,
    pods,
    mesh_namespaces,
    traffic_splits(),
    traffic_targets(),
    route_groups(),
    tcp_routes(),
)
Objects = dict[state.Key, state.MeshObject]


@st.composite
def change_sets(draw: st.DrawFn) -> dict[state.Key, state.MeshObject | None]:
    """A few objects added or replaced, and a few removed (by the key of a drawn object)."""
    changes: dict[state.Key, state.MeshObject | None] = {}
    for obj in draw(st.lists(mesh_objects, min_size=1, max_size=3)):
        changes[state.key_of(obj)] = None if draw(st.integers(0, 3)) == 0 else obj
    return changes


Reconfiguring = tuple[snapshots.MeshSettings | None, state.AccessMode | None]
reconfigurings: st.SearchStrategy[Reconfiguring] = st.tuples(
    st.sampled_from([None, None, None, None, snapshots.MeshSettings(trust_domain="example.org")]),
    st.sampled_from([None, None, None, None, "strict", "permissive"]),
)


def _assert_matches_reference(
    compiler: incremental.IncrementalCompiler, objects: Objects, mesh: state.MeshState
) -> None:
    reference = compiling.compile_mesh(mesh)
    held = compiler.resources
    workloads = sorted(name for name in held if name.startswith("proxy/"))
    assert workloads == sorted(
        resources.workload_name(ref.namespace, ref.pod) for ref in reference.configs
    )
    for ref, expected in reference.configs.items():
        assembled = resources.assemble(held, resources.workload_name(ref.namespace, ref.pod))
        assert assembled.version == expected.version, ref
        assert assembled.to_json() == expected.to_json(), ref
    fresh = incremental.IncrementalCompiler(mesh)
    assert {n: r.version for n, r in held.items()} == {
        n: r.version for n, r in fresh.resources.items()
    }
    assert compiler.all_findings() == reference.findings
    assert sorted(map(state.key_of, compiler.mesh_state().services)) == sorted(
        key for key in objects if key[0] == "Service"
    )


@fuzzing.examples(80, deadline=None)
@given(
    initial=st.lists(mesh_objects, min_size=10, max_size=30),
    steps=st.lists(st.tuples(change_sets(), reconfigurings), min_size=1, max_size=4),
)
def test_incremental_resources_always_equal_a_full_compilation(
    initial: list[state.MeshObject],
    steps: list[tuple[dict[state.Key, state.MeshObject | None], Reconfiguring]],
) -> None:
    objects: Objects = {state.key_of(obj): obj for obj in initial}
    settings = snapshots.MeshSettings()
    default_access: state.AccessMode = "permissive"
    compiler = incremental.IncrementalCompiler(state.MeshState.of(objects.values()))
    for changes, (new_settings, new_access) in steps:
        before = dict(compiler.resources)
        update = compiler.apply(changes, settings=new_settings, default_access=new_access)
        for key, obj in changes.items():
            if obj is None:
                objects.pop(key, None)
            else:
                objects[key] = obj
        settings = new_settings or settings
        default_access = new_access or default_access
        after = {**before, **update.delta.changed}
        for name in update.delta.removed:
            del after[name]
        assert after == compiler.resources  # the delta is exactly what changed
        assert all(before.get(n) != r for n, r in update.delta.changed.items())
        mesh = state.MeshState.of(
            objects.values(), settings=settings, default_access=default_access
        )
        _assert_matches_reference(compiler, objects, mesh)


def _slice(service: str, *pairs: tuple[str, str | None]) -> state.EndpointSlice:
    """The Service's one EndpointSlice (`<service>-x` in shop): (address, pod) endpoints."""
    return state.EndpointSlice(
        namespace="shop",
        name=f"{service}-x",
        service=service,
        endpoints=tuple(state.SliceEndpoint(address=address, pod=pod) for address, pod in pairs),
    )


def _split(weights: dict[str, int]) -> split.TrafficSplit:
    return split.TrafficSplit.model_validate(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": _meta("shop", "api-canary"),
            "spec": {
                "service": "api",
                "backends": [{"service": name, "weight": w} for name, w in weights.items()],
            },
        }
    )


def _target(sources: list[str]) -> access.TrafficTarget:
    return access.TrafficTarget.model_validate(
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": _meta("shop", "web-calls-api"),
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "api"},
                "sources": [{"kind": "ServiceAccount", "name": name} for name in sources],
                "rules": [{"kind": "HTTPRouteGroup", "name": "api-routes"}],
            },
        }
    )


def _shop() -> list[state.MeshObject]:
    """web calls api, split 90/10 between api and api-v2, in a strict namespace; admin
    (gRPC) has one endpoint outside the mesh."""
    http = (state.ServicePort(name="http", port=80, target_port=8080),)
    service = {
        name: state.Service(ref=refs.ServiceRef(namespace="shop", name=name), ports=http)
        for name in ("web", "api", "api-v2")
    }
    grpc = (state.ServicePort(name="grpc", port=81, target_port=9090),)
    admin = state.Service(ref=refs.ServiceRef(namespace="shop", name="admin"), ports=grpc)
    return [
        state.Namespace(name="shop", access="strict"),
        *service.values(),
        admin,
        _slice("admin", ("10.9.0.2", None)),
        _slice("web", ("10.0.0.1", "web-1")),
        _slice("api", ("10.0.0.2", "api-1")),
        _slice("api-v2", ("10.0.0.3", "api-v2-1")),
        state.Pod(
            namespace="shop", name="web-1", service_account="web", ip="10.0.0.1", meshed=True
        ),
        state.Pod(
            namespace="shop", name="api-1", service_account="api", ip="10.0.0.2", meshed=True
        ),
        state.Pod(
            namespace="shop", name="api-v2-1", service_account="api", ip="10.0.0.3", meshed=True
        ),
        _split({"api": 90, "api-v2": 10}),
        _target(["web"]),
        specs.HTTPRouteGroup.model_validate(
            {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "HTTPRouteGroup",
                "metadata": _meta("shop", "api-routes"),
                "spec": {"matches": [{"name": "all", "pathRegex": "/"}]},
            }
        ),
    ]


def _changed_by(*changed: state.MeshObject) -> set[str]:
    """What the shop's resources become after `changed`; checked against the reference."""
    compiler = incremental.IncrementalCompiler(state.MeshState.of(_shop()))
    update = compiler.apply({state.key_of(obj): obj for obj in changed})
    objects = {state.key_of(obj): obj for obj in [*_shop(), *changed]}
    _assert_matches_reference(compiler, objects, state.MeshState.of(objects.values()))
    assert not update.delta.removed
    return set(update.delta.changed)


def test_a_weight_change_changes_exactly_one_outbound_resource() -> None:
    assert _changed_by(_split({"api": 50, "api-v2": 50})) == {"outbound/shop/api"}


def test_an_endpoint_change_touches_only_its_services_outbound() -> None:
    moved = _slice("web", ("10.0.0.1", "web-1"), ("10.9.0.1", None))
    assert _changed_by(moved) == {"outbound/shop/web"}


def test_an_endpoint_naming_a_pod_that_serves_the_port_already_leaves_its_inbound() -> None:
    moved = _slice("web", ("10.0.0.1", "web-1"), ("10.0.0.2", "api-1"))
    assert _changed_by(moved) == {"outbound/shop/web"}


def test_an_endpoint_that_gives_a_pod_a_new_port_also_changes_that_pods_inbound() -> None:
    moved = _slice("admin", ("10.9.0.2", None), ("10.0.0.2", "api-1"))
    assert _changed_by(moved) == {
        "outbound/shop/admin",
        "proxy/shop/api-1",  # its workload binds one more port, to the policy of its
        "inbound/shop/api/9090/http2",  # ServiceAccount on that port (new: none had it)
    }


def test_a_traffic_target_change_touches_only_inbound_policies_of_its_destination() -> None:
    assert _changed_by(_target(["web", "admin"])) == {"inbound/shop/api/8080/http"}
