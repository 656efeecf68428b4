"""`ssl.SSLContext`s for mesh mTLS, and the peer's SPIFFE identity once a handshake is done.

The sidecar builds a server context for its inbound listener and a client context for its
upstream connections from its key (`keys`), its issued chain (`authority.IssuedCertificate`)
and the trust bundle (`bundles`). Renewal never drops connections: build new contexts from the
new certificate and swap the reference; open connections keep the context they started with.
Identity, not host names, is what mesh peers check: call `peer_identity` after the handshake.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from smimesh.identity import authority, bundles, errors, keys, spiffe

TLS_VERSION = ssl.TLSVersion.TLSv1_3
"""Mesh traffic is TLS 1.3 only: both ends are ours."""


def server_context(
    *,
    key: keys.PrivateKey,
    certificate: authority.IssuedCertificate,
    bundle: bundles.TrustBundle,
    alpn_protocols: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server context that requires and verifies a client certificate from the bundle."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(context, key, certificate, bundle, alpn_protocols)
    return context


def client_context(
    *,
    key: keys.PrivateKey,
    certificate: authority.IssuedCertificate,
    bundle: bundles.TrustBundle,
    alpn_protocols: Sequence[str] = (),
) -> ssl.SSLContext:
    """A client context that presents our certificate and verifies the server's chain.

    Host-name checking is off: mesh servers are named by SPIFFE ID, which the caller compares
    with the expected identity through `peer_identity` right after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    _configure(context, key, certificate, bundle, alpn_protocols)
    return context


def serving_context(
    *, key: keys.PrivateKey, certificate: authority.IssuedCertificate
) -> ssl.SSLContext:
    """A plain TLS server context (no client certificate) for non-mesh clients, such as the
    apiserver calling the operator's webhooks with `authority.issue_serving` certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_serving(context, key=key, certificate=certificate)
    return context


def load_serving(
    context: ssl.SSLContext, *, key: keys.PrivateKey, certificate: authority.IssuedCertificate
) -> None:
    """Put a new certificate into a live server context: handshakes that start afterwards
    present it, connections already made keep theirs (OpenSSL copies it into each one)."""
    with _in_memory_file(keys.key_to_pem(key) + certificate.chain_pem()) as path:
        context.load_cert_chain(path)


def _configure(
    context: ssl.SSLContext,
    key: keys.PrivateKey,
    certificate: authority.IssuedCertificate,
    bundle: bundles.TrustBundle,
    alpn_protocols: Sequence[str],
) -> None:
    context.minimum_version = TLS_VERSION
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=bundle.pem().decode())
    with _in_memory_file(keys.key_to_pem(key) + certificate.chain_pem()) as path:
        context.load_cert_chain(path)
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))


@contextlib.contextmanager
def _in_memory_file(content: bytes) -> Iterator[str]:
    """A path holding `content` for `load_cert_chain`, which only reads files.

    On Linux an anonymous memfd (never on disk, gone when closed); elsewhere a file in a
    private temporary directory, removed on exit.
    """
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("smimesh-credentials", os.MFD_CLOEXEC)
        try:
            os.write(descriptor, content)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="smimesh-") as directory:
        path = Path(directory) / "credentials.pem"
        path.touch(mode=0o600)
        path.write_bytes(content)
        yield str(path)


def peer_identity(
    connection: ssl.SSLSocket | ssl.SSLObject, *, trust_domain: str | None = None
) -> spiffe.SpiffeId:
    """The verified peer's SPIFFE ID; raise InvalidIdentityError if it has none (or another domain).

    Call only after the handshake: the chain was already verified against the trust bundle.
    """
    der = connection.getpeercert(binary_form=True)
    if der is None:
        raise errors.InvalidIdentityError("the peer presented no certificate")
    identity = bundles.identity_of(x509.load_der_x509_certificate(der))
    if trust_domain is not None and identity.trust_domain != trust_domain:
        raise errors.InvalidIdentityError(
            f"the peer {identity.uri} is not in trust domain {trust_domain!r}"
        )
    return identity
