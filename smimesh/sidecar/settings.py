"""The sidecar's own settings: where it listens, where its config and certificates come from,
and the resilience defaults the proxy config does not carry.

Built by `smimesh.sidecar.__main__` / `smimesh.cli.sidecars` from flags; read by every stage.
Mesh-wide knobs (timeout, retries, mTLS mode) come from the proxy config instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from smimesh.proxyconfig import refs

Interception = Literal["explicit", "transparent"]

# The ports the injector (smimesh.webhooks.injection.settings.Ports) gives the proxy.
OUTBOUND_PORT = 15001
INBOUND_PORT = 15003
ADMIN_PORT = 15000
PROBE_PORT = 15020
METRICS_PORT = 15090  # the metrics-only listener Prometheus scrapes (smimesh.kube.names)
MAX_METRIC_SERIES = 1000
"""Label sets per metric family; past it one `__overflow__` series counts the rest."""
PROXY_MARK = 0x534D  # "SM": set on upstream sockets so iptables lets them through


@dataclass(frozen=True)
class LocalService:
    """Explicit interception: a local port that forwards to one Service port."""

    local_port: int
    service: refs.ServiceRef
    port: int

    @classmethod
    def parse(cls, text: str) -> LocalService:
        """`LOCALPORT=namespace/name:port`, e.g. `9080=shop/checkout:80`."""
        local, _, target = text.partition("=")
        ref, _, port = target.rpartition(":")
        namespace, _, name = ref.partition("/")
        if not (local.isdigit() and port.isdigit() and namespace and name):
            raise ValueError(f"expected LOCALPORT=namespace/name:port, got {text!r}")
        return cls(int(local), refs.ServiceRef(namespace=namespace, name=name), int(port))


@dataclass(frozen=True)
class Limits:
    """Circuit breaking and parser bounds (Envoy's defaults where it has one)."""

    max_connections_per_cluster: int = 1024
    max_pending_per_cluster: int = 1024
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    connect_timeout: float = 3.0
    pool_idle_per_endpoint: int = 64
    # Each listener closes connections past this many at once (they would exhaust
    # descriptors otherwise); counted in smimesh_connections_refused_total.
    max_connections_per_listener: int = 1024
    # HTTP/2, per connection: the advertised MAX_CONCURRENT_STREAMS (and the bound on handler
    # tasks); a token bucket of peer resets and refused streams (burst, then per second)
    # whose exhaustion answers GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487, as nginx and Envoy);
    # and how long a session with no open stream stays before GOAWAY NO_ERROR (0: never).
    h2_max_streams: int = 100
    h2_reset_burst: int = 200
    h2_reset_rate: float = 100.0
    h2_idle_timeout: float = 300.0


@dataclass(frozen=True)
class Outliers:
    """Outlier ejection: `consecutive_failures` 5xx/connect errors eject an endpoint for
    `base_ejection` seconds times the number of ejections, never more than `max_ejected_ratio`
    of a cluster at once."""

    consecutive_failures: int = 5
    base_ejection: float = 30.0
    max_ejected_ratio: float = 0.5


@dataclass(frozen=True)
class SidecarSettings:
    proxy: refs.ProxyRef | None = None
    interception: Interception = "explicit"
    outbound_host: str = "127.0.0.1"
    outbound_port: int = OUTBOUND_PORT
    inbound_host: str = "0.0.0.0"
    inbound_port: int = INBOUND_PORT
    admin_host: str = "127.0.0.1"
    """The full admin listener is for this pod alone (`kubectl port-forward` from outside)."""
    admin_port: int = ADMIN_PORT
    admin_config: bool = False
    """Serve `/config` (the pod's allowed sources, every outbound endpoint) on the admin port."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = None
    """The metrics-only listener (`/metrics`, `/ready`, `/live`); None: none."""
    max_metric_series: int = MAX_METRIC_SERIES
    probe_host: str = "0.0.0.0"  # kubelet reaches the probe port on the pod's address
    probe_port: int | None = None  # None: no probe listener
    app_probes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    app_host: str = "127.0.0.1"
    local_services: tuple[LocalService, ...] = ()
    config_file: Path | None = None
    config_poll_seconds: float = 1.0
    config_server: str | None = None
    token_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    trust_bundle_file: Path | None = None
    cert_poll_seconds: float = 5.0
    trust_domain: str = "cluster.local"
    upstream_mark: int | None = None
    drain_seconds: float = 20.0
    workload_kind: str = ""
    workload_name: str = ""
    merge_slashes: bool = False
    """Path normalization (`paths`): also merge runs of `/` into one, as Envoy's merge_slashes.
    Per sidecar, not in the proxy config: whether `//` means `/` is a property of the app
    behind it, and each hop forwards exactly the path it matched."""
    limits: Limits = field(default_factory=Limits)
    outliers: Outliers = field(default_factory=Outliers)
