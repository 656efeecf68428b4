"""The CA's checks on a certificate signing request before it signs anything.

Called by `authority.CertificateAuthority.sign` with the identity the caller has *proved*
(the operator proves it with a TokenReview); every refusal is a typed `errors.SigningRefusedError`
whose message says what was asked and what was expected. Only the public key and the one SPIFFE
URI are taken from a CSR: subject and other extensions are never copied into certificates.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from smimesh.identity import errors, spiffe

ALLOWED_CURVES: frozenset[str] = frozenset({"secp256r1", "secp384r1"})
"""ECDSA P-256 (what `keys` generates) and P-384. RSA, Ed25519 and small curves are refused."""


def check_request(
    request: x509.CertificateSigningRequest,
    *,
    expected: spiffe.SpiffeId,
    allowed_curves: frozenset[str] = ALLOWED_CURVES,
) -> ec.EllipticCurvePublicKey:
    """Return the CSR's public key if the CSR may be signed for `expected`, else raise.

    Checked in this order: the self-signature (proof of possession), no CA request, the key
    type, then the names: exactly one SAN, a URI equal to `expected`.
    """
    try:
        signature_valid = request.is_signature_valid
        extensions = request.extensions
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        raise errors.MalformedRequestError(f"the CSR cannot be read: {exc}") from None
    if not signature_valid:
        raise errors.BadSignatureError(
            "the CSR's signature does not verify with its own public key; "
            "the requester must sign the CSR with the key it wants certified"
        )
    _refuse_ca_requests(extensions)
    key = _allowed_key(request, allowed_curves)
    _check_names(extensions, expected)
    return key


def _refuse_ca_requests(extensions: x509.Extensions) -> None:
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise errors.CaRequestedError(
                "the CSR asks for a CA certificate (basicConstraints CA:TRUE); "
                "workloads get leaf certificates only"
            )
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            raise errors.CaRequestedError(
                "the CSR asks for keyCertSign/cRLSign key usage; workloads may not sign"
            )


def _allowed_key(
    request: x509.CertificateSigningRequest, allowed_curves: frozenset[str]
) -> ec.EllipticCurvePublicKey:
    try:
        key = request.public_key()
    except ValueError as exc:
        raise errors.KeyTypeNotAllowedError(f"the CSR's public key is not usable: {exc}") from None
    allowed = ", ".join(sorted(allowed_curves))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise errors.KeyTypeNotAllowedError(
            f"the CSR carries a {type(key).__name__.removeprefix('_')} key; "
            f"the mesh issues certificates for ECDSA keys on {allowed} only"
        )
    if key.curve.name not in allowed_curves:
        raise errors.KeyTypeNotAllowedError(
            f"the CSR's ECDSA key is on {key.curve.name}; allowed curves: {allowed}"
        )
    return key


def _check_names(extensions: x509.Extensions, expected: spiffe.SpiffeId) -> None:
    try:
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        raise errors.IdentityMismatchError(
            f"the CSR asks for no identity (no subjectAltName); expected {expected.uri}"
        ) from None
    uris = [name.value for name in names if isinstance(name, x509.UniformResourceIdentifier)]
    others = [name for name in names if not isinstance(name, x509.UniformResourceIdentifier)]
    if others:
        listed = ", ".join(f"{type(name).__name__}={name.value!r}" for name in others)
        raise errors.UnexpectedSubjectAltNameError(
            f"the CSR asks for names besides its SPIFFE ID ({listed}); "
            f"only the URI {expected.uri} may be requested"
        )
    if not uris:
        raise errors.IdentityMismatchError(f"the CSR asks for no URI; expected {expected.uri}")
    if len(uris) > 1:
        if expected.uri in uris:
            raise errors.UnexpectedSubjectAltNameError(
                f"the CSR asks for {len(uris)} URIs ({', '.join(uris)}); "
                f"only the URI {expected.uri} may be requested"
            )
        raise errors.IdentityMismatchError(
            f"the CSR asks for {', '.join(uris)}, but the caller is {expected.uri}"
        )
    if uris[0] != expected.uri:
        raise errors.IdentityMismatchError(
            f"the CSR asks for {uris[0]}, but the caller is {expected.uri}"
        )
