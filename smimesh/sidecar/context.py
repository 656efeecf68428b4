"""What every connection handler shares: settings, the current route table (one reference,
swapped whole), the forwarder, the connector, metrics, the drain and TLS credentials.

Built once by `running.Sidecar`; read by `outbound`, `inbound`, `http2` and `admin`. A handler
reads `context.table` once per request (HTTP) or connection (TCP) and uses that snapshot
throughout, so a swap never changes a request halfway.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from smimesh.proxyconfig import workloads
from smimesh.sidecar import draining, endpoints, forwarding, metrics, settings, tables, tracing


@dataclass(frozen=True)
class Certificate:
    """The proxy's current workload certificate, as the admin endpoint `/identity` reports it."""

    spiffe_id: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    renew_at: datetime.datetime | None
    """When this proxy asks the mesh CA for a new one; None when others rotate its files."""
    source: str
    """`mesh-ca` (issued to this process on request) or `files` (mounted, re-read on change)."""

    def to_json(self) -> dict[str, str | None]:
        return {
            "spiffe_id": self.spiffe_id,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "renew_at": self.renew_at.isoformat() if self.renew_at is not None else None,
            "source": self.source,
        }


class Credentials(Protocol):
    """The proxy's current mTLS material (rotated underneath without dropping connections)."""

    def server_context(self) -> ssl.SSLContext | None: ...

    def client_context(self) -> ssl.SSLContext | None: ...

    def peer_identity(self, connection: ssl.SSLObject | None) -> str | None: ...

    def certificate(self) -> Certificate | None: ...


@dataclass(eq=False)
class Context:
    settings: settings.SidecarSettings
    telemetry: metrics.Telemetry
    drain: draining.Drain
    connector: endpoints.Connector
    forwarder: forwarding.Forwarder
    credentials: Credentials | None = None
    table: tables.Table | None = None
    me: workloads.Workload = field(default_factory=workloads.Workload)
    tracer: tracing.Tracer = field(default_factory=tracing.Tracer)

    def mtls_mode(self) -> str:
        return self.table.config.settings.mtls if self.table is not None else "strict"
