"""Prometheus metrics of one sidecar, in OSM's names so Flagger's `osm` provider works
unchanged: `osm_request_total` and `osm_request_duration_ms`, on the client side (outbound)
and the server side (inbound), plus per-route and TCP byte counters.

Fed by `forwarding`, `inbound`, `http2` and `tcp`; served by `admin` at `/metrics`. Each
sidecar owns its registry (several can share a process in tests). Label values that a caller
can influence are bounded twice: the server side names its source from the verified peer
identity (`smimesh.proxyconfig.workloads.Workload.from_headers`), and every family holds at
most `max_series` label sets, past which one `__overflow__` series counts the rest. Label
children are cached: `.labels()` is the expensive part of prometheus-client on the hot path.
"""

from __future__ import annotations

from typing import Any

import prometheus_client as prom

from smimesh.proxyconfig import workloads
from smimesh.sidecar import settings

DURATION_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
OVERFLOW = "__overflow__"
"""The value of every label of the one series that counts what a full family turned away."""


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
        labels = [f"source_{x}" for x in workloads.LABELS]
        labels += [f"destination_{x}" for x in workloads.LABELS]
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
        self,
        side: str,
        source: workloads.Workload,
        destination: workloads.Workload,
        code: int,
        millis: float,
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
