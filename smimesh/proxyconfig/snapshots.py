"""The whole configuration of one proxy, as one immutable, versioned snapshot.

`ProxyConfig` is what the compiler returns per proxy, what the config server sends, and what
the sidecar swaps atomically. `version` is a content hash of everything else, so equal
configs have equal versions and a proxy holding the latest version needs no push.

Every proxy of a compilation gets the same outbound section (thousands of Services), so it is
encoded once (`encode_outbound`) and handed to each `ProxyConfig.build`: the version hashes
the small per-proxy part plus those shared bytes, and `to_json` splices them in, instead of
serialising the section again for every proxy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final, Literal

from pydantic import BaseModel, Field, PrivateAttr, TypeAdapter

from smimesh.proxyconfig.inbound import InboundPort
from smimesh.proxyconfig.outbound import OutboundService
from smimesh.proxyconfig.refs import Frozen, ProxyRef

SCHEMA: Final = "smimesh.dev/proxyconfig/v1"
MtlsMode = Literal["strict", "permissive", "disabled"]
_OUTBOUND: Final = TypeAdapter(tuple[OutboundService, ...])


def encode_outbound(outbound: tuple[OutboundService, ...]) -> bytes:
    """The outbound section's canonical JSON, as `ProxyConfig.to_json` embeds it."""
    return _OUTBOUND.dump_json(outbound, by_alias=True)


def canonical_json(model: BaseModel) -> bytes:
    """One contract model's canonical JSON: the bytes it has inside `ProxyConfig.to_json`."""
    return model.model_dump_json(by_alias=True).encode()


def join_outbound(encoded: Iterable[bytes]) -> bytes:
    """`encode_outbound` of services already encoded one by one (`canonical_json`), in
    order: compact JSON, so the array is its items joined by commas."""
    return b"[" + b",".join(encoded) + b"]"


def digest(*parts: bytes) -> str:
    """A short, stable content hash of `parts` (NUL-separated): every version in the
    contract is one."""
    return hashlib.sha256(b"\x00".join(parts)).hexdigest()[:16]


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
    _outbound_json: bytes | None = PrivateAttr(default=None)

    @classmethod
    def build(
        cls,
        *,
        proxy: ProxyRef,
        identity: str,
        settings: MeshSettings,
        outbound: tuple[OutboundService, ...] = (),
        inbound: tuple[InboundPort, ...] = (),
        outbound_json: bytes | None = None,
    ) -> ProxyConfig:
        """`outbound_json`, when given, must be `encode_outbound(outbound)`: the compiler
        encodes the shared section once for all proxies."""
        draft = cls(
            version="",
            proxy=proxy,
            identity=identity,
            settings=settings,
            outbound=outbound,
            inbound=inbound,
        )
        draft._outbound_json = outbound_json
        # content_version fills the draft's cached encoding; model_copy carries it over.
        return draft.model_copy(update={"version": content_version(draft)})

    def __eq__(self, other: object) -> bool:
        """Equal fields are equal configs; the cached outbound encoding is not content."""
        if not isinstance(other, ProxyConfig):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(self.version)

    def outbound_json(self) -> bytes:
        if self._outbound_json is None:
            self._outbound_json = encode_outbound(self.outbound)
        return self._outbound_json

    def to_json(self) -> bytes:
        """Canonical JSON: the bytes sent over the wire (the outbound section last)."""
        head = self.model_dump_json(by_alias=True, exclude={"outbound"}).encode()
        return head[:-1] + b',"outbound":' + self.outbound_json() + b"}"

    @classmethod
    def from_json(cls, data: bytes | str) -> ProxyConfig:
        return cls.model_validate_json(data)


def content_version(config: ProxyConfig) -> str:
    """A short, stable hash of a config's content (its version field excluded)."""
    head = config.model_dump_json(by_alias=True, exclude={"version", "outbound"}).encode()
    return digest(head, config.outbound_json())
