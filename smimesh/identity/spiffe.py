"""SPIFFE-style workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`.

The one identifier the mesh authenticates: `keys` puts it in CSRs, `authority` checks and signs
it, `tlscontexts` reads it back from a peer's certificate. Pure parsing and formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smimesh.identity import errors

SCHEME = "spiffe://"
# SPIFFE-ID spec: trust domains are lower-case letters, digits, '.', '-' and '_'.
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
# Kubernetes: namespaces are DNS-1123 labels, ServiceAccount names DNS-1123 subdomains.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, order=True)
class SpiffeId:
    """A workload identity: the ServiceAccount `service_account` in `namespace`."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        _check_trust_domain(self.trust_domain)
        if not _LABEL.match(self.namespace):
            raise errors.InvalidIdentityError(
                f"namespace {self.namespace!r} is not a DNS-1123 label "
                "(lower-case letters, digits and '-', at most 63 characters)"
            )
        if len(self.service_account) > 253 or not _SUBDOMAIN.match(self.service_account):
            raise errors.InvalidIdentityError(
                f"service account {self.service_account!r} is not a DNS-1123 subdomain"
            )

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri


def _check_trust_domain(trust_domain: str) -> None:
    if not _TRUST_DOMAIN.match(trust_domain):
        raise errors.InvalidIdentityError(
            f"trust domain {trust_domain!r} must be 1-255 characters of a-z, 0-9, '.', '-', '_'"
        )


def check_trust_domain(trust_domain: str) -> str:
    """`trust_domain` if it is a valid SPIFFE trust domain; else raise InvalidIdentityError."""
    _check_trust_domain(trust_domain)
    return trust_domain


def parse(uri: str) -> SpiffeId:
    """Parse `spiffe://<td>/ns/<ns>/sa/<sa>`; raise InvalidIdentityError saying what is wrong."""
    if not uri.startswith(SCHEME):
        raise errors.InvalidIdentityError(
            f"{uri!r} is not a SPIFFE ID: it must start with {SCHEME!r}"
        )
    rest = uri[len(SCHEME) :]
    if any(character in rest for character in "?#"):
        raise errors.InvalidIdentityError(f"{uri!r}: a SPIFFE ID has no query or fragment")
    trust_domain, slash, path = rest.partition("/")
    if ":" in trust_domain or "@" in trust_domain:
        raise errors.InvalidIdentityError(
            f"{uri!r}: a SPIFFE trust domain has no port or user info"
        )
    if not slash:
        raise errors.InvalidIdentityError(
            f"{uri!r} has no path; expected /ns/<namespace>/sa/<account>"
        )
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise errors.InvalidIdentityError(
            f"{uri!r}: the path must be /ns/<namespace>/sa/<service-account>, got /{path}"
        )
    return SpiffeId(trust_domain, parts[1], parts[3])


def for_service_account(trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
    """The identity of a ServiceAccount (a readable alias of the constructor)."""
    return SpiffeId(trust_domain, namespace, service_account)
