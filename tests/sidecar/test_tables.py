"""Route tables (`smimesh.sidecar.tables`): one snapshot in, every lookup of the hot path out
— by Host/authority (any of the Service's hostnames, with or without the port), by cluster IP,
by Service, for local ports, and the inbound policies; endpoint state survives a rebuild."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import inbound, outbound, refs
from smimesh.sidecar import clusters, settings, tables
from tests.sidecar.conftest import NS, config, service, split

pytestmark = pytest.mark.fast


def build(
    snapshot_services: tuple[outbound.OutboundService, ...] = (),
    *,
    registry: clusters.Registry | None = None,
    sidecar: settings.SidecarSettings | None = None,
    inbound_ports: tuple[inbound.InboundPort, ...] = (),
) -> tables.Table:
    return tables.build(
        config(outbound_services=snapshot_services, inbound_ports=inbound_ports),
        registry or clusters.Registry(settings.Limits(), settings.Outliers()),
        sidecar or settings.SidecarSettings(),
    )


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web", ("web", 80)),
        ("WEB.shop.svc.cluster.local.", ("web.shop.svc.cluster.local", 80)),
        ("web:8080", ("web", 8080)),
        ("[fd00::1]:9090", ("fd00::1", 9090)),
        ("[fd00::1]", ("fd00::1", 80)),
        ("web:http", ("web", 80)),
    ],
)
def test_an_authority_splits_into_a_lower_case_host_and_a_port(
    authority: str, expected: tuple[str, int]
) -> None:
    assert tables.split_authority(authority, 80) == expected


def test_every_hostname_of_a_service_finds_the_same_logical_target() -> None:
    table = build((service("web", [("10.0.0.1", 8080, "web-1")], cluster_ip="10.96.0.10"),))
    found = {
        table.by_authority(host, 80)
        for host in ("web", "web.shop", "web.shop.svc.cluster.local", "web:80")
    }
    assert len(found) == 1
    (logical,) = found
    assert logical is not None
    assert logical.name == f"{NS}/web:80"
    assert table.by_address[("10.96.0.10", 80)] is logical
    assert table.by_service[(f"{NS}/web", 80)] is logical
    assert [member.address.port for member in logical.root.members] == [8080]


def test_a_one_port_service_answers_whatever_port_the_caller_implied() -> None:
    table = build((service("web", [("10.0.0.1", 8080, "web-1")], port=8000),))
    assert table.by_authority("web", 80) is not None  # no port: the default one
    assert table.by_authority("web:8000", 80) is not None
    assert table.by_authority("web:9999", 80) is None
    assert table.by_authority("other", 80) is None


def test_split_backends_become_their_services_clusters_and_unknown_ones_stay_empty() -> None:
    root = service("web", routes=(split("web", {"web-v1": 90, "web-v2": 10, "gone": 0}),))
    table = build((root, service("web-v1", [("10.0.0.1", 80, "v1")]), service("web-v2")))
    (route,) = table.by_service[(f"{NS}/web", 80)].splits
    names = {backend.service: backend.cluster for backend in route.backends}
    assert names[f"{NS}/web-v1"] is not None
    assert names[f"{NS}/web-v1"].name == f"{NS}/web-v1:80"
    assert names[f"{NS}/gone"] is None
    assert route.cumulative == (90, 100, 100)


def test_a_local_port_maps_to_its_service() -> None:
    sidecar = settings.SidecarSettings(
        local_services=(
            settings.LocalService(
                local_port=15001, service=refs.ServiceRef(namespace=NS, name="web"), port=80
            ),
            settings.LocalService(
                local_port=15002, service=refs.ServiceRef(namespace=NS, name="gone"), port=80
            ),
        )
    )
    table = build((service("web"),), sidecar=sidecar)
    assert table.local[15001] is table.by_service[(f"{NS}/web", 80)]
    assert 15002 not in table.local


def test_an_inbound_port_accepts_plaintext_only_when_permissive_or_mtls_is_not_strict() -> None:
    ports = (
        inbound.InboundPort(port=8080, app_port=80, protocol="http", permissive=True),
        inbound.InboundPort(port=8081, app_port=81, protocol="tcp", permissive=False),
    )
    strict = tables.build(
        config(inbound_ports=ports, mtls="strict"),
        clusters.Registry(settings.Limits(), settings.Outliers()),
        settings.SidecarSettings(),
    )
    assert strict.inbound[8080].plaintext_ok
    assert not strict.inbound[8081].plaintext_ok
    assert [m.address.port for m in strict.inbound[8081].app.members] == [81]


def test_a_rebuild_keeps_the_state_of_endpoints_the_new_snapshot_still_names() -> None:
    registry = clusters.Registry(settings.Limits(), settings.Outliers())
    first = build((service("web", [("10.0.0.1", 80, "web-1")]),), registry=registry)
    state = first.by_service[(f"{NS}/web", 80)].root.members[0]
    state.consecutive_failures = 3
    second = build(
        (service("web", [("10.0.0.1", 80, "web-1"), ("10.0.0.2", 80, "web-2")]),),
        registry=registry,
    )
    assert second.by_service[(f"{NS}/web", 80)].root.members[0] is state
    assert first.by_service[(f"{NS}/web", 80)] is not second.by_service[(f"{NS}/web", 80)]
