"""Workload keys and certificate signing requests (ECDSA P-256).

The sidecar calls `generate_key` and `build_request`; only the CSR leaves the process, the key
stays with the caller (and goes to `tlscontexts`). `authority` signs what this module builds;
`signingrequests` checks it on the CA side.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smimesh.identity import errors, spiffe

PrivateKey = ec.EllipticCurvePrivateKey
"""The only key type the mesh generates; `signingrequests` also accepts P-384 from other tooling."""
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""A CA key: ours are ECDSA; a user-supplied CA (cert-manager's default) may be RSA."""


def generate_key() -> PrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def build_request(key: PrivateKey, identity: spiffe.SpiffeId) -> x509.CertificateSigningRequest:
    """A CSR for exactly one URI SAN, `identity`, signed with `key` (proof of possession)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def request_to_pem(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.PEM)


def request_from_bytes(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR; raise MalformedRequestError with the parser's reason otherwise."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise errors.MalformedRequestError(f"not a certificate signing request: {exc}") from None


def key_to_pem(key: SigningKey) -> bytes:
    """PKCS#8 PEM, unencrypted: for in-memory hand-off (e.g. to ssl) and CA Secrets only."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes) -> SigningKey:
    """Load an ECDSA or RSA private key from PEM; raise InvalidAuthorityError for anything else."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise errors.InvalidAuthorityError(f"cannot load the private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise errors.InvalidAuthorityError(
            f"the private key is {type(key).__name__}; a CA key must be ECDSA or RSA"
        )
    return key


def certificates_to_pem(certificates: tuple[x509.Certificate, ...]) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def certificates_from_pem(data: bytes) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM bundle, in order; raise InvalidAuthorityError if none parse."""
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise errors.InvalidAuthorityError(f"cannot read PEM certificates: {exc}") from None
    return certificates
