"""`kubectl smi stat` and `kubectl smi top`: live request rate, success rate and p50/p99
latency per Service and per edge, read straight from the sidecars (no Prometheus needed).

Registered by `smimesh.cli.main`. Finds meshed pods and scrapes their metrics-only port
(`/metrics`) through `smimesh.cli.meshedpods`; the arithmetic (parsing, deltas, grouping,
quantiles) is the pure `smimesh.telemetry.trafficstats`. `stat` scrapes twice, `--window`
seconds apart, and prints once; `top` keeps scraping every `--interval` seconds and redraws
with rich Live.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from kubernetes import client
from rich.console import Group
from rich.live import Live
from rich.text import Text

from smimesh.cli import apistats, connecting, meshedpods, rendering
from smimesh.proxyconfig import workloads
from smimesh.telemetry import trafficstats

Window = Annotated[
    float,
    typer.Option("--window", "-w", help="Seconds between the two scrapes.", min=0.2, max=3600),
]


@dataclass(frozen=True)
class Scraped:
    """One round of scrapes: when it was taken, what answered, and what did not."""

    at: float
    scrapes: dict[meshedpods.Pod, trafficstats.Scrape]
    errors: dict[meshedpods.Pod, str]


@dataclass(frozen=True)
class Scope:
    """What is measured: the Services and pods in the chosen namespace(s)."""

    where: str | None
    services: list[trafficstats.Service]
    pods: list[meshedpods.Pod]

    @property
    def meshed(self) -> list[meshedpods.Pod]:
        return [pod for pod in self.pods if pod.meshed and pod.ip]


def _scope(api: client.ApiClient, where: str | None) -> Scope:
    core = client.CoreV1Api(api)
    timeout = connecting.REQUEST_TIMEOUT
    listed = (
        core.list_service_for_all_namespaces(_request_timeout=timeout)
        if where is None
        else core.list_namespaced_service(where, _request_timeout=timeout)
    )
    services = [
        trafficstats.Service(
            str(item.metadata.namespace), str(item.metadata.name), dict(item.spec.selector or {})
        )
        for item in listed.items
        if item.metadata and item.spec and item.spec.selector
    ]
    return Scope(where, services, meshedpods.list_pods(api, where))


def scrape(pods: Sequence[meshedpods.Pod], *, port: int) -> Scraped:
    """Every pod's `/metrics` at once, parsed."""
    started = time.monotonic()
    answers = meshedpods.get_all(pods, "/metrics", port=port)
    at = (started + time.monotonic()) / 2
    scrapes: dict[meshedpods.Pod, trafficstats.Scrape] = {}
    errors: dict[meshedpods.Pod, str] = {}
    for pod, answer in answers.items():
        if isinstance(answer, meshedpods.AdminError):
            errors[pod] = str(answer)
            continue
        try:
            scrapes[pod] = trafficstats.parse(answer)
        except trafficstats.MetricsError as exc:
            errors[pod] = f"{pod}: {exc}"
    return Scraped(at, scrapes, errors)


def measure(scope: Scope, before: Scraped, after: Scraped) -> dict[str, Any]:
    """The window between two rounds of scrapes as plain data (what `-o json` prints)."""
    seconds = max(after.at - before.at, 1e-9)
    windows = [
        trafficstats.Window(pod.namespace, pod.name, seconds, trafficstats.delta(old, new))
        for pod, new in after.scrapes.items()
        if (old := before.scrapes.get(pod)) is not None
    ]
    pods = [trafficstats.Pod(p.namespace, p.name, p.labels, p.meshed) for p in scope.pods]
    services = trafficstats.by_service(scope.services, pods, windows)
    edges = trafficstats.by_edge(windows)
    unreachable = sorted({*before.errors.values(), *after.errors.values()})
    return {
        "windowSeconds": round(seconds, 3),
        "services": [
            {
                "namespace": row.service.namespace,
                "name": row.service.name,
                "pods": row.pods,
                "meshedPods": row.meshed,
                **_measures(row.traffic),
            }
            for row in services
        ],
        "edges": [
            {
                "source": _workload(row.source),
                "destination": _workload(row.destination),
                **_measures(row.traffic),
            }
            for row in edges
        ],
        "unreachable": unreachable,
    }


def _workload(workload: workloads.Workload) -> dict[str, str]:
    return {"namespace": workload.namespace, "kind": workload.kind, "name": workload.name}


def _measures(traffic: trafficstats.Traffic) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "requests": int(traffic.requests),
        "rps": round(traffic.rps, 3),
        "successRate": rounded(traffic.success_rate),
        "p50Ms": rounded(traffic.latency_ms(0.5)),
        "p99Ms": rounded(traffic.latency_ms(0.99)),
    }


def _cells(data: dict[str, Any]) -> list[str]:
    def millis(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"

    rate = data["successRate"]
    return [
        "-" if rate is None else f"{rate * 100:.2f}%",
        f"{data['rps']:.1f}",
        millis(data["p50Ms"]),
        millis(data["p99Ms"]),
    ]


def _name(workload: dict[str, str]) -> str:
    return str(workloads.Workload(workload["namespace"], workload["kind"], workload["name"]))


def tables(data: dict[str, Any], *, all_namespaces: bool) -> Group:
    """The Services table and the edges table, with their titles."""
    measures = ["success", "rps", "latency_p50", "latency_p99"]
    service_rows = [
        [
            *([row["namespace"]] if all_namespaces else []),
            row["name"],
            f"{row['meshedPods']}/{row['pods']}",
            *_cells(row),
        ]
        for row in data["services"]
    ]
    service_headers = [*(["namespace"] if all_namespaces else []), "service", "meshed", *measures]
    edge_rows = [
        [_name(row["source"]), _name(row["destination"]), *_cells(row)] for row in data["edges"]
    ]
    window = f"over the last {data['windowSeconds']:.1f}s"
    parts: list[Any] = [
        Text(f"Services ({window}):"),
        rendering.build(service_headers, service_rows),
        Text(""),
        Text(f"Edges ({window}):"),
        rendering.build(["source", "destination", *measures], edge_rows)
        if edge_rows
        else Text("  no requests"),
    ]
    return Group(*parts)


def _prepare(
    namespace: str | None,
    all_namespaces: bool,
    kubeconfig: connecting.Kubeconfig,
    context: connecting.Context,
) -> Scope:
    where = connecting.namespaces(namespace, all_namespaces, kubeconfig=kubeconfig, context=context)
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        return _scope(api, where)


def _warn(data: dict[str, Any], scope: Scope) -> None:
    for error in data["unreachable"]:
        typer.echo(f"warning: {error}", err=True)
    if scope.meshed and len(data["unreachable"]) >= len(scope.meshed):
        connecting.fail("no sidecar answered on its metrics port", connecting.FAILED)


def stat(
    namespace: connecting.Namespace = None,
    all_namespaces: connecting.AllNamespaces = False,
    window: Window = 5.0,
    output: rendering.Output = rendering.Format.table,
    metrics_port: meshedpods.MetricsPort = meshedpods.METRICS_PORT,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
    from_api: Annotated[
        bool,
        typer.Option(
            "--from-api",
            help="Per-pod totals since each sidecar started, from the operator's TrafficMetrics "
            "API through the apiserver (no route to pod IPs needed; --window is ignored).",
        ),
    ] = False,
) -> None:
    """Show request rate, success rate and p50/p99 latency per Service and per edge.

    Scrapes every meshed pod's sidecar (metrics port, /metrics) twice, --window seconds apart;
    no Prometheus needed. Requests are counted where they are answered (server side), plus
    those a caller's sidecar could not deliver at all (they count against the Service).
    Success means not 5xx. A pod behind two Services counts toward both.
    Exit code 0 when shown, 1 if no sidecar answered, 2 if the cluster cannot be reached.

    Example: kubectl smi stat -n shop --window 10 -o json
    """
    if from_api:
        apistats.stat(namespace, all_namespaces, output, kubeconfig, context)
        return
    scope = _prepare(namespace, all_namespaces, kubeconfig, context)
    if not scope.meshed:
        typer.echo("note: no meshed pods with an IP in scope; nothing to measure", err=True)
    before = scrape(scope.meshed, port=metrics_port)
    time.sleep(window)
    after = scrape(scope.meshed, port=metrics_port)
    data = measure(scope, before, after)
    _warn(data, scope)
    if output is not rendering.Format.table:
        rendering.documents(data, output)
        return
    rendering.console().print(tables(data, all_namespaces=scope.where is None))


def top(
    namespace: connecting.Namespace = None,
    all_namespaces: connecting.AllNamespaces = False,
    interval: Annotated[
        float,
        typer.Option("--interval", help="Seconds between refreshes.", min=0.2, max=3600),
    ] = 2.0,
    iterations: Annotated[
        int,
        typer.Option(
            "--iterations", help="Stop after this many refreshes (0: until Ctrl-C).", min=0
        ),
    ] = 0,
    metrics_port: meshedpods.MetricsPort = meshedpods.METRICS_PORT,
    kubeconfig: connecting.Kubeconfig = None,
    context: connecting.Context = None,
) -> None:
    """Like `stat`, redrawn every --interval seconds until Ctrl-C.

    Each refresh shows the traffic since the previous one. The Services and pods in scope
    are looked up once, at the start.
    Exit code 0 (also on Ctrl-C), 1 if no sidecar answered, 2 if the cluster cannot be reached.

    Example: kubectl smi top -n shop --interval 1
    """
    scope = _prepare(namespace, all_namespaces, kubeconfig, context)
    wide = scope.where is None
    data: dict[str, Any] | None = None
    done = 0
    try:
        previous = scrape(scope.meshed, port=metrics_port)
        with Live(
            Text("waiting for the first interval..."),
            console=rendering.console(),
            auto_refresh=False,
        ) as live:
            while iterations == 0 or done < iterations:
                time.sleep(interval)
                current = scrape(scope.meshed, port=metrics_port)
                data = measure(scope, previous, current)
                previous = current
                live.update(tables(data, all_namespaces=wide), refresh=True)
                done += 1
    except KeyboardInterrupt:
        return
    if data is not None:
        _warn(data, scope)


def register(app: typer.Typer) -> None:
    app.command("stat")(connecting.guarded(stat))
    app.command("top")(connecting.guarded(top))
