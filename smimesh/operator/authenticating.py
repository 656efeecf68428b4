"""Who is calling: proxies prove their ServiceAccount with a projected token, which the
apiserver checks through TokenReview (audience `smimesh`).

Used by `serving` for every config stream and certificate request. The kubernetes client is
synchronous, so each review runs in a worker thread and never blocks the event loop.
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
        return Caller(namespace=parts[2], service_account=parts[3])

    async def authenticate(self, token: str) -> Caller:
        if not token:
            raise AuthenticationError("no token: the proxy must send its ServiceAccount token")
        return await asyncio.to_thread(self._review, token)
