"""Trust bundles: the set of mesh roots a workload accepts, several at once during rotation.

Filled by `rotation` (which root is trusted when) and `secretdata` (the Secret's `ca.crt`);
read by `tlscontexts` (as the SSLContext's verify locations) and by `verify_chain`, which
checks a presented chain the same way a peer does and returns its SPIFFE identity.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification

from smimesh.identity import errors, keys, spiffe


class UntrustedChainError(errors.IdentityError):
    """A presented chain does not lead to a trusted root, is expired, or names no identity."""

    reason = "untrusted_chain"


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, hex: how roots are told apart in logs and status."""
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class TrustBundle:
    """Roots trusted for one trust domain, newest first, without duplicates."""

    trust_domain: str
    roots: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.roots:
            raise errors.InvalidAuthorityError("a trust bundle needs at least one root")
        for root in self.roots:
            constraints = _basic_constraints(root)
            if constraints is None or not constraints.ca:
                raise errors.InvalidAuthorityError(
                    f"{root.subject.rfc4514_string()} is not a CA certificate; "
                    "a trust bundle holds CA roots only"
                )

    def __contains__(self, certificate: object) -> bool:
        return certificate in self.roots

    def with_root(self, root: x509.Certificate) -> TrustBundle:
        """This bundle plus `root` (first, as the newest); unchanged if already trusted."""
        if root in self.roots:
            return self
        return TrustBundle(self.trust_domain, (root, *self.roots))

    def without_root(self, root: x509.Certificate) -> TrustBundle:
        """This bundle without `root`; the last root cannot be removed."""
        remaining = tuple(existing for existing in self.roots if existing != root)
        return TrustBundle(self.trust_domain, remaining)

    def pem(self) -> bytes:
        return keys.certificates_to_pem(self.roots)

    def verify_chain(
        self, chain: Sequence[x509.Certificate], *, now: datetime.datetime | None = None
    ) -> spiffe.SpiffeId:
        """Verify `chain` (leaf first) against these roots at `now`; return the leaf's ID.

        Raises UntrustedChainError (unknown root, expired, wrong usage) or InvalidIdentityError.
        """
        if not chain:
            raise UntrustedChainError("no certificate was presented")
        moment = now if now is not None else datetime.datetime.now(datetime.UTC)
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(self.roots)))
            .time(moment)
            .build_client_verifier()
        )
        try:
            verifier.verify(chain[0], list(chain[1:]))
        except verification.VerificationError as exc:
            raise UntrustedChainError(f"the certificate chain does not verify: {exc}") from None
        identity = identity_of(chain[0])
        if identity.trust_domain != self.trust_domain:
            raise UntrustedChainError(
                f"{identity.uri} is from trust domain {identity.trust_domain!r}, "
                f"this bundle is for {self.trust_domain!r}"
            )
        return identity


def from_pem(trust_domain: str, data: bytes) -> TrustBundle:
    """A bundle from concatenated PEM roots (e.g. a Secret's `ca.crt`)."""
    roots = keys.certificates_from_pem(data)
    if not roots:
        raise errors.InvalidAuthorityError("the trust bundle holds no certificate")
    unique: list[x509.Certificate] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return TrustBundle(spiffe.check_trust_domain(trust_domain), tuple(unique))


def identity_of(certificate: x509.Certificate) -> spiffe.SpiffeId:
    """The SPIFFE ID in a certificate's single URI SAN; raise InvalidIdentityError otherwise."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise errors.InvalidIdentityError("the certificate has no subjectAltName") from None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    spiffe_uris = [uri for uri in uris if uri.startswith(spiffe.SCHEME)]
    if len(spiffe_uris) != 1:
        raise errors.InvalidIdentityError(
            f"the certificate must carry exactly one SPIFFE URI, it has {len(spiffe_uris)}"
        )
    return spiffe.parse(spiffe_uris[0])


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
