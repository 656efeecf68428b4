"""Named, versioned resources: content versions, and a proxy's config assembled from them
equal to one built whole (the compiler's side of this is tests/compiler/test_incremental)."""

from __future__ import annotations

import pytest

from smimesh.proxyconfig import inbound, outbound, refs, resources, snapshots

pytestmark = pytest.mark.fast

PROXY = refs.ProxyRef(namespace="shop", service_account="web", pod="web-1")
IDENTITY = "spiffe://cluster.local/ns/shop/sa/web"


def _service(name: str) -> outbound.OutboundService:
    return outbound.OutboundService(
        service=refs.ServiceRef(namespace="shop", name=name),
        hostnames=(name,),
        ports=(outbound.ServicePort(port=80, target_port=8080, protocol="http"),),
    )


def _held() -> dict[str, resources.AnyResource]:
    policy = inbound.InboundPolicy(port=8080, protocol="http", permissive=True)
    policy_name = resources.inbound_name("shop", "web", 8080, "http")
    binding = resources.PortBinding(port=8080, app_port=18080, policy=policy_name)
    workload = resources.Workload(proxy=PROXY, identity=IDENTITY, ports=(binding,))
    held: list[resources.AnyResource] = [
        resources.Resource.of(resources.SETTINGS, snapshots.MeshSettings()),
        resources.Resource.of(policy_name, policy),
        resources.Resource.of(resources.workload_name("shop", "web-1"), workload),
        *(
            resources.Resource.of(resources.outbound_name(s.service), s)
            for s in (_service("b"), _service("a"))
        ),
    ]
    return {resource.name: resource for resource in held}


def test_a_version_is_the_hash_of_the_content() -> None:
    one, two = (resources.Resource.of("outbound/shop/a", _service("a")) for _ in range(2))
    other = resources.Resource.of("outbound/shop/a", _service("b"))
    assert one.version == two.version != other.version


def test_services_encoded_one_by_one_join_into_the_outbound_section() -> None:
    services = (_service("a"), _service("b"))
    joined = snapshots.join_outbound(snapshots.canonical_json(s) for s in services)
    assert joined == snapshots.encode_outbound(services)
    assert snapshots.join_outbound([]) == snapshots.encode_outbound(())


def test_assembled_config_equals_the_config_built_whole() -> None:
    whole = snapshots.ProxyConfig.build(
        proxy=PROXY,
        identity=IDENTITY,
        settings=snapshots.MeshSettings(),
        outbound=(_service("a"), _service("b")),
        inbound=(inbound.InboundPort(port=8080, app_port=18080, protocol="http", permissive=True),),
    )
    assembled = resources.assemble(_held(), resources.workload_name("shop", "web-1"))
    assert assembled.version == whole.version
    assert assembled.to_json() == whole.to_json()


def test_a_name_holding_the_wrong_kind_of_resource_is_an_error() -> None:
    held = _held()
    with pytest.raises(TypeError, match="not a Workload"):
        resources.assemble(held, resources.SETTINGS)
