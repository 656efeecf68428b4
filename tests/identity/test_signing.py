"""The CA signs a workload CSR only for the identity the caller proved; every refusal is typed."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from smimesh.identity import authority, bundles, errors, keys, spiffe

pytestmark = pytest.mark.fast

HOUR = datetime.timedelta(hours=1)


def _request(
    names: list[x509.GeneralName],
    *,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    ca: bool = False,
    key_cert_sign: bool = False,
    subject: x509.Name | None = None,
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if key_cert_sign:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, False, False, False), True
        )
    return builder.sign(key or keys.generate_key(), hashes.SHA256())


def test_a_workload_csr_becomes_a_24_hour_leaf_for_its_identity(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    key = keys.generate_key()
    issued = ca.sign(keys.build_request(key, web), expected=web, now=now)
    assert issued.certificate.public_key() == key.public_key()
    assert bundles.identity_of(issued.certificate) == web
    assert issued.not_after - now == authority.DEFAULT_LEAF_LIFETIME
    assert issued.chain == (issued.certificate, ca.issuer)
    constraints = issued.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False
    bundle = bundles.TrustBundle(ca.trust_domain, (ca.root,))
    assert bundle.verify_chain(issued.chain, now=now) == web


def test_renewal_is_due_at_seventy_percent_of_the_lifetime(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    issued = ca.sign(keys.build_request(keys.generate_key(), web), expected=web)
    assert issued.issued_at == issued.not_before + authority.BACKDATE  # back-dated for skew
    lifetime = issued.not_after - issued.issued_at
    assert lifetime == authority.DEFAULT_LEAF_LIFETIME
    assert issued.renew_at() - issued.issued_at == lifetime * 0.7
    assert issued.not_before < issued.renew_at() < issued.not_after


def test_a_short_lived_certificate_is_not_due_at_once(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    """15 s certificates (tests, fast rotations): due after 10.5 s, although notBefore is
    five minutes back."""
    lifetime = datetime.timedelta(seconds=15)
    issued = ca.sign(keys.build_request(keys.generate_key(), web), expected=web, lifetime=lifetime)
    assert issued.renew_at() - issued.issued_at == datetime.timedelta(seconds=10.5)


def test_a_leaf_never_outlives_its_issuing_ca(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    issued = ca.sign(
        keys.build_request(keys.generate_key(), web),
        expected=web,
        lifetime=datetime.timedelta(days=10_000),
    )
    assert issued.not_after == ca.issuer.not_valid_after_utc


def test_the_csr_subject_is_never_copied(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "system:masters")])
    request = _request([x509.UniformResourceIdentifier(web.uri)], subject=subject)
    issued = ca.sign(request, expected=web)
    assert "system:masters" not in issued.certificate.subject.rfc4514_string()


def test_a_csr_for_another_identity_is_refused(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    admin = spiffe.SpiffeId(web.trust_domain, "kube-system", "admin")
    with pytest.raises(errors.IdentityMismatchError) as caught:
        ca.sign(keys.build_request(keys.generate_key(), admin), expected=web)
    assert str(caught.value) == f"the CSR asks for {admin.uri}, but the caller is {web.uri}"
    assert caught.value.reason == "identity_mismatch"


def test_a_csr_without_any_name_is_refused(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    with pytest.raises(errors.IdentityMismatchError, match="asks for no identity"):
        ca.sign(_request([]), expected=web)


def test_an_identity_from_another_trust_domain_is_refused(
    ca: authority.CertificateAuthority,
) -> None:
    foreign = spiffe.SpiffeId("other.example", "shop", "web")
    with pytest.raises(errors.IdentityMismatchError, match="outside this CA's trust domain"):
        ca.sign(keys.build_request(keys.generate_key(), foreign), expected=foreign)


@pytest.mark.parametrize(
    "extra",
    [
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.RFC822Name("root@example.com"),
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/admin"),
    ],
    ids=["dns", "ip", "email", "second-uri"],
)
def test_a_csr_with_an_extra_name_is_refused(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId, extra: x509.GeneralName
) -> None:
    request = _request([x509.UniformResourceIdentifier(web.uri), extra])
    with pytest.raises(errors.UnexpectedSubjectAltNameError) as caught:
        ca.sign(request, expected=web)
    assert str(extra.value) in str(caught.value)
    assert f"only the URI {web.uri} may be requested" in str(caught.value)
    assert caught.value.reason == "unexpected_san"


def test_a_csr_with_a_broken_signature_is_refused(
    ca: authority.CertificateAuthority, web: spiffe.SpiffeId
) -> None:
    pem = keys.request_to_pem(keys.build_request(keys.generate_key(), web))
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature's last integer: still parses, no longer verifies
    request = keys.request_from_bytes(bytes(der))
    with pytest.raises(errors.BadSignatureError, match="does not verify") as caught:
        ca.sign(request, expected=web)
    assert caught.value.reason == "bad_csr_signature"


@pytest.mark.parametrize(
    ("ca_flag", "key_cert_sign", "says"),
    [(True, False, "basicConstraints CA:TRUE"), (False, True, "keyCertSign")],
)
def test_a_csr_asking_to_be_a_ca_is_refused(
    ca: authority.CertificateAuthority,
    web: spiffe.SpiffeId,
    ca_flag: bool,
    key_cert_sign: bool,
    says: str,
) -> None:
    request = _request(
        [x509.UniformResourceIdentifier(web.uri)], ca=ca_flag, key_cert_sign=key_cert_sign
    )
    with pytest.raises(errors.CaRequestedError, match=says):
        ca.sign(request, expected=web)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSAPublicKey key"),
        (ec.generate_private_key(ec.SECP521R1()), "on secp521r1"),
    ],
    ids=["rsa", "p521"],
)
def test_a_csr_with_a_disallowed_key_type_is_refused(
    ca: authority.CertificateAuthority,
    web: spiffe.SpiffeId,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    says: str,
) -> None:
    request = _request([x509.UniformResourceIdentifier(web.uri)], key=key)
    with pytest.raises(errors.KeyTypeNotAllowedError, match=says):
        ca.sign(request, expected=web)


def test_a_p384_key_is_accepted(ca: authority.CertificateAuthority, web: spiffe.SpiffeId) -> None:
    request = _request(
        [x509.UniformResourceIdentifier(web.uri)], key=ec.generate_private_key(ec.SECP384R1())
    )
    assert bundles.identity_of(ca.sign(request, expected=web).certificate) == web


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n"])
def test_bytes_that_are_not_a_csr_are_refused(data: bytes) -> None:
    with pytest.raises(errors.MalformedRequestError, match="not a certificate signing request"):
        keys.request_from_bytes(data)


def test_every_refusal_is_a_signing_refusal() -> None:
    for refusal in (
        errors.MalformedRequestError,
        errors.BadSignatureError,
        errors.IdentityMismatchError,
        errors.UnexpectedSubjectAltNameError,
        errors.CaRequestedError,
        errors.KeyTypeNotAllowedError,
    ):
        assert issubclass(refusal, errors.SigningRefusedError)
    reasons = {
        refusal.reason for refusal in errors.SigningRefusedError.__subclasses__()
    }  # distinct metric labels
    assert len(reasons) == len(errors.SigningRefusedError.__subclasses__())


@settings(max_examples=15, deadline=None)
@given(
    namespace=st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z"),
    account=st.from_regex(r"\A[a-z][a-z0-9.-]{0,20}[a-z0-9]\Z").filter(
        lambda name: ".." not in name and ".-" not in name and "-." not in name
    ),
)
def test_whatever_identity_is_proved_is_the_one_certified(
    ca: authority.CertificateAuthority, namespace: str, account: str
) -> None:
    identity = spiffe.SpiffeId(ca.trust_domain, namespace, account)
    issued = ca.sign(keys.build_request(keys.generate_key(), identity), expected=identity)
    assert bundles.TrustBundle(ca.trust_domain, (ca.root,)).verify_chain(issued.chain) == identity


def test_a_serving_certificate_names_dns_hosts(ca: authority.CertificateAuthority) -> None:
    key = keys.generate_key()
    issued = ca.issue_serving(key.public_key(), dns_names=("smimesh-webhooks.smimesh-system.svc",))
    names = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["smimesh-webhooks.smimesh-system.svc"]
    assert issued.not_after <= ca.issuer.not_valid_after_utc


def test_a_user_ca_without_root_key_cannot_renew_its_issuer(
    ca: authority.CertificateAuthority,
) -> None:
    without_root_key = authority.CertificateAuthority(
        ca.trust_domain, ca.root, ca.issuer, ca.issuer_key
    )
    with pytest.raises(errors.InvalidAuthorityError, match="cert-manager"):
        without_root_key.renew_issuer()
    renewed = ca.renew_issuer(now=datetime.datetime.now(datetime.UTC) + HOUR)
    assert renewed.root == ca.root
    assert renewed.issuer != ca.issuer
