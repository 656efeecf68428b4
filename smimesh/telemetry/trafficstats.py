"""Live traffic statistics from sidecars' own Prometheus metrics, no Prometheus needed: request
rate, success rate and p50/p99 latency per Service and per edge (caller -> callee).

Pure. Fed the text of two scrapes of each sidecar's admin `/metrics` (`osm_request_total` and
the histogram `osm_request_duration_ms`, as `smimesh.sidecar.metrics` writes them, labelled
by `smimesh.proxyconfig.workloads.Workload`) and the Services and Pods of the cluster; feeds
`kubectl smi stat|top` (`smimesh.cli.stats`) and the operator's TrafficMetrics API
(`smimesh.operator.trafficmetrics`). What counts, and why:

- A request is counted where it is answered, on the server side (`side="server"`), so a call
  between two meshed pods counts once. Requests a client sidecar could not deliver to any pod
  (no endpoint, connection refused) exist only on the client side, where the destination is
  the Service itself (`destination_kind="Service"`); they are added to that Service and edge.
- A Service's traffic is its selected pods' inbound traffic: a pod behind two Services (a
  canary root and its backend) counts toward both; the metrics do not say which was called.
- Success means not 5xx (what Flagger's `osm` success-rate check counts); quantiles are
  interpolated within histogram buckets the way PromQL's `histogram_quantile` does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import parser

from smimesh.proxyconfig import workloads

REQUESTS = "osm_request_total"
DURATION = "osm_request_duration_ms"
STARTED = "smimesh_sidecar_start_time_seconds"


class MetricsError(ValueError):
    """A scrape is not Prometheus text."""


@dataclass(frozen=True, order=True)
class SeriesKey:
    side: str
    source: workloads.Workload
    destination: workloads.Workload
    code: str

    @property
    def failed(self) -> bool:
        return self.code.startswith("5")


@dataclass(frozen=True)
class Series:
    """One labelled series: its request count and its cumulative latency buckets (le, count)."""

    requests: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()


Scrape = Mapping[SeriesKey, Series]


def _workload(labels: Mapping[str, str], prefix: str) -> workloads.Workload:
    return workloads.Workload(*(labels.get(f"{prefix}_{part}", "") for part in workloads.LABELS))


def _key(labels: Mapping[str, str]) -> SeriesKey:
    return SeriesKey(
        labels.get("side", ""),
        _workload(labels, "source"),
        _workload(labels, "destination"),
        labels.get("response_code", ""),
    )


def parse(text: str) -> dict[SeriesKey, Series]:
    """The request series of one sidecar's `/metrics`; raises MetricsError on garbage."""
    counts: dict[SeriesKey, float] = {}
    buckets: dict[SeriesKey, list[tuple[float, float]]] = defaultdict(list)
    try:
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == REQUESTS:
                    counts[_key(sample.labels)] = float(sample.value)
                elif sample.name == f"{DURATION}_bucket":
                    le = float(sample.labels["le"])
                    buckets[_key(sample.labels)].append((le, float(sample.value)))
    except (ValueError, KeyError, IndexError) as exc:
        raise MetricsError(f"not Prometheus text: {exc}") from exc
    return {
        key: Series(counts.get(key, 0.0), tuple(sorted(buckets.get(key, ()))))
        for key in counts.keys() | buckets.keys()
    }


def start_time(text: str) -> float | None:
    """When the sidecar's counters started (Unix seconds), if its `/metrics` says so."""
    try:
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == STARTED:
                    return float(sample.value)
    except (ValueError, KeyError, IndexError) as exc:
        raise MetricsError(f"not Prometheus text: {exc}") from exc
    return None


def delta(before: Scrape, after: Scrape) -> dict[SeriesKey, Series]:
    """What happened between two scrapes of one sidecar. A series new in `after` started at 0;
    one that went down was reset (the sidecar restarted), so all of `after` is new."""
    changes: dict[SeriesKey, Series] = {}
    for key, now in after.items():
        old = before.get(key)
        if old is None or now.requests < old.requests:
            diff = now
        else:
            earlier = dict(old.buckets)
            diff = Series(
                now.requests - old.requests,
                tuple((le, count - earlier.get(le, 0.0)) for le, count in now.buckets),
            )
        if diff.requests > 0:
            changes[key] = diff
    return changes


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """PromQL's `histogram_quantile` over cumulative (le, count) buckets: linear within the
    bucket holding the rank; the highest finite bound if it falls in +Inf; None if empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


@dataclass(frozen=True)
class Window:
    """What one sidecar saw over `seconds` (the delta of two scrapes)."""

    namespace: str
    pod: str
    seconds: float
    series: Scrape


@dataclass
class Traffic:
    """Requests over a window, with the measures `stat` shows."""

    requests: float = 0.0
    failures: float = 0.0
    rps: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def add(self, key: SeriesKey, series: Series, seconds: float) -> None:
        self.requests += series.requests
        self.failures += series.requests if key.failed else 0.0
        self.rps += series.requests / seconds if seconds > 0 else 0.0
        for le, count in series.buckets:
            self.buckets[le] = self.buckets.get(le, 0.0) + count

    @property
    def success_rate(self) -> float | None:
        return (self.requests - self.failures) / self.requests if self.requests else None

    def latency_ms(self, q: float) -> float | None:
        return quantile(q, sorted(self.buckets.items()))


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str]


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    meshed: bool


@dataclass
class ServiceTraffic:
    service: Service
    pods: int
    meshed: int
    traffic: Traffic


@dataclass
class EdgeTraffic:
    source: workloads.Workload
    destination: workloads.Workload
    traffic: Traffic


def selects(service: Service, pod: Pod) -> bool:
    """Kubernetes' rule: same namespace, a non-empty selector, every selector label matches."""
    return (
        service.namespace == pod.namespace
        and bool(service.selector)
        and all(pod.labels.get(k) == v for k, v in service.selector.items())
    )


def by_service(
    services: Iterable[Service], pods: Sequence[Pod], windows: Sequence[Window]
) -> list[ServiceTraffic]:
    """Each Service's traffic: its pods' server side plus undeliverable client-side requests."""
    by_pod = {(w.namespace, w.pod): w for w in windows}
    rows = []
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        selected = [pod for pod in pods if selects(service, pod)]
        traffic = Traffic()
        for pod in selected:
            window = by_pod.get((pod.namespace, pod.name))
            for key, series in (window.series if window else {}).items():
                if key.side == "server":
                    traffic.add(key, series, window.seconds if window else 0.0)
        target = workloads.Workload(service.namespace, "Service", service.name)
        for window in windows:
            for key, series in window.series.items():
                if key.side == "client" and key.destination.owner == target:
                    traffic.add(key, series, window.seconds)
        meshed = sum(1 for pod in selected if pod.meshed)
        rows.append(ServiceTraffic(service, len(selected), meshed, traffic))
    return rows


def by_edge(windows: Sequence[Window]) -> list[EdgeTraffic]:
    """Traffic between workloads: server-side series, plus client-side undeliverable ones."""
    edges: dict[tuple[workloads.Workload, workloads.Workload], Traffic] = defaultdict(Traffic)
    for window in windows:
        for key, series in window.series.items():
            counted = key.side == "server" or (
                key.side == "client" and key.destination.kind == "Service"
            )
            if counted:
                pair = (key.source.owner, key.destination.owner)
                edges[pair].add(key, series, window.seconds)
    return [EdgeTraffic(src, dst, traffic) for (src, dst), traffic in sorted(edges.items())]
