"""The operator's own serving certificates, following the mesh CA: the gRPC config server's
(sidecars verify it against their trust bundle) and the HTTPS server's (webhooks and the
TrafficMetrics API; the apiserver verifies it against the caBundle `cabundles` writes).

`running` builds a `ServingCertificate` for each and reads the CA from the
`authorities.CaHolder`: a certificate is issued again when the holder's CA changed (a rotation
step, a renewed issuing CA) or it passed its renewal time. The gRPC server asks through
`grpc_credentials`' fetcher on new handshakes (cheap: two comparisons unless stale); the HTTPS
server's live `ssl.SSLContext` is reloaded by `WebhookRenewal.run`, which also re-patches the
caBundles whenever the trust bundle changes. Keys are made here and never leave the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import logging
import ssl
import threading
import urllib.parse

import grpc

from smimesh.identity import authority, keys, tlscontexts
from smimesh.kube import names
from smimesh.operator import authorities, cabundles

log = logging.getLogger(__name__)

LIFETIME = datetime.timedelta(days=30)
"""A serving certificate's lifetime (never beyond the issuing CA's); renewed at 70 %."""
MAX_WAIT = 3600.0
"""Seconds `WebhookRenewal` sleeps at most between looks at the renewal time."""


def service_names(namespace: str) -> list[str]:
    service = f"{names.OPERATOR_SERVICE}.{namespace}"
    return [names.OPERATOR_SERVICE, service, f"{service}.svc", f"{service}.svc.cluster.local"]


def serving_names(
    *, namespace: str, address: str, url: str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The DNS names and IP addresses a serving certificate must hold: the operator
    Service's names, the listen address, and the host of the local-mode URL."""
    dns = service_names(namespace)
    ips: list[str] = []
    hosts = [address.rpartition(":")[0].strip("[]")]
    if url is not None:
        hosts.append(urllib.parse.urlsplit(url).hostname or "")
    for host in filter(None, hosts):
        try:
            unspecified = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            dns.append(host)
            continue
        ips.append("127.0.0.1" if unspecified else host)
    return tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ServingCertificate:
    """A key and a serving certificate from the holder's active CA, issued again on demand."""

    def __init__(
        self,
        holder: authorities.CaHolder,
        *,
        dns_names: tuple[str, ...],
        ip_addresses: tuple[str, ...],
        lifetime: datetime.timedelta = LIFETIME,
    ) -> None:
        self.holder = holder
        self.dns_names = dns_names
        self.ip_addresses = ip_addresses
        self.lifetime = lifetime
        self._lock = threading.RLock()
        self.generation = -1
        """The holder generation the current certificate was issued at."""
        self.renew_at = _now()
        self.key: keys.PrivateKey = keys.generate_key()
        self.issued: authority.IssuedCertificate | None = None
        self.issue()

    def stale(self) -> bool:
        return self.generation != self.holder.generation or _now() >= self.renew_at

    def issue(self) -> tuple[bytes, bytes]:
        """Issue a new certificate (new key) from the current CA; returns (key PEM, chain PEM)."""
        with self._lock:
            generation, ca = self.holder.generation, self.holder.ca
            key = keys.generate_key()
            issued = ca.active.issue_serving(
                key.public_key(),
                dns_names=self.dns_names,
                ip_addresses=self.ip_addresses,
                lifetime=self.lifetime,
            )
            self.key, self.issued, self.generation = key, issued, generation
            # Never sooner than a minute ahead of now, so that a certificate cut short by its
            # issuer's own expiry is not reissued in a loop.
            self.renew_at = max(issued.renew_at(), min(_now() + datetime.timedelta(minutes=1),
                                                       issued.not_after))  # fmt: skip
            log.info(
                "serving certificate for %s issued until %s",
                (self.dns_names + self.ip_addresses)[-1],
                issued.not_after.isoformat(),
            )
            return keys.key_to_pem(key), issued.chain_pem()

    def refresh(self) -> tuple[bytes, bytes] | None:
        """`issue` if still stale once the lock is held: of several handshakes that saw it
        stale at once, only the first issues."""
        with self._lock:
            return self.issue() if self.stale() else None

    def pem(self) -> tuple[bytes, bytes]:
        with self._lock:
            assert self.issued is not None
            return keys.key_to_pem(self.key), self.issued.chain_pem()


def grpc_credentials(certificate: ServingCertificate) -> grpc.ServerCredentials:
    """Server credentials whose certificate follows the CA: grpc calls the fetcher on each new
    handshake, and it answers None (keep the current one) unless the certificate is stale."""

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        if not certificate.stale():
            return None
        try:
            pair = certificate.refresh()
        except Exception:  # grpc would only log it; keep serving the current certificate
            log.exception("could not renew the config server's certificate")
            return None
        return None if pair is None else grpc.ssl_server_certificate_configuration([pair])

    initial = grpc.ssl_server_certificate_configuration([certificate.pem()])
    # grpc's stubs say the fetcher never returns None; its documentation says None keeps
    # the current certificate, which is what we want on nearly every handshake.
    return grpc.dynamic_ssl_server_credentials(initial, fetch)  # type: ignore[arg-type]


def webhook_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """A TLS server context for the HTTPS server, holding `certificate` (reloaded in place by
    `WebhookRenewal`)."""
    assert certificate.issued is not None
    return tlscontexts.serving_context(key=certificate.key, certificate=certificate.issued)


@dataclasses.dataclass
class WebhookRenewal:
    """Keeps the HTTPS server's context and the apiserver's caBundles current; `run` until
    cancelled (owned by `webhooking.WebhookServer.run`)."""

    certificate: ServingCertificate
    context: ssl.SSLContext
    injector: cabundles.CaBundleInjector | None = None

    async def run(self) -> None:
        holder = self.certificate.holder
        while True:
            wait = (self.certificate.renew_at - _now()).total_seconds()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(wait, 1.0), MAX_WAIT)):
                    await holder.wait_changed(self.certificate.generation)
            if self.certificate.stale():
                await asyncio.to_thread(self.certificate.issue)
                assert self.certificate.issued is not None
                tlscontexts.load_serving(
                    self.context, key=self.certificate.key, certificate=self.certificate.issued
                )
            bundle = holder.ca.bundle.pem()
            if self.injector is not None and bundle != self.injector.endpoint.ca_bundle:
                self.injector.endpoint = dataclasses.replace(
                    self.injector.endpoint, ca_bundle=bundle
                )
                log.info("the mesh trust bundle changed; patching the webhook caBundles")
                await self.injector.run()
