"""The mesh CA as the `data` of a Kubernetes Secret (PEM strings keyed like cert-manager's).

The operator reads the Secret, calls `load` and gets a `rotation.MeshCa`; after a change it
calls `dump` and writes the result back (base64-encoding is the operator's job: these are the
decoded strings). Keys:

    ca.crt        every trusted root, newest first (the trust bundle)
    tls.crt       the issuing CA certificate, then any intermediates up to the root
    tls.key       the issuing CA's private key
    root.key      the root's key, only when smimesh created the root itself
    pending.crt / pending.key / pending-root.crt / pending-root.key   while PREPARING
    rotation.phase / rotation.next-step-at                              during a rotation

A user-supplied CA in cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`) loads as is,
including a root that signs directly (self-signed `tls.crt`) and an RSA key.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from smimesh.identity import authority, bundles, errors, keys, rotation

CA_CERT = "ca.crt"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
ROOT_KEY = "root.key"
PENDING_CERT = "pending.crt"
PENDING_KEY = "pending.key"
PENDING_ROOT_CERT = "pending-root.crt"
PENDING_ROOT_KEY = "pending-root.key"
PHASE = "rotation.phase"
NEXT_STEP_AT = "rotation.next-step-at"


def dump(state: rotation.MeshCa) -> dict[str, str]:
    """The Secret data (decoded) that `load` turns back into `state`."""
    data = {CA_CERT: state.bundle.pem().decode(), **_authority_data(state.active, "tls", "root")}
    if state.pending is not None:
        data |= _authority_data(state.pending, "pending", "pending-root")
        data[PENDING_ROOT_CERT] = keys.certificates_to_pem((state.pending.root,)).decode()
    if state.next_step_at is not None:
        data[PHASE] = state.phase.value
        data[NEXT_STEP_AT] = state.next_step_at.isoformat()
    return data


def _authority_data(ca: authority.CertificateAuthority, cert: str, root: str) -> dict[str, str]:
    chain = ca.chain or (ca.issuer,)
    data = {
        f"{cert}.crt": keys.certificates_to_pem(chain).decode(),
        f"{cert}.key": keys.key_to_pem(ca.issuer_key).decode(),
    }
    if ca.root_key is not None:
        data[f"{root}.key"] = keys.key_to_pem(ca.root_key).decode()
    return data


def load(
    data: Mapping[str, str],
    *,
    trust_domain: str,
    now: datetime.datetime | None = None,
) -> rotation.MeshCa:
    """Load the CA kept in a Secret (ours or a user's); raise InvalidAuthorityError if not."""
    for required in (CA_CERT, TLS_CERT, TLS_KEY):
        if not data.get(required, "").strip():
            raise errors.InvalidAuthorityError(
                f"the CA Secret has no {required!r}; expected {CA_CERT}, {TLS_CERT}, {TLS_KEY}"
            )
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    bundle = bundles.from_pem(trust_domain, data[CA_CERT].encode())
    active = _load_authority(
        trust_domain, data[TLS_CERT], data[TLS_KEY], data.get(ROOT_KEY), bundle.roots, moment
    )
    phase_name = data.get(PHASE)
    if phase_name is None:
        return rotation.MeshCa(active, bundle)
    try:
        phase = rotation.Phase(phase_name)
        next_step_at = datetime.datetime.fromisoformat(data[NEXT_STEP_AT])
    except (ValueError, KeyError) as exc:
        raise errors.InvalidAuthorityError(
            f"the CA Secret's rotation state is unreadable: {exc}"
        ) from None
    pending = None
    if phase is rotation.Phase.PREPARING:
        pending_roots = keys.certificates_from_pem(data.get(PENDING_ROOT_CERT, "").encode())
        pending = _load_authority(
            trust_domain,
            data.get(PENDING_CERT, ""),
            data.get(PENDING_KEY, ""),
            data.get(PENDING_ROOT_KEY),
            pending_roots,
            moment,
        )
    return rotation.MeshCa(active, bundle, phase, pending, next_step_at)


def _load_authority(
    trust_domain: str,
    cert_pem: str,
    key_pem: str,
    root_key_pem: str | None,
    roots: tuple[x509.Certificate, ...],
    now: datetime.datetime,
) -> authority.CertificateAuthority:
    chain = keys.certificates_from_pem(cert_pem.encode())
    if not chain:
        raise errors.InvalidAuthorityError("the CA certificate (tls.crt) holds no certificate")
    issuer, rest = chain[0], chain[1:]
    _require_ca(issuer)
    issuer_key = keys.key_from_pem(key_pem.encode())
    if issuer_key.public_key() != issuer.public_key():
        raise errors.InvalidAuthorityError("the CA key (tls.key) does not belong to tls.crt")
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise errors.InvalidAuthorityError(
                f"{cert.subject.rfc4514_string()} is valid from {cert.not_valid_before_utc} "
                f"to {cert.not_valid_after_utc}, not now ({now})"
            )
    root = _find_root(chain, roots)
    intermediates = tuple(cert for cert in rest if cert != root)
    root_key = keys.key_from_pem(root_key_pem.encode()) if root_key_pem else None
    if root_key is not None and root_key.public_key() != root.public_key():
        raise errors.InvalidAuthorityError("root.key does not belong to the root in ca.crt")
    return authority.CertificateAuthority(
        trust_domain, root, issuer, issuer_key, intermediates, root_key
    )


def _require_ca(certificate: x509.Certificate) -> None:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise errors.InvalidAuthorityError(
            f"{certificate.subject.rfc4514_string()} (tls.crt) is not a CA certificate; "
            "issue it with isCA: true (cert-manager) or basicConstraints CA:TRUE"
        )


def _find_root(
    chain: tuple[x509.Certificate, ...], roots: tuple[x509.Certificate, ...]
) -> x509.Certificate:
    """The root in `roots` that the chain's last certificate is (or is issued by)."""
    for link, parent in itertools.pairwise(chain):
        _check_issued_by(link, parent)
    last = chain[-1]
    for root in roots:
        if last == root:
            return root
        try:
            last.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return root
    raise errors.InvalidAuthorityError(
        f"{last.subject.rfc4514_string()} does not chain to any root in ca.crt"
    )


def _check_issued_by(child: x509.Certificate, parent: x509.Certificate) -> None:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        raise errors.InvalidAuthorityError(
            f"tls.crt is out of order: {child.subject.rfc4514_string()} is not issued by "
            f"{parent.subject.rfc4514_string()}"
        ) from None
