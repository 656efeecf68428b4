"""Serving certificates follow the mesh CA, over real sockets: after the holder swaps in a CA
with a new root, the HTTPS server's live context and the gRPC server's dynamic credentials
present certificates under the new root on new handshakes, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
from collections.abc import Mapping

import grpc
import pytest

from smimesh._aio import waiting
from smimesh.identity import authority, keys, rotation, secretdata
from smimesh.operator import authorities, renewing, webhooking
from smimesh.proxyconfig import proxyconfig_pb2_grpc
from smimesh.webhooks.injection import settings


class NoNamespaces:
    async def labels(self, namespace: str) -> Mapping[str, str]:
        return {}


def _root_pem(ca: authority.CertificateAuthority) -> str:
    return keys.certificates_to_pem((ca.root,)).decode()


def _presented_under(port: int, ca: authority.CertificateAuthority) -> bool:
    """True if the server at 127.0.0.1:port presents a chain that verifies against `ca`'s root."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=_root_pem(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def _certificate(holder: authorities.CaHolder) -> renewing.ServingCertificate:
    dns, ips = renewing.serving_names(namespace="smimesh-system", address="127.0.0.1:0")
    return renewing.ServingCertificate(holder, dns_names=dns, ip_addresses=ips)


def _swap(holder: authorities.CaHolder, ca: authority.CertificateAuthority) -> None:
    state = rotation.stable(ca)
    holder.swap(state, secretdata.dump(state))


async def test_the_https_server_presents_a_certificate_under_the_new_ca_after_a_swap() -> None:
    old, new = authority.create("cluster.local"), authority.create("cluster.local")
    holder = authorities.CaHolder(rotation.stable(old))
    certificate = _certificate(holder)
    context = renewing.webhook_context(certificate)
    webhooks = webhooking.Webhooks(settings.InjectionSettings(), NoNamespaces())
    server = await webhooking.start(webhooks, address="127.0.0.1:0", ssl_context=context)
    renewal = asyncio.create_task(renewing.WebhookRenewal(certificate, context).run())
    try:
        assert await asyncio.to_thread(_presented_under, server.port, old)
        _swap(holder, new)
        await waiting.eventually(  # the renewal task wakes on the swap and reloads the context
            lambda: asyncio.to_thread(_presented_under, server.port, new),
            timeout=10,
            message="the HTTPS server kept its certificate under the old root",
            interval=0.05,
            error=AssertionError,
        )
        assert not await asyncio.to_thread(_presented_under, server.port, old)
    finally:
        renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewal
        await server.stop()


async def test_the_grpc_server_fetches_a_new_certificate_on_the_next_handshake() -> None:
    old, new = authority.create("cluster.local"), authority.create("cluster.local")
    holder = authorities.CaHolder(rotation.stable(old))
    certificate = _certificate(holder)
    server = grpc.aio.server()
    proxyconfig_pb2_grpc.add_CertificatesServicer_to_server(
        proxyconfig_pb2_grpc.CertificatesServicer(), server
    )
    port = server.add_secure_port("127.0.0.1:0", renewing.grpc_credentials(certificate))
    await server.start()
    try:
        assert await asyncio.to_thread(_presented_under, port, old)
        generation = certificate.generation
        _swap(holder, new)
        assert certificate.stale()
        assert await asyncio.to_thread(_presented_under, port, new)
        assert certificate.generation == generation + 1
        assert not await asyncio.to_thread(_presented_under, port, old)
        assert not certificate.stale(), "issued once, then reused on every handshake"
    finally:
        await server.stop(grace=None)


@pytest.mark.fast
def test_a_certificate_is_stale_once_past_its_renewal_time() -> None:
    ca = authority.create("cluster.local")
    holder = authorities.CaHolder(rotation.stable(ca))
    certificate = renewing.ServingCertificate(
        holder, dns_names=("x",), ip_addresses=(), lifetime=datetime.timedelta(minutes=10)
    )
    assert not certificate.stale()
    assert certificate.issued is not None
    lifetime = certificate.issued.not_after - certificate.issued.not_before
    assert lifetime == datetime.timedelta(minutes=15), "10 min + the 5 min back-dating"
    certificate.renew_at = datetime.datetime.now(datetime.UTC)
    assert certificate.stale()
