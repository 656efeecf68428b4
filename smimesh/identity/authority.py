"""The mesh CA: a root, an issuing (intermediate) CA under it, and the certificates it signs.

`create` makes a fresh root + issuing CA (first start); `secretdata` loads one from a Secret
(ours or a user's, e.g. cert-manager's) and stores it back. `CertificateAuthority.sign` turns a
workload CSR, checked by `signingrequests` against the identity the caller proved, into an
`IssuedCertificate` (leaf + chain, 24 h by default, `renew_at` at 70 % of its life). The trust
side (which roots peers accept) is `bundles`; switching roots is `rotation`.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smimesh.identity import errors, keys, signingrequests, spiffe

DEFAULT_LEAF_LIFETIME = datetime.timedelta(hours=24)
DEFAULT_ISSUER_LIFETIME = datetime.timedelta(days=365)
DEFAULT_ROOT_LIFETIME = datetime.timedelta(days=3650)
RENEW_FRACTION = 0.7
"""A holder renews at 70 % of a certificate's lifetime: for 24 h, after 16 h 48 min."""
BACKDATE = datetime.timedelta(minutes=5)
"""notBefore is set this far in the past so that peers with slightly slow clocks accept it."""


def _now(now: datetime.datetime | None) -> datetime.datetime:
    """`now` (default: the clock) to the second: certificates hold no fractions."""
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    return moment.replace(microsecond=0)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and the chain to present with it (leaf first; the root is not included)."""

    chain: tuple[x509.Certificate, ...]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> datetime.datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        return self.certificate.not_valid_after_utc

    @property
    def issued_at(self) -> datetime.datetime:
        """When it was signed: our notBefore is back-dated by `BACKDATE` for slow clocks."""
        return min(self.not_before + BACKDATE, self.not_after)

    def renew_at(self, fraction: float = RENEW_FRACTION) -> datetime.datetime:
        """When the holder should ask for a new certificate: at `fraction` (70 %) of the
        lifetime it was issued for, counted from signing, not from the back-dated notBefore
        (which made a 15 s certificate due at once)."""
        return self.issued_at + (self.not_after - self.issued_at) * fraction

    def chain_pem(self) -> bytes:
        return keys.certificates_to_pem(self.chain)


@dataclass(frozen=True)
class CertificateAuthority:
    """An issuing CA: its key and certificate, the chain up to `root`, and the root itself.

    `root_key` is present only when smimesh made the root (so it can renew the issuing CA and
    rotate); with a user-supplied CA the user's tooling does that.
    """

    trust_domain: str
    root: x509.Certificate
    issuer: x509.Certificate
    issuer_key: keys.SigningKey
    intermediates: tuple[x509.Certificate, ...] = ()
    root_key: keys.SigningKey | None = None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """What a leaf is presented with after itself: the issuer and any intermediates, but
        never the root (peers hold it already; a user CA may sign leaves with its root)."""
        return tuple(cert for cert in (self.issuer, *self.intermediates) if cert != self.root)

    def sign(
        self,
        request: x509.CertificateSigningRequest,
        *,
        expected: spiffe.SpiffeId,
        now: datetime.datetime | None = None,
        lifetime: datetime.timedelta = DEFAULT_LEAF_LIFETIME,
    ) -> IssuedCertificate:
        """Sign `request` for `expected` after `signingrequests.check_request`; raise on refusal.

        The leaf never outlives the issuing CA: its notAfter is clamped to the issuer's.
        """
        if expected.trust_domain != self.trust_domain:
            raise errors.IdentityMismatchError(
                f"{expected.uri} is outside this CA's trust domain {self.trust_domain!r}"
            )
        public_key = signingrequests.check_request(request, expected=expected)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"{expected.service_account}.{expected.namespace}"[:64]
                ),
            ]
        )
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(expected.uri)]
        return self._issue_leaf(public_key, subject, names, now=now, lifetime=lifetime)

    def issue_serving(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        now: datetime.datetime | None = None,
        lifetime: datetime.timedelta = DEFAULT_ISSUER_LIFETIME,
    ) -> IssuedCertificate:
        """A serving certificate for host names/IPs (the operator's webhooks), no SPIFFE ID."""
        if not dns_names and not ip_addresses:
            raise errors.InvalidAuthorityError(
                "a serving certificate needs at least one DNS name or IP address"
            )
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, (dns_names or ip_addresses)[0][:64])]
        )
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        return self._issue_leaf(public_key, subject, names, now=now, lifetime=lifetime)

    def _issue_leaf(
        self,
        public_key: ec.EllipticCurvePublicKey,
        subject: x509.Name,
        names: list[x509.GeneralName],
        *,
        now: datetime.datetime | None,
        lifetime: datetime.timedelta,
    ) -> IssuedCertificate:
        if lifetime <= datetime.timedelta(0):
            raise ValueError(f"a certificate lifetime must be positive, got {lifetime}")
        start = _now(now)
        not_after = min(start + lifetime, self.issuer.not_valid_after_utc)
        leaf = (
            _base(subject, self.issuer.subject, public_key, start - BACKDATE, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(_authority_key_id(self.issuer), critical=False)
            .sign(self.issuer_key, hashes.SHA256())
        )
        return IssuedCertificate((leaf, *self.chain))

    def renew_issuer(
        self,
        *,
        now: datetime.datetime | None = None,
        lifetime: datetime.timedelta = DEFAULT_ISSUER_LIFETIME,
    ) -> CertificateAuthority:
        """A new issuing CA (new key) under the same root; needs the root key."""
        if self.root_key is None:
            raise errors.InvalidAuthorityError(
                "the root key is not held by smimesh (user-supplied CA); renew the issuing "
                "certificate with the tooling that owns the root, e.g. cert-manager"
            )
        return _with_new_issuer(self.trust_domain, self.root, self.root_key, now, lifetime)


def create(
    trust_domain: str,
    *,
    now: datetime.datetime | None = None,
    root_lifetime: datetime.timedelta = DEFAULT_ROOT_LIFETIME,
    issuer_lifetime: datetime.timedelta = DEFAULT_ISSUER_LIFETIME,
) -> CertificateAuthority:
    """A fresh root and an issuing CA under it, for `trust_domain` (first start, rotation)."""
    spiffe.check_trust_domain(trust_domain)
    start = _now(now)
    root_key = keys.generate_key()
    serial = x509.random_serial_number()
    name = _ca_name(trust_domain, f"root CA {serial:x}"[:24])
    root = (
        _base(name, name, root_key.public_key(), start - BACKDATE, start + root_lifetime, serial)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return _with_new_issuer(trust_domain, root, root_key, start, issuer_lifetime)


def _with_new_issuer(
    trust_domain: str,
    root: x509.Certificate,
    root_key: keys.SigningKey,
    now: datetime.datetime | None,
    lifetime: datetime.timedelta,
) -> CertificateAuthority:
    start = _now(now)
    issuer_key = keys.generate_key()
    serial = x509.random_serial_number()
    issuer = (
        _base(
            _ca_name(trust_domain, f"issuing CA {serial:x}"[:24]),
            root.subject,
            issuer_key.public_key(),
            start - BACKDATE,
            min(start + lifetime, root.not_valid_after_utc),
            serial,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(_authority_key_id(root), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return CertificateAuthority(trust_domain, root, issuer, issuer_key, (), root_key)


def _ca_name(trust_domain: str, label: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"smimesh {label}"),
        ]
    )


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
