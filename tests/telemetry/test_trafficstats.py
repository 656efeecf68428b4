"""Traffic statistics from sidecar metrics: scrapes rendered by the sidecar's own Telemetry
(the real exposition, not hand-written text), deltas, grouping and PromQL-style quantiles."""

from __future__ import annotations

import time

import pytest

from smimesh.proxyconfig import workloads
from smimesh.sidecar import metrics
from smimesh.telemetry import trafficstats

pytestmark = pytest.mark.fast

A = workloads.Workload("shop", "Deployment", "web", "web-1")
B = workloads.Workload("shop", "Deployment", "api", "api-1")
B2 = workloads.Workload("shop", "Deployment", "api", "api-2")

API = trafficstats.Service("shop", "api", {"app": "api"})
GONE = trafficstats.Service("shop", "gone", {"app": "gone"})
PODS = [
    trafficstats.Pod("shop", "web-1", {"app": "web"}, meshed=True),
    trafficstats.Pod("shop", "api-1", {"app": "api"}, meshed=True),
    trafficstats.Pod("shop", "api-2", {"app": "api"}, meshed=True),
    trafficstats.Pod("shop", "api-legacy", {"app": "api"}, meshed=False),
]


def scrape(telemetry: metrics.Telemetry) -> trafficstats.Scrape:
    return trafficstats.parse(telemetry.render().decode())


def test_quantiles_interpolate_within_buckets_like_promql() -> None:
    buckets = [(1.0, 0.0), (5.0, 10.0), (10.0, 20.0), (float("inf"), 20.0)]
    assert trafficstats.quantile(0.5, buckets) == 5.0
    assert trafficstats.quantile(0.75, buckets) == 7.5
    assert trafficstats.quantile(0.25, buckets) == 3.0


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert trafficstats.quantile(0.99, [(5.0, 1.0), (float("inf"), 100.0)]) == 5.0


def test_no_requests_have_no_quantile() -> None:
    assert trafficstats.quantile(0.5, []) is None
    assert trafficstats.quantile(0.5, [(5.0, 0.0), (float("inf"), 0.0)]) is None


def test_a_window_counts_only_what_happened_between_the_scrapes() -> None:
    api1 = metrics.Telemetry()
    for _ in range(7):
        api1.request("server", A, B, 200, 3.0)
    before = scrape(api1)
    for _ in range(30):
        api1.request("server", A, B, 200, 3.0)
    for _ in range(10):
        api1.request("server", A, B, 503, 40.0)
    window = trafficstats.delta(before, scrape(api1))

    [traffic] = trafficstats.by_service(
        [API], PODS, [trafficstats.Window("shop", "api-1", 2.0, window)]
    )
    assert (traffic.pods, traffic.meshed) == (3, 2)
    assert traffic.traffic.requests == 40
    assert traffic.traffic.rps == 20.0
    assert traffic.traffic.success_rate == 0.75
    assert traffic.traffic.latency_ms(0.5) == pytest.approx(2 + 3 * (20 / 30))  # in (2, 5]
    assert traffic.traffic.latency_ms(0.99) == pytest.approx(25 + 25 * (39.6 - 30) / 10)


def test_a_restarted_sidecar_counts_from_zero() -> None:
    old = metrics.Telemetry()
    for _ in range(50):
        old.request("server", A, B, 200, 1.0)
    restarted = metrics.Telemetry()
    for _ in range(4):
        restarted.request("server", A, B, 200, 1.0)
    [(key, series)] = trafficstats.delta(scrape(old), scrape(restarted)).items()
    assert key.side == "server"
    assert series.requests == 4


def test_a_service_sums_its_pods_and_adds_what_callers_could_not_deliver() -> None:
    web, api1, api2 = metrics.Telemetry(), metrics.Telemetry(), metrics.Telemetry()
    empty = {name: scrape(t) for name, t in (("web-1", web), ("api-1", api1), ("api-2", api2))}
    for _ in range(10):
        web.request("client", A, B, 200, 2.0)  # the caller's view: not counted again
        api1.request("server", A, B, 200, 2.0)
    for _ in range(30):
        api2.request("server", A, B2, 200, 2.0)
    for _ in range(5):
        web.request("client", A, workloads.Workload("shop", "Service", "gone"), 503, 0.5)
    now = {"web-1": scrape(web), "api-1": scrape(api1), "api-2": scrape(api2)}
    windows = [
        trafficstats.Window("shop", pod, 5.0, trafficstats.delta(empty[pod], now[pod]))
        for pod in now
    ]

    api, gone = trafficstats.by_service([GONE, API], PODS, windows)
    assert api.service is API
    assert (api.traffic.requests, api.traffic.rps, api.traffic.success_rate) == (40, 8.0, 1.0)
    assert gone.service is GONE
    assert (gone.pods, gone.traffic.requests, gone.traffic.success_rate) == (0, 5, 0.0)

    edges = {(str(e.source), str(e.destination)): e.traffic for e in trafficstats.by_edge(windows)}
    assert set(edges) == {
        ("shop/deployment/web", "shop/deployment/api"),
        ("shop/deployment/web", "shop/svc/gone"),
    }
    assert edges["shop/deployment/web", "shop/deployment/api"].requests == 40
    assert edges["shop/deployment/web", "shop/svc/gone"].failures == 5


def test_a_pod_behind_two_services_counts_toward_both() -> None:
    api1 = metrics.Telemetry()
    before = scrape(api1)
    api1.request("server", A, B, 200, 1.0)
    window = trafficstats.Window("shop", "api-1", 1.0, trafficstats.delta(before, scrape(api1)))
    root = trafficstats.Service("shop", "root", {"tier": "backend"})
    pods = [trafficstats.Pod("shop", "api-1", {"app": "api", "tier": "backend"}, meshed=True)]
    rows = trafficstats.by_service([API, root], pods, [window])
    assert [row.traffic.requests for row in rows] == [1, 1]


def test_a_service_without_a_selector_or_in_another_namespace_selects_nothing() -> None:
    pod = trafficstats.Pod("shop", "api-1", {"app": "api"}, meshed=True)
    assert not trafficstats.selects(trafficstats.Service("shop", "external", {}), pod)
    assert not trafficstats.selects(trafficstats.Service("other", "api", {"app": "api"}), pod)
    assert trafficstats.selects(API, pod)


def test_garbage_is_not_prometheus_text() -> None:
    with pytest.raises(trafficstats.MetricsError):
        trafficstats.parse('osm_request_total{side="server" 1\n')


def test_a_sidecar_says_when_its_counters_started() -> None:
    before = time.time()
    text = metrics.Telemetry().render().decode()
    started = trafficstats.start_time(text)
    assert started is not None
    assert before - 1 <= started <= time.time() + 1
    assert trafficstats.start_time("# no sidecar here\n") is None
