"""`kubectl smi stat --from-api`: per-pod request counts and latency from the SMI
TrafficMetrics API (`metrics.smi-spec.io/v1alpha1`) the operator serves through the apiserver,
instead of scraping the sidecars from here (which needs a route to every pod IP).

Called by `smimesh.cli.stats.stat`; reads a TrafficMetricsList over the apiserver connection
(so RBAC decides who may read it), parses it with `smimesh.smi.metrics` and prints with
`rendering`. Counts are totals since each sidecar started (the API's `window`), not a rate.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
from kubernetes import client

from smimesh.cli import connecting, rendering
from smimesh.smi import metrics

API = "/apis/metrics.smi-spec.io/v1alpha1"


def fetch(api: client.ApiClient, namespace: str | None) -> metrics.TrafficMetricsList:
    """The TrafficMetricsList of pods in `namespace` (None: all); exits 1 saying why not."""
    path = f"{API}/namespaces/{namespace}/pods" if namespace else f"{API}/pods"
    method, url, headers, data, _ = api.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = api.call_api(method, url, headers, data, _request_timeout=connecting.REQUEST_TIMEOUT)
    raw: bytes = response.read()  # type: ignore[no-untyped-call]
    if response.status != 200:
        try:
            message = json.loads(raw).get("message") or ""
        except ValueError:
            message = raw.decode(errors="replace").strip()[:300]
        hint = ""
        if response.status in (404, 503):
            hint = " (is the operator running? kubectl get apiservice v1alpha1.metrics.smi-spec.io)"
        connecting.fail(
            f"the TrafficMetrics API answered {response.status}: {message}{hint}", connecting.FAILED
        )
    try:
        return metrics.TrafficMetricsList.model_validate(json.loads(raw))
    except (ValueError, pydantic.ValidationError) as exc:
        connecting.fail(
            f"the TrafficMetrics API sent no TrafficMetricsList: {exc}", connecting.FAILED
        )


def _millis(item: metrics.TrafficMetricsItem, name: str) -> float | None:
    found = next((m for m in item.metrics if m.name == name), None)
    return None if found is None else round(float(found.value.value) * 1000, 3)


def _count(item: metrics.TrafficMetricsItem, name: str) -> int:
    found = next((m for m in item.metrics if m.name == name), None)
    return 0 if found is None else int(found.value.value)


def rows(listed: metrics.TrafficMetricsList) -> list[dict[str, Any]]:
    """One plain row per pod: what `-o json|yaml` prints."""
    found = []
    for item in listed.items:
        ok, failed = _count(item, "success_count"), _count(item, "failure_count")
        found.append(
            {
                "namespace": item.resource.namespace,
                "pod": item.resource.name,
                "success": ok,
                "failure": failed,
                "successRate": round(ok / (ok + failed), 4) if ok + failed else None,
                "p50Ms": _millis(item, "p50_response_latency"),
                "p99Ms": _millis(item, "p99_response_latency"),
                "window": item.window,
            }
        )
    return found


def _cells(row: dict[str, Any]) -> list[str]:
    def millis(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}ms"

    rate = row["successRate"]
    return [
        "-" if rate is None else f"{rate * 100:.2f}%",
        str(row["success"] + row["failure"]),
        millis(row["p50Ms"]),
        millis(row["p99Ms"]),
        row["window"] or "-",
    ]


def stat(
    namespace: str | None,
    all_namespaces: bool,
    output: rendering.Format,
    kubeconfig: connecting.Kubeconfig,
    context: connecting.Context,
) -> None:
    where = connecting.namespaces(namespace, all_namespaces, kubeconfig=kubeconfig, context=context)
    with connecting.api_client(kubeconfig, context) as api:
        connecting.require_reachable(api)
        found = rows(fetch(api, where))
    if output is not rendering.Format.table:
        rendering.documents({"pods": found}, output)
        return
    headers = [*(["namespace"] if where is None else []), "pod", "success", "requests",
               "latency_p50", "latency_p99", "since"]  # fmt: skip
    rendering.table(
        headers,
        [
            [*([row["namespace"]] if where is None else []), row["pod"], *_cells(row)]
            for row in found
        ],
    )
