"""Workload certificates over the operator's gRPC API: the key stays with the workload, the
token decides the identity, the mesh CA (kept in a Secret) signs."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest

from smimesh.identity import bundles, keys, spiffe
from smimesh.proxyconfig import proxyconfig_pb2, proxyconfig_pb2_grpc
from smimesh.testing import clusters
from smimesh.testing.meshes import OperatorProcess, trust_bundle
from tests.operator.scenarios import workload

pytestmark = pytest.mark.cluster


def sign(
    cluster: clusters.Cluster, operator: OperatorProcess, csr_pem: bytes, token: str
) -> proxyconfig_pb2.SignResponse:
    credentials = grpc.ssl_channel_credentials(trust_bundle(cluster))
    with grpc.secure_channel(operator.grpc_address, credentials) as channel:
        stub = proxyconfig_pb2_grpc.CertificatesStub(channel)
        return stub.Sign(proxyconfig_pb2.SignRequest(csr_pem=csr_pem, token=token), timeout=20)


@pytest.fixture
def workload_account(mesh_installed: clusters.Cluster, namespace: str) -> str:
    """ServiceAccount `web` with one Pod, `web-1`, to bind tokens to."""
    workload(mesh_installed, namespace, "web-1", "web", "10.20.0.9", [])
    return namespace


def test_a_workload_gets_a_certificate_for_exactly_its_identity(
    mesh_installed: clusters.Cluster,
    workload_account: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    cluster, namespace = mesh_installed, workload_account
    operator = start_operator()
    key = keys.generate_key()
    identity = spiffe.for_service_account("cluster.local", namespace, "web")
    response = sign(
        cluster,
        operator,
        keys.request_to_pem(keys.build_request(key, identity)),
        cluster.token(namespace, "web", audience="smimesh", pod="web-1"),
    )

    chain = keys.certificates_from_pem(response.certificate_chain_pem)
    bundle = bundles.from_pem("cluster.local", response.trust_bundle_pem)
    assert bundle.verify_chain(chain) == identity
    assert chain[0].public_key().public_numbers() == key.public_key().public_numbers()
    lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
    assert 23 * 3600 <= lifetime.total_seconds() <= 25 * 3600


def test_a_csr_for_another_identity_or_a_wrong_token_is_refused(
    mesh_installed: clusters.Cluster,
    workload_account: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    cluster, namespace = mesh_installed, workload_account
    operator = start_operator()
    key = keys.generate_key()
    other = spiffe.for_service_account("cluster.local", namespace, "admin")
    with pytest.raises(grpc.RpcError) as mismatch:
        sign(
            cluster,
            operator,
            keys.request_to_pem(keys.build_request(key, other)),
            cluster.token(namespace, "web", audience="smimesh", pod="web-1"),
        )
    assert mismatch.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "identity_mismatch" in (mismatch.value.details() or "")

    own = spiffe.for_service_account("cluster.local", namespace, "web")
    with pytest.raises(grpc.RpcError) as audience:
        sign(
            cluster,
            operator,
            keys.request_to_pem(keys.build_request(key, own)),
            cluster.token(namespace, "web"),
        )
    assert audience.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Right audience, but bound to no Pod (`kubectl create token`): no certificate.
    with pytest.raises(grpc.RpcError) as unbound:
        sign(
            cluster,
            operator,
            keys.request_to_pem(keys.build_request(key, own)),
            cluster.token(namespace, "web", audience="smimesh"),
        )
    assert unbound.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "bound to no Pod" in (unbound.value.details() or "")

    with pytest.raises(grpc.RpcError) as garbage:
        sign(
            cluster,
            operator,
            b"not a csr",
            cluster.token(namespace, "web", audience="smimesh", pod="web-1"),
        )
    assert garbage.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "malformed_csr" in (garbage.value.details() or "")


def test_the_ca_is_kept_in_a_secret_and_reused_by_every_replica(
    mesh_installed: clusters.Cluster, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator("replica-x")
    before = trust_bundle(mesh_installed)
    second = start_operator("replica-y")
    secret = json.loads(
        mesh_installed.kubectl(
            "-n", "smimesh-system", "get", "secret", "smimesh-ca", "-o", "json"
        ).stdout
    )
    assert {"ca.crt", "tls.crt", "tls.key"} <= set(secret["data"])
    assert trust_bundle(mesh_installed) == before
    # The second replica serves with a certificate from the same CA.
    credentials = grpc.ssl_channel_credentials(before)
    with grpc.secure_channel(second.grpc_address, credentials) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
