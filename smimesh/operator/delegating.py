"""Who calls the aggregated API, and may they: authentication delegated to the aggregator's
front proxy, authorization to the apiserver (SubjectAccessReview), as every aggregated
apiserver does.

The kube-apiserver proxies `metrics.smi-spec.io` requests to us with its front-proxy client
certificate and the caller in `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*`. Those
headers are believed only on a TLS connection whose client certificate chains to the
requestheader CA and, if names are configured, has one of them as CN. `load` reads the CA,
names and header names from ConfigMap kube-system/extension-apiserver-authentication (the
apiserver publishes them there); `aggregating` calls `authenticate` then `authorize` for each
request, and `trust` adds the CA to the TLS server context `webhooking` serves with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

log = logging.getLogger(__name__)

CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


class UnauthenticatedError(Exception):
    """The request does not come from the aggregator (401); the message says why."""


@dataclass(frozen=True)
class RequestHeaders:
    """The front proxy's settings, as the apiserver publishes them."""

    client_ca: str
    """PEM: the CA that signs the front proxy's client certificate."""
    allowed_names: tuple[str, ...] = ()
    """CNs the front proxy's certificate may have; empty: any."""
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> RequestHeaders | None:
        """None when the apiserver has no front proxy configured (no aggregation)."""
        ca = data.get("requestheader-client-ca-file")
        if not ca:
            return None

        def strings(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            return default if raw is None else tuple(str(item) for item in json.loads(raw))

        return cls(
            client_ca=ca,
            allowed_names=strings("requestheader-allowed-names", ()),
            username_headers=strings("requestheader-username-headers", cls.username_headers),
            group_headers=strings("requestheader-group-headers", cls.group_headers),
            extra_prefixes=strings("requestheader-extra-headers-prefix", cls.extra_prefixes),
        )

    def trust(self, context: ssl.SSLContext) -> None:
        """Ask TLS clients for a certificate and verify one against the front-proxy CA.
        Optional, not required: the apiserver calls the webhooks on the same port without."""
        context.load_verify_locations(cadata=self.client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _common_name(peercert: Mapping[str, Any] | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def authenticate(
    settings: RequestHeaders | None,
    peercert: Mapping[str, Any] | None,
    headers: Mapping[str, Sequence[str]],
) -> User:
    """The user the front proxy vouches for; raises UnauthenticatedError.

    `peercert` is the verified client certificate (`SSLSocket.getpeercert()`: empty without
    one); `headers` maps each lower-cased header name to all its values (groups repeat)."""
    if settings is None:
        raise UnauthenticatedError("this operator has no front-proxy CA; see its log")
    name = _common_name(peercert)
    if name is None:
        raise UnauthenticatedError("no client certificate from the aggregator's front proxy")
    if settings.allowed_names and name not in settings.allowed_names:
        raise UnauthenticatedError(f"client certificate {name!r} is not an allowed front proxy")
    user = next(
        (values[0] for h in settings.username_headers if (values := headers.get(h.lower()))),
        None,
    )
    if not user:
        raise UnauthenticatedError("the front proxy named no user")
    groups = tuple(g for h in settings.group_headers for g in headers.get(h.lower(), ()))
    extra: dict[str, tuple[str, ...]] = {}
    for header, values in headers.items():
        for prefix in settings.extra_prefixes:
            if header.startswith(prefix.lower()):
                key = header[len(prefix) :]
                extra[key] = (*extra.get(key, ()), *values)
    return User(user, groups, extra)


@dataclass(frozen=True)
class Access:
    """What a request asks to do, as a SubjectAccessReview's resource attributes."""

    verb: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    group: str = "metrics.smi-spec.io"
    version: str = "v1alpha1"


@dataclass
class Authorizer:
    """Asks the apiserver whether a user may do something (SubjectAccessReview)."""

    api: client.ApiClient

    def _review(self, user: User, access: Access) -> tuple[bool, str]:
        review = client.AuthorizationV1Api(self.api).create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user.name,
                    groups=list(user.groups),
                    extra={key: list(values) for key, values in user.extra.items()} or None,
                    resource_attributes=client.V1ResourceAttributes(
                        group=access.group,
                        version=access.version,
                        resource=access.resource,
                        subresource=access.subresource,
                        namespace=access.namespace,
                        name=access.name,
                        verb=access.verb,
                    ),
                )
            )
        )
        status = review.status
        allowed = bool(status and status.allowed and not status.denied)
        return allowed, str((status.reason if status else None) or "")

    async def authorize(self, user: User, access: Access) -> tuple[bool, str]:
        """(allowed, the authorizer's reason), from a worker thread."""
        return await asyncio.to_thread(self._review, user, access)


def load(api: client.ApiClient) -> RequestHeaders | None:
    """The front proxy's settings from the cluster; None (and a warning) if there are none
    or we may not read them. Blocking: run it in a thread."""
    namespace, name = CONFIGMAP
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        log.warning(
            "cannot read %s/%s (%s %s): the TrafficMetrics API refuses every caller",
            namespace,
            name,
            exc.status,
            exc.reason,
        )
        return None
    settings = RequestHeaders.from_configmap(found.data or {})
    if settings is None:
        log.warning("the apiserver has no front proxy: the TrafficMetrics API cannot be served")
    return settings
