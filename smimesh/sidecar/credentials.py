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
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from smimesh.identity import authority, bundles, errors, keys, tlscontexts
from smimesh.sidecar import context, settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[tuple[int, int], ...]
    server: ssl.SSLContext
    client: ssl.SSLContext
    identity: str
    certificate: context.Certificate


class FileCredentials:
    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        trust_bundle_file: Path,
        trust_domain: str,
        poll_seconds: float = 5.0,
    ) -> None:
        self.files = (cert_file, key_file, trust_bundle_file)
        self.trust_domain = trust_domain
        self.poll_seconds = poll_seconds
        self._loaded: _Loaded | None = None
        self.last_error: str | None = None
        self.reload()

    @property
    def identity(self) -> str | None:
        return self._loaded.identity if self._loaded is not None else None

    def certificate(self) -> context.Certificate | None:
        return self._loaded.certificate if self._loaded is not None else None

    def server_context(self) -> ssl.SSLContext | None:
        return self._loaded.server if self._loaded is not None else None

    def client_context(self) -> ssl.SSLContext | None:
        return self._loaded.client if self._loaded is not None else None

    def peer_identity(self, connection: ssl.SSLObject | None) -> str | None:
        """The verified peer's SPIFFE id, or None if it has none (or another trust domain)."""
        if connection is None:
            return None
        try:
            return tlscontexts.peer_identity(connection, trust_domain=self.trust_domain).uri
        except errors.IdentityError:
            return None

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        stats = [path.stat() for path in self.files]
        return tuple((stat.st_mtime_ns, stat.st_ino) for stat in stats)

    def reload(self) -> bool:
        """Load the files if they changed; on failure keep the old contexts. True if swapped."""
        try:
            stamp = self._stamp()
            if self._loaded is not None and stamp == self._loaded.stamp:
                return False
            cert_file, key_file, bundle_file = self.files
            key = keys.key_from_pem(key_file.read_bytes())
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise errors.IdentityError("workload keys must be ECDSA")
            issued = authority.IssuedCertificate(keys.certificates_from_pem(cert_file.read_bytes()))
            bundle = bundles.from_pem(self.trust_domain, bundle_file.read_bytes())
            identity = bundles.identity_of(issued.certificate).uri
            loaded = _Loaded(
                stamp,
                tlscontexts.server_context(key=key, certificate=issued, bundle=bundle),
                tlscontexts.client_context(key=key, certificate=issued, bundle=bundle),
                identity,
                context.Certificate(identity, issued.not_before, issued.not_after, None, "files"),
            )
        except (OSError, ValueError, errors.IdentityError, ssl.SSLError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("credentials not (re)loaded, keeping the current ones: %s", self.last_error)
            return False
        self._loaded = loaded
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
