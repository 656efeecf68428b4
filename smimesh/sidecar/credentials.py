"""mTLS credentials from files (certificate chain, key, trust bundle), re-read when they
change so certificates rotate without dropping connections: new handshakes use the new
contexts, established connections keep the ones they were made with.

Created by `commands` from `settings`; consulted by `inbound` (server side) and by the
connector (client side, checking the upstream's SPIFFE id) through `context.Credentials`.
The contexts and the peer's identity come from `smimesh.identity.tlscontexts`; this module
only watches files and swaps references.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from smimesh.identity import authority, bundles, errors, keys, tlscontexts
from smimesh.sidecar import context, settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Material:
    """One set of mTLS material: both contexts and what the admin endpoint reports."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    certificate: context.Certificate

    @classmethod
    def build(
        cls,
        key: keys.PrivateKey,
        issued: authority.IssuedCertificate,
        bundle: bundles.TrustBundle,
        *,
        identity: str,
        renew_at: datetime.datetime | None,
        source: str,
    ) -> Material:
        return cls(
            tlscontexts.server_context(key=key, certificate=issued, bundle=bundle),
            tlscontexts.client_context(key=key, certificate=issued, bundle=bundle),
            context.Certificate(identity, issued.not_before, issued.not_after, renew_at, source),
        )


class Holder:
    """The `context.Credentials` face over the current `Material`; subclasses decide where
    it comes from and swap `material` (one reference) when it changes."""

    def __init__(self, *, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self.material: Material | None = None
        self.last_error: str | None = None

    @property
    def identity(self) -> str | None:
        return self.material.certificate.spiffe_id if self.material is not None else None

    def certificate(self) -> context.Certificate | None:
        return self.material.certificate if self.material is not None else None

    def server_context(self) -> ssl.SSLContext | None:
        return self.material.server if self.material is not None else None

    def client_context(self) -> ssl.SSLContext | None:
        return self.material.client if self.material is not None else None

    def peer_identity(self, connection: ssl.SSLObject | None) -> str | None:
        """The verified peer's SPIFFE id, or None if it has none (or another trust domain)."""
        if connection is None:
            return None
        try:
            return tlscontexts.peer_identity(connection, trust_domain=self.trust_domain).uri
        except errors.IdentityError:
            return None


class FileCredentials(Holder):
    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        trust_bundle_file: Path,
        trust_domain: str,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__(trust_domain=trust_domain)
        self.files = (cert_file, key_file, trust_bundle_file)
        self.poll_seconds = poll_seconds
        self._loaded_stamp: tuple[tuple[int, int], ...] | None = None
        self.reload()

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        stats = [path.stat() for path in self.files]
        return tuple((stat.st_mtime_ns, stat.st_ino) for stat in stats)

    def reload(self) -> bool:
        """Load the files if they changed; on failure keep the old contexts. True if swapped."""
        try:
            stamp = self._stamp()
            if self.material is not None and stamp == self._loaded_stamp:
                return False
            cert_file, key_file, bundle_file = self.files
            key = keys.key_from_pem(key_file.read_bytes())
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise errors.IdentityError("workload keys must be ECDSA")
            issued = authority.IssuedCertificate(keys.certificates_from_pem(cert_file.read_bytes()))
            bundle = bundles.from_pem(self.trust_domain, bundle_file.read_bytes())
            identity = bundles.identity_of(issued.certificate).uri
            loaded = Material.build(
                key, issued, bundle, identity=identity, renew_at=None, source="files"
            )
        except (OSError, ValueError, errors.IdentityError, ssl.SSLError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("credentials not (re)loaded, keeping the current ones: %s", self.last_error)
            return False
        self.material, self._loaded_stamp = loaded, stamp
        self.last_error = None
        log.info("credentials loaded: %s until %s", identity, issued.not_after.isoformat())
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            self.reload()


def from_settings(config: settings.SidecarSettings) -> FileCredentials | None:
    if config.cert_file is None or config.key_file is None or config.trust_bundle_file is None:
        return None
    return FileCredentials(
        cert_file=config.cert_file,
        key_file=config.key_file,
        trust_bundle_file=config.trust_bundle_file,
        trust_domain=config.trust_domain,
        poll_seconds=config.cert_poll_seconds,
    )
