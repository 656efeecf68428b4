"""Certificate issuing without moving private keys: a sidecar sends a CSR and its projected
ServiceAccount token, bound to its Pod; the token's TokenReview identity decides the one SPIFFE
id the CSR may ask for; the mesh CA signs.

Serves the `Certificates.Sign` RPC of the proxyconfig contract for `running`; uses
`authenticating` (TokenReview) and `smimesh.identity` (checks and signing). The CA is read
from the `authorities.CaHolder` on every request, so a rotation step or a renewed issuing CA
takes effect at once. Every refusal has a clear message and is counted in
`smimesh_certificate_requests_total{result}`.
"""

from __future__ import annotations

import datetime
import logging

import grpc
from prometheus_client import Counter

from smimesh.identity import authority, errors, keys, spiffe
from smimesh.operator import authenticating, authorities
from smimesh.proxyconfig import proxyconfig_pb2, proxyconfig_pb2_grpc

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "smimesh_certificate_requests",
    "Workload certificate requests, by result (signed or the refusal's reason).",
    ["result"],
)


class Certificates(proxyconfig_pb2_grpc.CertificatesServicer):
    def __init__(
        self,
        holder: authorities.CaHolder,
        authenticator: authenticating.Authenticator,
        *,
        lifetime: datetime.timedelta = authority.DEFAULT_LEAF_LIFETIME,
    ) -> None:
        self.holder = holder
        self.authenticator = authenticator
        self.lifetime = lifetime

    async def Sign(  # noqa: N802 - the name is the gRPC method's
        self,
        request: proxyconfig_pb2.SignRequest,
        context: grpc.aio.ServicerContext[
            proxyconfig_pb2.SignRequest, proxyconfig_pb2.SignResponse
        ],
    ) -> proxyconfig_pb2.SignResponse:
        try:
            caller = await self.authenticator.authenticate(request.token)
        except authenticating.AuthenticationError as exc:
            REQUESTS.labels(result="unauthenticated").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            # A CSR names no Pod, but only a running Pod's proxy gets a certificate: a
            # token bound to no Pod (`kubectl create token`) is not enough.
            authenticating.require_pod(caller, None)
        except authenticating.PodClaimError as exc:
            REQUESTS.labels(result="not_pod_bound").inc()
            log.warning("refused a CSR: %s", exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        ca = self.holder.ca  # one state for both the leaf and the bundle sent with it
        expected = spiffe.for_service_account(
            ca.active.trust_domain, caller.namespace, caller.service_account
        )
        try:
            issued = ca.active.sign(
                keys.request_from_bytes(request.csr_pem), expected=expected, lifetime=self.lifetime
            )
        except errors.IdentityError as exc:
            REQUESTS.labels(result=exc.reason).inc()
            log.warning("refused a CSR from %s: %s", expected.uri, exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{exc.reason}: {exc}")
        REQUESTS.labels(result="signed").inc()
        return proxyconfig_pb2.SignResponse(
            certificate_chain_pem=issued.chain_pem(),
            trust_bundle_pem=ca.bundle.pem(),
        )
