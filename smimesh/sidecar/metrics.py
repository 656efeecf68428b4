"""Prometheus metrics of one sidecar, in OSM's names so Flagger's `osm` provider works
unchanged: `osm_request_total` and `osm_request_duration_ms`, on the client side (outbound)
and the server side (inbound), plus per-route and TCP byte counters.

Fed by `forwarding`, `inbound`, `http2` and `tcp`; served by `admin` at `/metrics`. Each
sidecar owns its registry (several can share a process in tests). Label values that a caller
can influence are bounded twice: the server side names its source from the verified peer
identity (`Workload.from_headers`), and every family holds at most `max_series` label sets,
past which one `__overflow__` series counts the rest. Label children are cached: `.labels()`
is the expensive part of prometheus-client on the hot path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client as prom

from smimesh.sidecar import settings

_POD_OF_DEPLOYMENT = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")
# What a Kubernetes name or kind may look like (DNS-1123 subdomain, or a CamelCase kind):
# a header value that is not one is ignored, never copied into a label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
WORKLOAD_LABELS = ("namespace", "kind", "name", "pod")
DURATION_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
OVERFLOW = "__overflow__"
"""The value of every label of the one series that counts what a full family turned away."""


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str = ""
    kind: str = ""
    name: str = ""
    pod: str = ""

    @classmethod
    def of_pod(cls, namespace: str, pod: str, kind: str = "", name: str = "") -> Workload:
        """The contract names pods, Flagger queries workloads: a Deployment's pod is
        `<name>-<replicaset hash>-<suffix>`; anything else is reported as the Pod itself."""
        if not kind:
            found = _POD_OF_DEPLOYMENT.match(pod)
            kind, name = ("Deployment", found["name"]) if found else ("Pod", pod)
        return cls(namespace, kind, name, pod)

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """OSM's `osm-stats-*` request headers: how the server side learns the source pod."""
        return _stats_headers(self)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], verified: Workload) -> Workload:
        """The source workload of an inbound request. `verified` is what the peer's
        certificate proves (namespace and ServiceAccount; empty for plaintext). The caller's
        `osm-stats-*` headers only refine it to a pod and workload name, and only when they
        claim the verified namespace and look like Kubernetes names: a caller can never
        write a series for another namespace, and a plaintext caller gets empty labels.
        A denied request is recorded with `verified` itself (the call sites do so)."""
        if not verified.namespace:
            return verified
        namespace = headers.get("osm-stats-namespace", "")
        kind = headers.get("osm-stats-kind", "")
        name = headers.get("osm-stats-name", "")
        pod = headers.get("osm-stats-pod", "")
        if namespace != verified.namespace or not (
            _KIND.match(kind) and _NAME.match(name) and _NAME.match(pod)
        ):
            return verified
        return cls(namespace, kind, name, pod)


@functools.lru_cache(maxsize=64)
def _stats_headers(workload: Workload) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (f"osm-stats-{label}".encode(), getattr(workload, label).encode())
        for label in WORKLOAD_LABELS
    )


STATS_HEADERS = frozenset(f"osm-stats-{label}".encode() for label in WORKLOAD_LABELS)


class _Family:
    """The children of one labelled metric: at most `cap` label sets, then the overflow."""

    __slots__ = ("cap", "children", "metrics", "overflow")

    def __init__(self, cap: int, *metrics: Any) -> None:
        self.cap = cap
        self.metrics = metrics
        self.children: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.overflow: tuple[Any, ...] | None = None

    def child(self, key: tuple[Any, ...], values: Any) -> tuple[Any, ...]:
        found = self.children.get(key)
        if found is not None:
            return found
        if len(self.children) < self.cap:
            labels = tuple(values())
            found = tuple(metric.labels(*labels) for metric in self.metrics)
            self.children[key] = found
            return found
        if self.overflow is None:
            width = len(self.metrics[0]._labelnames)
            self.overflow = tuple(metric.labels(*[OVERFLOW] * width) for metric in self.metrics)
        return self.overflow


class Telemetry:
    def __init__(self, *, max_series: int = settings.MAX_METRIC_SERIES) -> None:
        self.registry = prom.CollectorRegistry()
        self.max_series = max_series
        labels = [f"source_{x}" for x in WORKLOAD_LABELS]
        labels += [f"destination_{x}" for x in WORKLOAD_LABELS]
        total = prom.Counter(
            "osm_request_total",
            "HTTP requests, by source and destination workload and response code.",
            [*labels, "response_code", "side"],
            registry=self.registry,
        )
        duration = prom.Histogram(
            "osm_request_duration_ms",
            "HTTP request duration in milliseconds.",
            [*labels, "response_code", "side"],
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        routes = prom.Counter(
            "smimesh_route_requests_total",
            "Requests per route: the TrafficSplit (or '') and the backend cluster chosen.",
            ["split", "cluster", "response_code"],
            registry=self.registry,
        )
        tcp = prom.Counter(
            "smimesh_tcp_bytes_total",
            "Bytes relayed on TCP connections, by cluster and direction.",
            ["cluster", "direction"],
            registry=self.registry,
        )
        denied = prom.Counter(
            "smimesh_inbound_denied_total",
            "Inbound requests and connections refused by authorization.",
            ["port", "protocol"],
            registry=self.registry,
        )
        self._refused = prom.Counter(
            "smimesh_connections_refused",
            "Connections closed at once because their listener had its cap of open ones.",
            ["listener"],
            registry=self.registry,
        )
        # Counters count from here: readers of totals (the TrafficMetrics API) report the
        # window they cover as the time since this moment.
        prom.Gauge(
            "smimesh_sidecar_start_time_seconds",
            "When this sidecar's counters started, in seconds since the Unix epoch.",
            registry=self.registry,
        ).set_to_current_time()
        # One cap per family (the total and the histogram share label sets, so one family).
        self._requests = _Family(max_series, total, duration)
        self._routes = _Family(max_series, routes)
        self._tcp = _Family(max_series, tcp)
        self._denied = _Family(max_series, denied)

    def request(
        self, side: str, source: Workload, destination: Workload, code: int, millis: float
    ) -> None:
        def values() -> tuple[str, ...]:
            return (
                source.namespace, source.kind, source.name, source.pod,
                destination.namespace, destination.kind, destination.name, destination.pod,
                str(code), side,
            )  # fmt: skip

        total, duration = self._requests.child((side, source, destination, code), values)
        total.inc()
        duration.observe(millis)

    def route(self, split: str, cluster: str, code: int) -> None:
        (child,) = self._routes.child((split, cluster, code), lambda: (split, cluster, str(code)))
        child.inc()

    def tcp_bytes(self, cluster: str, sent: int, received: int) -> None:
        (out,) = self._tcp.child((cluster, "sent"), lambda: (cluster, "sent"))
        (back,) = self._tcp.child((cluster, "received"), lambda: (cluster, "received"))
        out.inc(sent)
        back.inc(received)

    def denied(self, port: int, protocol: str) -> None:
        (child,) = self._denied.child((port, protocol), lambda: (str(port), protocol))
        child.inc()

    def series(self) -> dict[str, int]:
        """Label sets held per family (the overflow series included), for tests and logs."""
        families = {
            "osm_request_total": self._requests, "smimesh_route_requests_total": self._routes,
            "smimesh_tcp_bytes_total": self._tcp, "smimesh_inbound_denied_total": self._denied,
        }  # fmt: skip
        return {
            name: len(family.children) + (family.overflow is not None)
            for name, family in families.items()
        }

    def connection_refused(self, listener: str) -> None:
        self._refused.labels(listener).inc()

    def render(self) -> bytes:
        """The Prometheus text of the registry. Thread-safe (prometheus-client locks each
        metric): `admin` calls it in a worker thread so the event loop keeps serving."""
        return prom.generate_latest(self.registry)
