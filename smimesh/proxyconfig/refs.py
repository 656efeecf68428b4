"""Identifiers shared by the compiler, the config server and the sidecar.

`ProxyRef` names one proxy (namespace, ServiceAccount, pod); `ServiceRef` names a Service.
Used by every other module of `smimesh.proxyconfig`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Frozen(BaseModel):
    """Base of every contract model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceRef(Frozen):
    """A Kubernetes Service, by namespace and name."""

    namespace: str = Field(pattern=_DNS_LABEL, max_length=63)
    name: str = Field(pattern=_DNS_LABEL, max_length=63)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ProxyRef(Frozen):
    """One sidecar: the pod it runs in and the ServiceAccount whose identity it holds."""

    namespace: str = Field(pattern=_DNS_LABEL, max_length=63)
    service_account: str = Field(min_length=1, max_length=253)
    pod: str = Field(min_length=1, max_length=253)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod} (sa {self.service_account})"
