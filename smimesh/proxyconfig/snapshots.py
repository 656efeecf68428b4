"""The whole configuration of one proxy, as one immutable, versioned snapshot.

`ProxyConfig` is what the compiler returns per proxy, what the config server sends, and what
the sidecar swaps atomically. `version` is a content hash of everything else, so equal
configs have equal versions and a proxy holding the latest version needs no push.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal

from pydantic import Field

from smimesh.proxyconfig.inbound import InboundPort
from smimesh.proxyconfig.outbound import OutboundService
from smimesh.proxyconfig.refs import Frozen, ProxyRef

SCHEMA: Final = "smimesh.dev/proxyconfig/v1"
MtlsMode = Literal["strict", "permissive", "disabled"]


class MeshSettings(Frozen):
    """Mesh-wide settings every proxy receives."""

    trust_domain: str = "cluster.local"
    mtls: MtlsMode = "strict"
    metrics_port: int = Field(default=15090, ge=1, le=65535)
    tracing_endpoint: str | None = None
    request_timeout_seconds: float = Field(default=15.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)


class ProxyConfig(Frozen):
    """One proxy's configuration; build with `ProxyConfig.build(...)` to stamp the version."""

    schema_: Literal["smimesh.dev/proxyconfig/v1"] = Field(default=SCHEMA, alias="schema")
    version: str
    proxy: ProxyRef
    identity: str
    settings: MeshSettings
    outbound: tuple[OutboundService, ...] = ()
    inbound: tuple[InboundPort, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        proxy: ProxyRef,
        identity: str,
        settings: MeshSettings,
        outbound: tuple[OutboundService, ...] = (),
        inbound: tuple[InboundPort, ...] = (),
    ) -> ProxyConfig:
        draft = cls(
            version="",
            proxy=proxy,
            identity=identity,
            settings=settings,
            outbound=outbound,
            inbound=inbound,
        )
        return draft.model_copy(update={"version": content_version(draft)})

    def to_json(self) -> bytes:
        """Canonical JSON: the bytes sent over the wire and hashed into the version."""
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ProxyConfig:
        return cls.model_validate_json(data)


def content_version(config: ProxyConfig) -> str:
    """A short, stable hash of a config's content (its version field excluded)."""
    body = config.model_dump_json(by_alias=True, exclude={"version"}).encode()
    return hashlib.sha256(body).hexdigest()[:16]
