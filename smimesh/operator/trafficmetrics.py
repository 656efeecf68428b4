"""TrafficMetrics (`metrics.smi-spec.io/v1alpha1`) from what sidecars counted. Pure: no I/O,
no clock (the caller passes `now`).

Fed by `aggregating` with parsed scrapes of sidecars' `/metrics` (`smimesh.telemetry`, read by
`scraping`); returns `smimesh.smi.metrics` models, which `aggregating` serves. What a number
means:

- A resource's own TrafficMetrics is the traffic it *received*, counted by its sidecar(s) on
  the server side (edge `direction: from, side: server`, no edge resource, as the spec has
  it). A Deployment is every pod whose sidecar reports that workload (`destination_kind`,
  `destination_name`); a Namespace is every pod in it.
- Edges: `from`/`server` per caller seen by the resource's sidecars, and `to`/`client` per
  destination the resource called, counted by its own sidecars. Callers without a sidecar
  carry no identity: they count toward the totals but have no edge of their own.
- Counts are totals since each sidecar started (its counters are cumulative); `window` is
  the time since the earliest of those starts. Success is not 5xx. Latency quantiles are
  interpolated in the histogram buckets (as PromQL does), in seconds as Quantities (`"10m"`).
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from smimesh.proxyconfig import workloads
from smimesh.smi import metrics
from smimesh.telemetry import trafficstats

API_VERSION: Literal["metrics.smi-spec.io/v1alpha1"] = "metrics.smi-spec.io/v1alpha1"
Kind = Literal["Pod", "Deployment", "Namespace"]
QUANTILES = ((0.99, "p99_response_latency"), (0.9, "p90_response_latency"),
             (0.5, "p50_response_latency"))  # fmt: skip


@dataclass(frozen=True)
class Target:
    """What is asked about: a Pod, a Deployment or a Namespace (`namespace` None for those)."""

    kind: Kind
    name: str
    namespace: str | None = None

    def holds(self, workload: workloads.Workload) -> bool:
        """Whether a request's end (source or destination labels) is this resource."""
        if self.kind == "Namespace":
            return workload.namespace == self.name
        if workload.namespace != self.namespace:
            return False
        if self.kind == "Pod":
            return workload.pod == self.name
        return workload.kind == "Deployment" and workload.name == self.name

    def ref(self) -> metrics.ObjectRef:
        return metrics.ObjectRef(kind=self.kind, name=self.name, namespace=self.namespace)


@dataclass(frozen=True)
class Sidecar:
    """One sidecar's scrape: whose it is, its series, and when its counters started."""

    namespace: str
    pod: str
    series: trafficstats.Scrape
    started: float | None = None


def _peer(kind: Kind, workload: workloads.Workload) -> metrics.ObjectRef | None:
    """The other end of an edge, at the granularity of the resource asked about."""
    if kind == "Namespace":
        return (
            metrics.ObjectRef(kind="Namespace", name=workload.namespace)
            if workload.namespace
            else None
        )
    if workload.kind == "Service":
        return metrics.ObjectRef(kind="Service", name=workload.name, namespace=workload.namespace)
    if kind == "Pod" and workload.pod:
        return metrics.ObjectRef(kind="Pod", name=workload.pod, namespace=workload.namespace)
    if workload.kind and workload.name:
        return metrics.ObjectRef(
            kind=workload.kind, name=workload.name, namespace=workload.namespace
        )
    return None


def received(target: Target, sidecars: Iterable[Sidecar]) -> trafficstats.Traffic:
    """Everything the target answered, as its sidecars counted it (server side)."""
    traffic = trafficstats.Traffic()
    for sidecar in sidecars:
        for key, series in sidecar.series.items():
            if key.side == "server" and target.holds(key.destination):
                traffic.add(key, series, 0.0)
    return traffic


Direction = tuple[Literal["from", "to"], Literal["server", "client"]]


def edges(
    target: Target, sidecars: Iterable[Sidecar]
) -> list[tuple[Direction, metrics.ObjectRef, trafficstats.Traffic]]:
    """Traffic per caller (`from`, server side) and per destination called (`to`, client
    side), sorted; ends without an identity are left out (see the module docstring)."""
    found: dict[tuple[Direction, metrics.ObjectRef], trafficstats.Traffic] = defaultdict(
        trafficstats.Traffic
    )
    for sidecar in sidecars:
        for key, series in sidecar.series.items():
            direction: Direction
            if key.side == "server" and target.holds(key.destination):
                direction, peer = ("from", "server"), _peer(target.kind, key.source)
            elif key.side == "client" and target.holds(key.source):
                direction, peer = ("to", "client"), _peer(target.kind, key.destination)
            else:
                continue
            if peer is not None:
                found[(direction, peer)].add(key, series, 0.0)

    def order(item: tuple[Direction, metrics.ObjectRef]) -> tuple[str, ...]:
        (way, side), peer = item
        return (way, side, peer.namespace or "", peer.kind, peer.name or "")

    return [(way, peer, found[(way, peer)]) for way, peer in sorted(found, key=order)]


def seconds(milliseconds: float) -> str:
    """A latency in milliseconds as a Quantity of seconds, to the microsecond: `"10m"`."""
    micros = round(milliseconds * 1000)
    if micros == 0:
        return "0"
    return f"{micros // 1000}m" if micros % 1000 == 0 else f"{micros}u"


def measures(traffic: trafficstats.Traffic) -> list[metrics.Metric]:
    """Latency quantiles (when there were requests), then success and failure counts."""
    found = []
    for q, name in QUANTILES:
        latency = traffic.latency_ms(q)
        if latency is not None:
            found.append(metrics.Metric(name=name, unit="seconds", value=seconds(latency)))
    failures = round(traffic.failures)
    found.append(
        metrics.Metric(name="success_count", value=str(round(traffic.requests) - failures))
    )
    found.append(metrics.Metric(name="failure_count", value=str(failures)))
    return found


def window(sidecars: Sequence[Sidecar], now: datetime.datetime) -> str | None:
    """The time the totals cover: since the earliest sidecar start (None if none says)."""
    starts = [sidecar.started for sidecar in sidecars if sidecar.started is not None]
    if not starts:
        return None
    return f"{max(0, round(now.timestamp() - min(starts)))}s"


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metadata(target: Target, now: datetime.datetime) -> dict[str, str]:
    meta = {"name": target.name, "creationTimestamp": _stamp(now)}
    return meta | ({"namespace": target.namespace} if target.namespace else {})


def traffic_metrics(
    target: Target, sidecars: Sequence[Sidecar], *, now: datetime.datetime
) -> metrics.TrafficMetrics:
    """The target's TrafficMetrics: what it received, from every caller."""
    return metrics.TrafficMetrics.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "TrafficMetrics",
            "metadata": _metadata(target, now),
            "resource": target.ref(),
            "edge": metrics.Edge(direction="from", side="server"),
            "timestamp": now,
            "window": window(sidecars, now),
            "metrics": measures(received(target, sidecars)),
        }
    )


def _list(
    resource: metrics.ObjectRef, items: list[metrics.TrafficMetricsItem]
) -> metrics.TrafficMetricsList:
    return metrics.TrafficMetricsList.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "TrafficMetricsList",
            "metadata": {},
            "resource": resource,
            "items": items,
        }
    )


def _item(single: metrics.TrafficMetrics) -> metrics.TrafficMetricsItem:
    return metrics.TrafficMetricsItem.model_validate(single.to_wire())


def traffic_metrics_list(
    kind: Kind,
    namespace: str | None,
    targets: Iterable[Target],
    sidecars: Sequence[Sidecar],
    *,
    now: datetime.datetime,
) -> metrics.TrafficMetricsList:
    """One item per target (sorted by namespace and name), each as `traffic_metrics`."""
    ordered = sorted(targets, key=lambda t: (t.namespace or "", t.name))
    items = [_item(traffic_metrics(t, sidecars, now=now)) for t in ordered]
    return _list(metrics.ObjectRef(kind=kind, namespace=namespace), items)


def edge_list(
    target: Target, sidecars: Sequence[Sidecar], *, now: datetime.datetime
) -> metrics.TrafficMetricsList:
    """The `edges` subresource: one item per edge of the target."""
    span = window(sidecars, now)
    items = [
        metrics.TrafficMetricsItem.model_validate(
            {
                "apiVersion": API_VERSION,
                "kind": "TrafficMetrics",
                "metadata": _metadata(target, now),
                "resource": target.ref(),
                "edge": metrics.Edge(direction=way, side=side, resource=peer),
                "timestamp": now,
                "window": span,
                "metrics": measures(traffic),
            }
        )
        for (way, side), peer, traffic in edges(target, sidecars)
    ]
    return _list(target.ref(), items)


def deployments(namespace: str, sidecars: Iterable[Sidecar]) -> list[Target]:
    """The Deployments of `namespace` that sidecars report (as source or destination)."""
    names = {
        end.name
        for sidecar in sidecars
        for key in sidecar.series
        for end in (key.source, key.destination)
        if end.namespace == namespace and end.kind == "Deployment" and end.name
    }
    return [Target("Deployment", name, namespace) for name in sorted(names)]
