"""Certificates from the mesh CA across a root rotation, against the operator's real signing
servicer and config-server credentials on a real socket: the sidecar trusts the roots sent with
its last certificate when it talks to the operator, so it keeps getting certificates once the
operator's own certificate moves to the new root, although its trust-bundle file still holds
only the old one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from smimesh._aio import backoff, waiting
from smimesh.identity import authority, bundles, keys, rotation, secretdata, spiffe, tlscontexts
from smimesh.operator import authenticating, authorities, certificates, renewing
from smimesh.proxyconfig import proxyconfig_pb2_grpc, refs
from smimesh.sidecar import certifying
from tests.identity.handshakes import CLIENT, connect

PROXY = refs.ProxyRef(namespace="shop", service_account="web", pod="web-1")


class Trusting:
    async def authenticate(self, token: str) -> authenticating.Caller:
        return authenticating.Caller(namespace="shop", service_account="web", pod="web-1")


@pytest.fixture
async def operator() -> AsyncIterator[tuple[authorities.CaHolder, int]]:
    holder = authorities.CaHolder(rotation.stable(authority.create("cluster.local")))
    serving = renewing.ServingCertificate(holder, dns_names=(), ip_addresses=("127.0.0.1",))
    server = grpc.aio.server()
    proxyconfig_pb2_grpc.add_CertificatesServicer_to_server(
        certificates.Certificates(holder, Trusting()), server
    )
    port = server.add_secure_port("127.0.0.1:0", renewing.grpc_credentials(serving))
    await server.start()
    try:
        yield holder, port
    finally:
        await server.stop(grace=None)


def _sidecar(port: int, tmp_path: Path, roots: bytes) -> certifying.IssuedCredentials:
    (tmp_path / "token").write_text("token")
    (tmp_path / "ca.crt").write_bytes(roots)
    return certifying.IssuedCredentials(
        target=f"127.0.0.1:{port}",
        proxy=PROXY,
        token_file=tmp_path / "token",
        trust_bundle_file=tmp_path / "ca.crt",
        trust_domain="cluster.local",
    )


def _swap(holder: authorities.CaHolder, state: rotation.MeshCa) -> None:
    holder.swap(state, secretdata.dump(state))


async def test_a_sidecar_keeps_its_certificates_coming_across_a_rotation(
    operator: tuple[authorities.CaHolder, int], tmp_path: Path
) -> None:
    holder, port = operator
    old = holder.ca
    file_roots = old.bundle.pem()
    sidecar = _sidecar(port, tmp_path, file_roots)
    await sidecar.request()

    now = datetime.datetime.now(datetime.UTC)
    preparing = rotation.begin(old, authority.create("cluster.local"), now=now)
    _swap(holder, preparing)
    await sidecar.request()  # learns the new root with this certificate
    assert keys.certificates_from_pem(sidecar.learnt_bundle) == preparing.bundle.roots

    draining = rotation.advance(preparing, now=now + authority.DEFAULT_LEAF_LIFETIME)
    _swap(holder, draining)
    material = await sidecar.request()  # the operator presents a certificate under the new root
    # A peer trusting only the new root accepts the sidecar's new certificate.
    key = keys.generate_key()
    peer = draining.active.sign(keys.build_request(key, CLIENT), expected=CLIENT)
    new_only = bundles.TrustBundle("cluster.local", (draining.active.root,))
    seen = await asyncio.to_thread(
        connect,
        material.server,
        tlscontexts.client_context(key=key, certificate=peer, bundle=new_only),
    )
    assert seen.client_saw == spiffe.for_service_account("cluster.local", "shop", "web")

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(grpc.aio.AioRpcError):  # the file alone no longer reaches the operator
        await _sidecar(port, fresh, file_roots).request()


async def test_a_failed_renewal_is_retried_well_before_the_certificate_expires(
    operator: tuple[authorities.CaHolder, int], tmp_path: Path
) -> None:
    """With the CA away, the backoff grows to 30 s; a certificate with 16 s left must not
    wait that long between tries (an eighth of what is left, so several tries remain)."""
    _, port = operator
    sidecar = _sidecar(port, tmp_path, operator[0].ca.bundle.pem())
    retry = backoff.Backoff(initial=30.0, maximum=30.0)
    assert sidecar._retry_delay(retry) >= 15.0  # no certificate yet: the plain backoff
    material = await sidecar.request()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=16)
    sidecar.material = dataclasses.replace(
        material, certificate=dataclasses.replace(material.certificate, not_after=soon)
    )
    delays = [sidecar._retry_delay(retry) for _ in range(20)]
    assert max(delays) <= 2.0, delays
    expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    sidecar.material = dataclasses.replace(
        material, certificate=dataclasses.replace(material.certificate, not_after=expired)
    )
    assert sidecar._retry_delay(retry) == 0.5  # already expired: try again quickly


async def test_roots_mounted_after_the_sidecar_starts_are_waited_for(
    operator: tuple[authorities.CaHolder, int], tmp_path: Path
) -> None:
    """On a real node a namespace's first Pods can start before the operator has published the
    trust bundle there (the ConfigMap is an optional projected source): the sidecar says what
    it waits for and gets its certificate once the kubelet mounts the file."""
    holder, port = operator
    sidecar = _sidecar(port, tmp_path, holder.ca.bundle.pem())
    sidecar.trust_bundle_file.unlink()
    watching = asyncio.create_task(sidecar.watch())
    try:
        said = await waiting.eventually(
            lambda: sidecar.last_error, timeout=10, message="the sidecar said nothing"
        )
        assert "no mesh roots at" in said
        assert "trust-bundle ConfigMap" in said
        assert not sidecar.issued.is_set()
        sidecar.trust_bundle_file.write_bytes(holder.ca.bundle.pem())
        async with asyncio.timeout(10):
            await sidecar.issued.wait()
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
