"""Real mTLS over loopback sockets with certificates from the mesh CA.

Each side reads the other's SPIFFE identity; a peer from another CA or with an expired
certificate is refused by the real TLS stack, not by a check of ours.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading

import pytest

from smimesh.identity import authority, bundles, keys, spiffe, tlscontexts

from .handshakes import CLIENT, SERVER, TRUST_DOMAIN, connect


def _workload(
    ca: authority.CertificateAuthority,
    identity: spiffe.SpiffeId,
    *,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME,
) -> tuple[keys.PrivateKey, authority.IssuedCertificate]:
    key = keys.generate_key()
    issued = ca.sign(
        keys.build_request(key, identity), expected=identity, now=now, lifetime=lifetime
    )
    return key, issued


def _bundle(*cas: authority.CertificateAuthority) -> bundles.TrustBundle:
    return bundles.TrustBundle(TRUST_DOMAIN, tuple(ca.root for ca in cas))


def test_mtls_handshake_and_both_sides_read_the_peer_identity(
    ca: authority.CertificateAuthority,
) -> None:
    server_key, server_cert = _workload(ca, SERVER)
    client_key, client_cert = _workload(ca, CLIENT)
    outcome = connect(
        tlscontexts.server_context(key=server_key, certificate=server_cert, bundle=_bundle(ca)),
        tlscontexts.client_context(key=client_key, certificate=client_cert, bundle=_bundle(ca)),
    )
    assert outcome.errors == []
    assert outcome.server_saw == CLIENT
    assert outcome.client_saw == SERVER
    assert outcome.client_received == f"hello {CLIENT}".encode()


def test_a_client_from_another_ca_is_refused(ca: authority.CertificateAuthority) -> None:
    stranger_ca = authority.create(TRUST_DOMAIN)
    server_key, server_cert = _workload(ca, SERVER)
    client_key, client_cert = _workload(stranger_ca, CLIENT)
    outcome = connect(
        tlscontexts.server_context(key=server_key, certificate=server_cert, bundle=_bundle(ca)),
        tlscontexts.client_context(
            key=client_key, certificate=client_cert, bundle=_bundle(ca, stranger_ca)
        ),
    )
    assert outcome.server_saw is None
    assert outcome.client_received == b""
    assert any("certificate verify failed" in str(exc) for exc in outcome.errors), outcome.errors


def test_a_server_from_another_ca_is_refused_by_the_client(
    ca: authority.CertificateAuthority,
) -> None:
    stranger_ca = authority.create(TRUST_DOMAIN)
    server_key, server_cert = _workload(stranger_ca, SERVER)
    client_key, client_cert = _workload(ca, CLIENT)
    outcome = connect(
        tlscontexts.server_context(
            key=server_key, certificate=server_cert, bundle=_bundle(ca, stranger_ca)
        ),
        tlscontexts.client_context(key=client_key, certificate=client_cert, bundle=_bundle(ca)),
    )
    assert outcome.client_saw is None
    assert any("unable to get local issuer" in str(exc) for exc in outcome.errors), outcome.errors


def test_an_expired_client_certificate_is_refused(ca: authority.CertificateAuthority) -> None:
    server_key, server_cert = _workload(ca, SERVER)
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    client_key, expired = _workload(ca, CLIENT, now=yesterday, lifetime=datetime.timedelta(hours=1))
    assert expired.not_after < datetime.datetime.now(datetime.UTC)
    outcome = connect(
        tlscontexts.server_context(key=server_key, certificate=server_cert, bundle=_bundle(ca)),
        tlscontexts.client_context(key=client_key, certificate=expired, bundle=_bundle(ca)),
    )
    assert outcome.server_saw is None
    assert any("certificate has expired" in str(exc) for exc in outcome.errors), outcome.errors


def test_a_client_without_a_certificate_is_refused(ca: authority.CertificateAuthority) -> None:
    server_key, server_cert = _workload(ca, SERVER)
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=_bundle(ca).pem().decode())
    outcome = connect(
        tlscontexts.server_context(key=server_key, certificate=server_cert, bundle=_bundle(ca)),
        anonymous,
    )
    assert outcome.server_saw is None
    assert outcome.client_received == b""
    assert outcome.errors


def test_a_peer_from_another_trust_domain_is_named_but_not_accepted(
    ca: authority.CertificateAuthority,
) -> None:
    foreign_ca = authority.create("partner.example")
    foreign = spiffe.SpiffeId("partner.example", "shop", "web")
    server_key, server_cert = _workload(ca, SERVER)
    client_key, client_cert = _workload(foreign_ca, foreign)
    both = bundles.TrustBundle(TRUST_DOMAIN, (ca.root, foreign_ca.root))
    outcome = connect(
        tlscontexts.server_context(key=server_key, certificate=server_cert, bundle=both),
        tlscontexts.client_context(key=client_key, certificate=client_cert, bundle=both),
    )
    assert outcome.server_saw is None
    assert any("not in trust domain 'cluster.local'" in str(exc) for exc in outcome.errors)


@pytest.mark.fast
def test_contexts_are_tls13_only_and_never_check_host_names(
    ca: authority.CertificateAuthority,
) -> None:
    key, issued = _workload(ca, CLIENT)
    context = tlscontexts.client_context(key=key, certificate=issued, bundle=_bundle(ca))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False


@pytest.mark.parametrize(("alpn", "chosen"), [(("h2", "http/1.1"), "h2"), ((), None)])
def test_alpn_is_negotiated_when_asked(
    ca: authority.CertificateAuthority, alpn: tuple[str, ...], chosen: str | None
) -> None:
    server_key, server_cert = _workload(ca, SERVER)
    client_key, client_cert = _workload(ca, CLIENT)
    server = tlscontexts.server_context(
        key=server_key, certificate=server_cert, bundle=_bundle(ca), alpn_protocols=alpn
    )
    client = tlscontexts.client_context(
        key=client_key, certificate=client_cert, bundle=_bundle(ca), alpn_protocols=alpn
    )
    outcome = connect(server, client)
    assert outcome.server_saw == CLIENT
    assert outcome.alpn == chosen


def test_renewal_swaps_contexts_without_dropping_open_connections(
    ca: authority.CertificateAuthority,
) -> None:
    server_key, first = _workload(ca, SERVER)
    contexts = [tlscontexts.server_context(key=server_key, certificate=first, bundle=_bundle(ca))]
    served: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        """Echo on each connection, with the context current when it was accepted."""
        open_connections = []
        for _ in range(2):
            raw, _ = listener.accept()
            open_connections.append(contexts[-1].wrap_socket(raw, server_side=True))
        for tls in open_connections:
            served.append(tls.getpeercert(binary_form=True) or b"")
            tls.sendall(tls.recv(64))
            tls.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client_key, client_cert = _workload(ca, CLIENT)
    client = tlscontexts.client_context(key=client_key, certificate=client_cert, bundle=_bundle(ca))
    address = listener.getsockname()
    with client.wrap_socket(socket.create_connection(address, timeout=5)) as old:
        old_server_cert = old.getpeercert(binary_form=True)
        new_key, renewed = _workload(ca, SERVER)
        contexts.append(
            tlscontexts.server_context(key=new_key, certificate=renewed, bundle=_bundle(ca))
        )
        with client.wrap_socket(socket.create_connection(address, timeout=5)) as new:
            assert new.getpeercert(binary_form=True) != old_server_cert
            old.sendall(b"still here")
            new.sendall(b"new one")
            assert old.recv(64) == b"still here"
            assert new.recv(64) == b"new one"
    thread.join(10)
    listener.close()
    assert len(served) == 2
