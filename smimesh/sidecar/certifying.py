"""mTLS credentials issued by the mesh CA: the sidecar makes its key, sends a CSR with its
projected ServiceAccount token to the operator (`Certificates.Sign`), and renews at ~70 % of
the certificate's lifetime. The key never leaves this process and is never written to disk;
the token is read from its file (`tokens`) for every request and only ever sent over TLS.

Created by `commands` when the sidecar has a config server, a token file and a trust bundle
but no certificate files (the injected and local-workload case); offers the same
`context.Credentials` face as `credentials.FileCredentials`. New handshakes use the new
contexts after a renewal; established connections keep theirs.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import grpc

from smimesh._aio import backoff
from smimesh.identity import authority, bundles, errors, keys, spiffe
from smimesh.proxyconfig import proxyconfig_pb2, proxyconfig_pb2_grpc, refs
from smimesh.sidecar import credentials, tokens

log = logging.getLogger(__name__)


def channel_credentials(trust_bundle_file: Path, learnt: bytes = b"") -> grpc.ChannelCredentials:
    """TLS to the operator, verified against the mesh roots: the file's, read again on every
    call (the kubelet updates a mounted ConfigMap), plus `learnt` (the bundle that came with
    the last certificate: during a root rotation it holds the new root before the operator
    presents a certificate under it, so a file that lags behind does not cut us off)."""
    return grpc.ssl_channel_credentials(trust_bundle_file.read_bytes() + b"\n" + learnt)


class IssuedCredentials(credentials.Holder):
    def __init__(
        self,
        *,
        target: str,
        proxy: refs.ProxyRef,
        token_file: Path,
        trust_bundle_file: Path,
        trust_domain: str,
    ) -> None:
        super().__init__(trust_domain=trust_domain)
        self.target = target
        self.identity_wanted = spiffe.for_service_account(
            trust_domain, proxy.namespace, proxy.service_account
        )
        self.token_file = token_file
        self.token = tokens.TokenFile(token_file)
        self.trust_bundle_file = trust_bundle_file
        self.issued = asyncio.Event()
        self.learnt_bundle = b""
        """The trust bundle sent with the last certificate (PEM)."""

    def operator_credentials(self) -> grpc.ChannelCredentials:
        if not self.learnt_bundle and not self.trust_bundle_file.is_file():
            # On a real node the first Pods of a new namespace start before the operator has
            # published the bundle there; the kubelet mounts it at its next volume sync.
            raise FileNotFoundError(
                f"no mesh roots at {self.trust_bundle_file} yet: the operator publishes them "
                "in this namespace's trust-bundle ConfigMap and the kubelet mounts them within "
                "about a minute; retrying"
            )
        return channel_credentials(self.trust_bundle_file, self.learnt_bundle)

    async def request(self) -> credentials.Material:
        """One CSR round trip; raises grpc.aio.AioRpcError or IdentityError on failure."""
        key = keys.generate_key()
        csr = keys.request_to_pem(keys.build_request(key, self.identity_wanted))
        token = self.token.read()  # the kubelet rotates it: never a copy read long ago
        async with grpc.aio.secure_channel(self.target, self.operator_credentials()) as channel:
            response = await proxyconfig_pb2_grpc.CertificatesStub(channel).Sign(
                proxyconfig_pb2.SignRequest(csr_pem=csr, token=token), timeout=15
            )
        issued = authority.IssuedCertificate(
            keys.certificates_from_pem(response.certificate_chain_pem)
        )
        bundle = bundles.from_pem(self.trust_domain, response.trust_bundle_pem)
        identity = bundle.verify_chain(issued.chain)
        if identity != self.identity_wanted:
            raise errors.IdentityMismatchError(
                f"the CA issued {identity.uri}, this proxy is {self.identity_wanted.uri}"
            )
        self.learnt_bundle = bundle.pem()
        return credentials.Material.build(
            key, issued, bundle, identity=identity.uri, renew_at=issued.renew_at(), source="mesh-ca"
        )

    def _retry_delay(self, retry: backoff.Backoff) -> float:
        """The backoff's delay, but while a certificate is still valid never more than an
        eighth of the time it has left: a renewal that failed while the CA was away is tried
        again often enough to succeed before expiry once the CA is back."""
        delay = retry.next_delay()
        if self.material is None:
            return delay
        left = self.material.certificate.not_after - datetime.datetime.now(datetime.UTC)
        return min(delay, max(0.5, left.total_seconds() / 8))

    async def watch(self) -> None:
        """Get a certificate, then renew it at its renewal time, forever."""
        retry = backoff.Backoff(initial=0.5, maximum=30.0)
        while True:
            try:
                material = await self.request()
            except (grpc.aio.AioRpcError, errors.IdentityError, OSError, ValueError) as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                self.last_error = f"{type(exc).__name__}: {detail}"
                log.error("certificate request failed: %s", self.last_error)
                await asyncio.sleep(self._retry_delay(retry))
                continue
            self.material = material
            retry.reset()
            self.last_error = None
            self.issued.set()
            renew_at = material.certificate.renew_at or datetime.datetime.now(datetime.UTC)
            log.info("certificate issued: %s, renewing at %s", self.identity, renew_at)
            wait = renew_at - datetime.datetime.now(datetime.UTC)
            await asyncio.sleep(max(1.0, wait.total_seconds()))
