"""Who is calling: proxies prove their ServiceAccount with a projected token, which the
apiserver checks through TokenReview (audience `smimesh`), and which Pod they run in: a token
bound to a Pod (what the kubelet projects) names it, and TokenReview refuses it once that Pod
is gone or was recreated under the same name.

Used by `serving` for every config stream and `certificates` for every CSR; both accept only
pod-bound tokens (`require_pod`). The kubernetes client is synchronous, so each review runs in
a worker thread and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from kubernetes import client

from smimesh.kube import names


class AuthenticationError(Exception):
    """The token does not prove an identity; the message says why (never the token)."""


@dataclass(frozen=True)
class Caller:
    namespace: str
    service_account: str
    pod: str | None = None
    """The Pod the token is bound to; None for a token bound to no Pod."""
    pod_uid: str | None = None


class PodClaimError(Exception):
    """The caller claims a Pod its token does not prove; the message says which."""


def require_pod(caller: Caller, claimed: str | None) -> str:
    """The Pod a request may act for: its token's. A token bound to no Pod (a plain
    ServiceAccount token from `kubectl create token` or a legacy Secret) is refused, since it
    would let any holder claim any Pod of the ServiceAccount; `claimed` (None: the request
    names no Pod) must be the token's Pod."""
    if caller.pod is None:
        raise PodClaimError(
            f"the token of {caller.namespace}/{caller.service_account} is bound to no Pod; "
            "proxies must use a token bound to their Pod (a projected token, or a "
            "TokenRequest with a boundObjectRef to the Pod)"
        )
    if claimed is not None and claimed != caller.pod:
        raise PodClaimError(
            f"the token is bound to pod {caller.namespace}/{caller.pod}, the request claims "
            f"pod {claimed!r}"
        )
    return caller.pod


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Caller: ...


@dataclass
class TokenReviewAuthenticator:
    """Checks tokens with the apiserver's TokenReview API."""

    api: client.ApiClient
    audience: str = names.TOKEN_AUDIENCE

    def _review(self, token: str) -> Caller:
        review = client.AuthenticationV1Api(self.api).create_token_review(
            client.V1TokenReview(
                spec=client.V1TokenReviewSpec(token=token, audiences=[self.audience])
            )
        )
        status = review.status
        if not status or not status.authenticated:
            reason = (status.error if status else None) or "token not accepted"
            raise AuthenticationError(f"token review failed: {reason}")
        if self.audience not in (status.audiences or []):
            raise AuthenticationError(f"token is not for audience {self.audience!r}")
        username = (status.user.username if status.user else None) or ""
        parts = username.split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
            raise AuthenticationError(f"{username!r} is not a ServiceAccount")
        extra = (status.user.extra if status.user else None) or {}
        pods = extra.get(names.TOKEN_POD_NAME_EXTRA) or []
        uids = extra.get(names.TOKEN_POD_UID_EXTRA) or []
        return Caller(
            namespace=parts[2],
            service_account=parts[3],
            pod=pods[0] if len(pods) == 1 else None,
            pod_uid=uids[0] if len(uids) == 1 else None,
        )

    async def authenticate(self, token: str) -> Caller:
        if not token:
            raise AuthenticationError("no token: the proxy must send its ServiceAccount token")
        return await asyncio.to_thread(self._review, token)
