"""Typed refusals of the identity layer, each with a clear message and a stable `reason`.

Raised by `spiffe` (bad identities), `signingrequests` (CSRs the CA refuses to sign) and
`secretdata` (CA material that cannot be loaded). The operator turns `reason` into a metric
label and the message into the error it returns to the sidecar.
"""

from __future__ import annotations


class IdentityError(Exception):
    """Base class of every error raised by smimesh.identity."""

    reason = "identity_error"


class InvalidIdentityError(IdentityError, ValueError):
    """A string is not a well-formed mesh SPIFFE ID."""

    reason = "invalid_identity"


class SigningRefusedError(IdentityError):
    """The CA refuses to sign a certificate signing request."""

    reason = "signing_refused"


class MalformedRequestError(SigningRefusedError):
    """The CSR cannot be parsed (not PEM/DER, or not a CSR at all)."""

    reason = "malformed_csr"


class BadSignatureError(SigningRefusedError):
    """The CSR's self-signature does not verify: the requester does not hold the key."""

    reason = "bad_csr_signature"


class IdentityMismatchError(SigningRefusedError):
    """The CSR asks for an identity other than the one the caller proved."""

    reason = "identity_mismatch"


class UnexpectedSubjectAltNameError(SigningRefusedError):
    """The CSR asks for names beyond the single expected SPIFFE URI."""

    reason = "unexpected_san"


class CaRequestedError(SigningRefusedError):
    """The CSR asks to become a CA (basicConstraints CA or keyCertSign)."""

    reason = "ca_requested"


class KeyTypeNotAllowedError(SigningRefusedError):
    """The CSR's public key is of a type or size the mesh does not issue for."""

    reason = "key_type_not_allowed"


class InvalidAuthorityError(IdentityError):
    """CA material (generated or user-supplied) is incomplete or inconsistent."""

    reason = "invalid_authority"
