"""A whole root rotation on a running mesh, asked for with `kubectl smi ca rotate`: the CA
Secret walks PREPARING -> DRAINING -> STABLE, the trust-bundle ConfigMap gains then loses the
old root, sidecars end up with certificates under the new root, the config server presents
one on a fresh connection, and traffic between two meshed workloads (mTLS) never fails."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from kubernetes import client

from smimesh._aio import waiting
from smimesh.identity import bundles, keys, secretdata
from smimesh.kube import names
from smimesh.operator import authorities
from smimesh.proxyconfig import proxyconfig_pb2, proxyconfig_pb2_grpc
from smimesh.testing import clusters, meshes
from tests.e2e import support

pytestmark = pytest.mark.cluster

LIFETIME = 15
"""Seconds a workload certificate lives: PREPARING lasts that long, DRAINING that plus 1 s."""
OPERATOR_ARGS = (
    "--workload-cert-lifetime", str(LIFETIME), "--ca-period", "1", "--ca-drain-margin", "1",
)  # fmt: skip


@pytest.fixture
def mesh(cluster: clusters.Cluster) -> Iterator[meshes.LocalMesh]:
    with support.local_mesh(cluster, OPERATOR_ARGS) as local:
        yield local


class Traffic(threading.Thread):
    """`a` calls `url` in batches until stopped; counts what succeeded and what failed."""

    def __init__(self, caller: meshes.workloads.LocalWorkload, url: str) -> None:
        super().__init__(daemon=True)
        self.caller, self.url = caller, url
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                answer = httpx.post(
                    f"{self.caller.app_url(8080)}/call",
                    json={"url": self.url, "count": 10, "concurrency": 2},
                    timeout=60,
                ).json()
            except httpx.HTTPError as exc:
                self.failed += 1
                self.errors.append(repr(exc))
                continue
            self.ok += int(answer["ok"])
            self.failed += int(answer["failed"])
            if answer["failed"]:
                self.errors.append(str(answer))


def _ca(api: client.ApiClient) -> dict[str, str]:
    secret = client.CoreV1Api(api).read_namespaced_secret(names.CA_SECRET, names.MESH_NAMESPACE)
    return authorities.decode(secret.data)


def _published(api: client.ApiClient) -> tuple[x509.Certificate, ...]:
    found = client.CoreV1Api(api).read_namespaced_config_map(
        names.TRUST_BUNDLE_CONFIGMAP, names.MESH_NAMESPACE
    )
    return keys.certificates_from_pem(found.data[names.TRUST_BUNDLE_KEY].encode())


def _roots(ca_bundle: str | bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a caBundle (the Python client hands it over base64-encoded)."""
    raw = ca_bundle.encode() if isinstance(ca_bundle, str) else ca_bundle
    return keys.certificates_from_pem(base64.b64decode(raw))


def _smi(cluster: clusters.Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "kubectl-smi"
    return subprocess.run(
        [str(command), *args, f"--kubeconfig={cluster.kubeconfig}"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )  # fmt: skip


def _server_chains_to(address: tuple[str, int], root: x509.Certificate) -> str | None:
    """The SPIFFE id (or subject) the TLS server at `address` presents, if its chain verifies
    against `root` alone; None if it does not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=keys.certificates_to_pem((root,)).decode())
    try:
        with (
            socket.create_connection(address, timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        return None
    assert der is not None
    return bundles.identity_of(x509.load_der_x509_certificate(der)).uri


def _config_server_code(grpc_address: str, root: x509.Certificate) -> grpc.StatusCode:
    """A fresh gRPC connection trusting `root` alone: UNAUTHENTICATED (our bogus token) means
    the TLS handshake succeeded; UNAVAILABLE that the server's chain did not verify."""
    credentials = grpc.ssl_channel_credentials(keys.certificates_to_pem((root,)))
    with grpc.secure_channel(
        grpc_address, credentials, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
    ) as channel:
        try:
            proxyconfig_pb2_grpc.CertificatesStub(channel).Sign(
                proxyconfig_pb2.SignRequest(csr_pem=b"", token="not-a-token"), timeout=10
            )
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_requested_root_rotation_finishes_without_a_failed_request(
    mesh: meshes.LocalMesh,
) -> None:
    namespace = mesh.namespace(f"e2e-{uuid.uuid4().hex[:6]}")
    mesh.service(namespace, "b", {"app": "b"})
    a = mesh.workload(namespace, "a-1", "service-a", {"app": "a"})
    b = mesh.workload(namespace, "b-1", "service-b", {"app": "b"})
    assert mesh.operator is not None
    api = mesh.cluster.api_client()
    old_root = keys.certificates_from_pem(_ca(api)[secretdata.CA_CERT].encode())[0]
    b_inbound = (b.address, 8080)
    b_identity = f"spiffe://cluster.local/ns/{namespace}/sa/service-b"
    assert _server_chains_to(b_inbound, old_root) == b_identity

    traffic = Traffic(a, f"http://b.{namespace}.svc.cluster.local/echo")
    traffic.start()
    try:
        # What the session's mesh holds before: one root, no rotation under way.
        data = _ca(api)
        published = _published(api)
        phases = [data.get(secretdata.PHASE, "stable")]
        bundle_sizes = [len(published)]
        asked = _smi(mesh.cluster, "ca", "rotate")
        assert asked.returncode == 0, asked.stderr

        def rotated() -> bool:
            """Record each phase and bundle size seen, until stable again on one root."""
            nonlocal data, published
            data = _ca(api)
            phase = data.get(secretdata.PHASE, "stable")
            if phases[-1] != phase:
                phases.append(phase)
            published = _published(api)
            if bundle_sizes[-1] != len(published):
                bundle_sizes.append(len(published))
            return phases[-1] == "stable" and len(phases) > 1 and bundle_sizes[-1] == 1

        waiting.eventually_sync(
            rotated,
            timeout=4 * LIFETIME + 30,
            message=lambda: f"phases {phases}, bundle sizes {bundle_sizes}",
            interval=0.2,
            error=AssertionError,
        )
        new_root = published[0]
        assert new_root != old_root
        assert phases == ["stable", "preparing", "draining", "stable"]
        assert bundle_sizes == [1, 2, 1], "the ConfigMap gained the new root, then lost the old"
        assert keys.certificates_from_pem(data[secretdata.CA_CERT].encode()) == (new_root,)

        # Sidecars renew well within a lifetime: b's inbound certificate chains to the new
        # root (and no longer verifies against the old one).
        waiting.eventually_sync(
            lambda: _server_chains_to(b_inbound, new_root) == b_identity,
            timeout=LIFETIME,
            message="b never got a certificate under the new root",
            interval=0.5,
            error=AssertionError,
        )
        assert _server_chains_to(b_inbound, old_root) is None
        time.sleep(2)  # traffic keeps flowing after the old root is gone
    finally:
        traffic.stopping.set()
        traffic.join(timeout=90)
    print(f"requests during the rotation: {traffic.ok} ok, {traffic.failed} failed")
    assert traffic.failed == 0, traffic.errors[:5]
    assert traffic.ok >= 300, f"only {traffic.ok} requests went through during the rotation"

    # A workload started now knows only the new root, and its fresh connections to b (mTLS
    # handshakes under the new root at both ends) succeed.
    c = mesh.workload(namespace, "c-1", "service-c", {"app": "c"})
    answer = httpx.post(
        f"{c.app_url(8080)}/call",
        json={"url": f"http://b.{namespace}.svc.cluster.local/echo", "count": 5},
        timeout=60,
    ).json()
    assert (answer["ok"], answer["failed"]) == (5, 0), answer

    grpc_address = mesh.operator.grpc_address
    assert _config_server_code(grpc_address, new_root) is grpc.StatusCode.UNAUTHENTICATED
    assert _config_server_code(grpc_address, old_root) is grpc.StatusCode.UNAVAILABLE
    status = _smi(mesh.cluster, "ca", "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    assert '"phase": "stable"' in status.stdout
    # The apiserver trusts only the new root for our webhooks, and still reaches them: a
    # TrafficSplit stored as v1alpha4 is read as v1alpha1 through the conversion webhook.
    validator = client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(
        "smimesh-validator"
    )
    for webhook in validator.webhooks:
        assert _roots(webhook.client_config.ca_bundle) == (new_root,)
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
        "trafficsplits.split.smi-spec.io"
    )
    assert _roots(crd.spec.conversion.webhook.client_config.ca_bundle) == (new_root,)
    mesh.apply(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "after-rotation", "namespace": namespace},
            "spec": {"service": "b", "backends": [{"service": "b", "weight": 1}]},
        }
    )
    converted = mesh.cluster.kubectl(
        "get", "trafficsplits.v1alpha1.split.smi-spec.io", "after-rotation", "-n", namespace,
        "-o", "jsonpath={.apiVersion}",
    )  # fmt: skip
    assert (converted.returncode, converted.stdout) == (0, "split.smi-spec.io/v1alpha1"), (
        converted.stderr
    )

    events = client.CoreV1Api(api).list_namespaced_event(
        names.MESH_NAMESPACE, field_selector=f"involvedObject.name={names.CA_SECRET}"
    )
    reasons = [event.reason for event in events.items]
    for reason in ("RotationStarted", "RootPromoted", "RotationFinished"):
        assert reason in reasons, reasons
