"""The real Flagger (v1.36.1, built from its module) drives canaries on smimesh, on real Pods,
judged by our metrics in a real Prometheus (issue #15): for each scenario, the share of
requests each version really answered at every step (the server sidecars' counters), the
Canary's own phases, and the TrafficSplit Flagger wrote. The load comes from inside the mesh.

The scenarios run at once, each in its own namespace, under one Flagger (`scenarios`); each
test asserts one scenario's outcome."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from smimesh._aio import waiting
from smimesh.testing import clusters, flagger, prometheus
from tests import guides
from tests.canary import canarying
from tests.testing import nodepods

pytestmark = pytest.mark.node

PORT = 80
TESTER = "canarytester"
"""Blue/green's second load generator, calling the canary Service directly."""
TIMEOUT = 360.0


@dataclass(frozen=True)
class Case:
    """One canary: Flagger's provider, the TrafficSplit version it writes, whether the new
    release is bad (half its answers are 500s) or slow (every answer `SLOW_MS` late), and
    whether it is blue/green."""

    name: str
    provider: str
    split_version: str
    bad: bool = False
    slow: bool = False
    blue_green: bool = False


CASES = (
    Case("osm-promote", "osm", "v1alpha2"),
    Case("osm-rollback", "osm", "v1alpha2", bad=True),
    Case("osm-slow-rollback", "osm", "v1alpha2", slow=True),
    Case("v1alpha3-promote", "smi:v1alpha3", "v1alpha3"),
    Case("v1alpha3-rollback", "smi:v1alpha3", "v1alpha3", bad=True),
    Case("linkerd-promote", "linkerd", "v1alpha1"),
    Case("linkerd-rollback", "linkerd", "v1alpha1", bad=True),
    Case("bluegreen", "osm", "v1alpha2", blue_green=True),
)


def _templates(namespace: str, prometheus_url: str) -> list[dict[str, Any]]:
    """docs/flagger.md's MetricTemplates, in `namespace`, asking our Prometheus."""
    found = [o for o in guides.objects("flagger.md") if o["kind"] == "MetricTemplate"]
    for template in found:
        template["metadata"]["namespace"] = namespace
        template["spec"]["provider"]["address"] = prometheus_url
    return found


def _canary(namespace: str, case: Case) -> dict[str, Any]:
    """docs/flagger.md's Canary for this case: its namespace, provider and app port; only the
    templates' checks for a provider other than `osm` (its built-in checks read other
    series), and the guide's blue/green analysis for blue/green."""
    canary = next(o for o in guides.objects("flagger.md") if o["kind"] == "Canary")
    canary["metadata"]["namespace"] = namespace
    spec = canary["spec"]
    spec["provider"] = case.provider
    spec["service"] = {"port": PORT, "targetPort": 8080}
    metrics = spec["analysis"]["metrics"]
    if case.provider != "osm":
        metrics = [m for m in metrics if "templateRef" in m]
    for metric in metrics:
        if "templateRef" in metric:
            metric["templateRef"]["namespace"] = namespace
    if case.blue_green:
        (patch,) = [d for block in guides.blocks("flagger.md") for d in block
                    if "iterations" in d.get("spec", {}).get("analysis", {})]  # fmt: skip
        spec["analysis"] = dict(patch["spec"]["analysis"])
    spec["analysis"]["metrics"] = metrics
    return canary


def _phase(cluster: clusters.Cluster, namespace: str) -> str | None:
    with cluster.api_client() as api:
        try:
            found = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "flagger.app", "v1beta1", namespace, "canaries", "podinfo"
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
    phase: str | None = found.get("status", {}).get("phase")
    return phase


def _await_phase(
    cluster: clusters.Cluster, namespace: str, wanted: set[str], *, timeout: float = TIMEOUT
) -> str:
    return waiting.eventually_sync(
        lambda: p if (p := _phase(cluster, namespace)) in wanted else None,
        timeout=timeout,
        message=lambda: (
            f"canary {namespace}/podinfo not {wanted} (now {_phase(cluster, namespace)}): "
            + cluster.kubectl("describe", "canary", "-n", namespace, "podinfo").stdout[-2500:]
        ),
        interval=0.5,
    )


def _release(cluster: clusters.Cluster, namespace: str, name: str) -> str:
    found = nodepods.read(cluster, namespace, "deployment", name)
    env = {
        e["name"]: e.get("value") for e in found["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    return str(env.get("SMIMESH_RELEASE"))


def run(
    cluster: clusters.Cluster, image: str, prometheus_url: str, case: Case
) -> canarying.Outcome:
    """One scenario, start to end: what was observed."""
    namespace = f"{case.name}-{os.urandom(3).hex()}"
    started = time.monotonic()
    canarying.create(cluster, namespace, canarying.account(namespace, "podinfo"),
                   canarying.deployment(namespace, "podinfo", image, env={"SMIMESH_RELEASE": "v1"}),
                   *_templates(namespace, prometheus_url), _canary(namespace, case))  # fmt: skip
    _await_phase(cluster, namespace, {"Initialized"})
    seconds = {"initialized": time.monotonic() - started}
    loaders = [
        canarying.account(namespace, canarying.LOADER),
        canarying.loader(namespace, f"http://podinfo.{namespace}:{PORT}/echo", image),
    ]
    if case.blue_green:  # the apex stays on the primary; the checks need traffic of their own
        tester = f"http://podinfo-canary.{namespace}:{PORT}/echo"
        loaders += [
            canarying.account(namespace, TESTER),
            canarying.loader(namespace, tester, image, name=TESTER),
        ]
    canarying.start_load(cluster, namespace, *loaders)

    def change() -> None:
        container = {"name": "app", "env": canarying.release_env(bad=case.bad, slow=case.slow)}
        patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
        patched = cluster.kubectl(
            "patch",
            "deployment",
            "podinfo",
            "-n",
            namespace,
            "--type=strategic",
            "-p",
            json.dumps(patch),
        )
        assert patched.returncode == 0, patched.stderr

    recorder = canarying.Recorder(
        cluster, namespace, "podinfo", case.split_version, lambda: _phase(cluster, namespace)
    )
    return canarying.observe(
        case.name, cluster, recorder, change,
        lambda: _await_phase(cluster, namespace, {"Succeeded", "Failed"}),
        release=lambda: _release(cluster, namespace, "podinfo-primary"), seconds=seconds,
        tester=TESTER if case.blue_green else None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(
    node_api: clusters.Cluster,
    mesh_on_node: str,
    prometheus_on_node: prometheus.Prometheus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[canarying.Futures]:
    """Flagger running; every case started at once, each in its own thread and namespace."""
    with flagger.running(
        node_api, tmp_path_factory.mktemp("flagger"), metrics_server=prometheus_on_node.url
    ) as controller:
        with canarying.all_at_once(
            lambda case: run(node_api, mesh_on_node, prometheus_on_node.url, case), CASES
        ) as futures:
            yield futures
        controller.check()


def _outcome(scenarios: canarying.Futures, name: str) -> canarying.Outcome:
    return canarying.outcome(scenarios, name, timeout=TIMEOUT * 2)


@pytest.mark.parametrize("name", ["osm-promote", "v1alpha3-promote", "linkerd-promote"])
def test_a_healthy_canary_is_promoted_step_by_step_with_no_failed_request(
    scenarios: canarying.Futures, name: str
) -> None:
    outcome = _outcome(scenarios, name)
    phases = outcome.phases
    assert phases[-1] == "Succeeded", phases
    assert "Promoting" in phases, phases
    assert "Failed" not in phases, phases
    canary_weights = [s.weight("podinfo-canary") for s in outcome.recorder.steps]
    assert {25, 50} <= set(canary_weights), canary_weights
    canarying.assert_shares(outcome.recorder.steps)
    assert outcome.loaded["failed"] == 0, outcome.failures()
    assert outcome.loaded["ok"] > 200, outcome.loaded
    assert outcome.release == "v2"
    assert outcome.recorder.steps[-1].weights == (("podinfo-canary", 0), ("podinfo-primary", 100))


@pytest.mark.parametrize("name", ["osm-rollback", "v1alpha3-rollback", "linkerd-rollback"])
def test_a_failing_canary_is_rolled_back_and_traffic_returns_to_the_primary(
    scenarios: canarying.Futures, name: str
) -> None:
    outcome = _outcome(scenarios, name)
    phases = outcome.phases
    assert phases[-1] == "Failed", phases
    assert "Promoting" not in phases, phases
    canarying.assert_shares(outcome.recorder.steps)
    canarying.assert_bad_release_failed(outcome, "podinfo-canary")
    assert outcome.release == "v1"
    assert outcome.recorder.steps[-1].weights == (("podinfo-canary", 0), ("podinfo-primary", 100))
    assert outcome.after_end["failed"] == 0, outcome.after_end
    assert outcome.after_end["ok"] > 0, outcome.after_end


def test_a_slow_canary_is_rolled_back_by_the_latency_checks_without_a_failed_request(
    scenarios: canarying.Futures,
) -> None:
    outcome = _outcome(scenarios, "osm-slow-rollback")
    assert outcome.phases[-1] == "Failed", outcome.phases
    assert "Promoting" not in outcome.phases, outcome.phases
    canarying.assert_shares(outcome.recorder.steps)
    assert outcome.loaded["failed"] == 0, outcome.failures()  # slow, never wrong
    assert outcome.release == "v1"
    assert outcome.recorder.steps[-1].weights == (("podinfo-canary", 0), ("podinfo-primary", 100))


def test_blue_green_keeps_the_apex_on_the_primary_while_iterations_test_the_canary(
    scenarios: canarying.Futures,
) -> None:
    outcome = _outcome(scenarios, "bluegreen")
    phases = outcome.phases
    assert phases[-1] == "Succeeded", phases
    assert "Promoting" in phases, phases
    canarying.assert_shares(outcome.recorder.steps)
    canary_weights = {s.weight("podinfo-canary") for s in outcome.recorder.steps}
    assert canary_weights <= {0, 100}, canary_weights  # all or nothing: no weight steps
    assert outcome.loaded["failed"] == 0, outcome.failures()
    # The tester calls the canary Service directly: while Flagger keeps the canary at zero
    # replicas (before the change, after the promotion) that Service has no endpoint (503).
    assert outcome.tested["ok"] > 0, outcome.tested
    assert set(outcome.tested) <= {"ok", "failed", "200", "503"}, outcome.tested
    assert outcome.release == "v2"


def test_prometheus_scraped_every_scenario_pod_through_kubernetes_discovery(
    scenarios: canarying.Futures, prometheus_on_node: prometheus.Prometheus
) -> None:
    """The numbers Flagger judged came from our scrape job: every scenario's Pods (app,
    primary, canary, loaders) were discovered through the apiserver and scraped."""
    for name in scenarios:
        _outcome(scenarios, name)  # every scenario done
    seen = prometheus_on_node.query(
        'count by (namespace) (max_over_time(up{job="smimesh-sidecars"}[15m]) == 1)'
    )
    scraped = {labels["namespace"]: count for labels, count in seen}
    for case in CASES:
        mine = [count for namespace, count in scraped.items() if namespace.startswith(case.name)]
        # primary, canary and the load generator at least (every revision's Pods count)
        assert mine, (case.name, scraped)
        assert max(mine) >= 3, (case.name, scraped)
    (served,) = prometheus_on_node.query(
        'sum(max_over_time(osm_request_total{side="server"}[15m]))'
    )
    assert served[1] > 1000 * len(CASES), served
