"""Prometheus metrics of one sidecar, in OSM's names so Flagger's `osm` provider works
unchanged: `osm_request_total` and `osm_request_duration_ms`, on the client side (outbound)
and the server side (inbound), plus per-route and TCP byte counters.

Fed by `forwarding`, `inbound` and `tcp`; served by `admin` at `/metrics`. Each sidecar owns its
registry (several can share a process in tests). Label children are cached: `.labels()` is
the expensive part of prometheus-client on the hot path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client as prom

_POD_OF_DEPLOYMENT = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")
WORKLOAD_LABELS = ("namespace", "kind", "name", "pod")
DURATION_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


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
    def from_headers(cls, headers: Mapping[str, str], fallback: Workload) -> Workload:
        values = [headers.get(f"osm-stats-{label}", "") for label in WORKLOAD_LABELS]
        return cls(*values) if any(values) else fallback


@functools.lru_cache(maxsize=64)
def _stats_headers(workload: Workload) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (f"osm-stats-{label}".encode(), getattr(workload, label).encode())
        for label in WORKLOAD_LABELS
    )


STATS_HEADERS = frozenset(f"osm-stats-{label}".encode() for label in WORKLOAD_LABELS)


class Telemetry:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        labels = [f"source_{x}" for x in WORKLOAD_LABELS]
        labels += [f"destination_{x}" for x in WORKLOAD_LABELS]
        self._total = prom.Counter(
            "osm_request_total",
            "HTTP requests, by source and destination workload and response code.",
            [*labels, "response_code", "side"],
            registry=self.registry,
        )
        self._duration = prom.Histogram(
            "osm_request_duration_ms",
            "HTTP request duration in milliseconds.",
            [*labels, "response_code", "side"],
            buckets=DURATION_BUCKETS_MS,
            registry=self.registry,
        )
        self._routes = prom.Counter(
            "smimesh_route_requests_total",
            "Requests per route: the TrafficSplit (or '') and the backend cluster chosen.",
            ["split", "cluster", "response_code"],
            registry=self.registry,
        )
        self._tcp = prom.Counter(
            "smimesh_tcp_bytes_total",
            "Bytes relayed on TCP connections, by cluster and direction.",
            ["cluster", "direction"],
            registry=self.registry,
        )
        self._denied = prom.Counter(
            "smimesh_inbound_denied_total",
            "Inbound requests and connections refused by authorization.",
            ["port", "protocol"],
            registry=self.registry,
        )
        # Counters count from here: readers of totals (the TrafficMetrics API) report the
        # window they cover as the time since this moment.
        prom.Gauge(
            "smimesh_sidecar_start_time_seconds",
            "When this sidecar's counters started, in seconds since the Unix epoch.",
            registry=self.registry,
        ).set_to_current_time()
        self._children: dict[tuple[Any, ...], Any] = {}

    def request(
        self, side: str, source: Workload, destination: Workload, code: int, millis: float
    ) -> None:
        key = (side, source, destination, code)
        pair = self._children.get(key)
        if pair is None:
            values = (
                source.namespace, source.kind, source.name, source.pod,
                destination.namespace, destination.kind, destination.name, destination.pod,
                str(code), side,
            )  # fmt: skip
            pair = (self._total.labels(*values), self._duration.labels(*values))
            if len(self._children) < 50_000:
                self._children[key] = pair
        pair[0].inc()
        pair[1].observe(millis)

    def route(self, split: str, cluster: str, code: int) -> None:
        key = ("route", split, cluster, code)
        child = self._children.get(key)
        if child is None:
            child = self._routes.labels(split, cluster, str(code))
            if len(self._children) < 50_000:
                self._children[key] = child
        child.inc()

    def tcp_bytes(self, cluster: str, sent: int, received: int) -> None:
        self._tcp.labels(cluster, "sent").inc(sent)
        self._tcp.labels(cluster, "received").inc(received)

    def denied(self, port: int, protocol: str) -> None:
        self._denied.labels(str(port), protocol).inc()

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
