"""The real Argo Rollouts controller (v1.10.0, built through hack/argo-rollouts) drives canary
Rollouts on smimesh with its SMI traffic router, on real Pods, an AnalysisTemplate judging the
canary by our metrics in a real Prometheus (issue #15). One controller per TrafficSplit API
version it can write (v1alpha1, its default; v1alpha2 and v1alpha3 with
`--traffic-split-api-version`), each owning its Rollouts by instance id.

The Services, the Rollout's strategy and the AnalysisTemplate are docs/argo-rollouts.md's own;
the test changes only their namespace, the container (the test app), the Prometheus address
and the instance label (a controller with an instance id sees only Rollouts and
AnalysisTemplates that carry it). Every scenario runs at once in its own namespace; each
test asserts one scenario: the share each ReplicaSet's Pods really answered at every step,
the Rollout's phase, and the split Argo wrote."""

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
from smimesh.testing import argorollouts, clusters, prometheus
from tests import guides
from tests.canary import canarying
from tests.testing import nodepods

pytestmark = pytest.mark.node

NAME = "rollout-example"
SPLIT = "rollout-example-traffic-split"
TIMEOUT = 300.0


@dataclass(frozen=True)
class Case:
    name: str
    version: str
    bad: bool = False


CASES = tuple(
    Case(f"argo-{version}-{outcome}", version, bad=outcome == "abort")
    for version in ("v1alpha1", "v1alpha2", "v1alpha3")
    for outcome in ("promote", "abort")
)


def _guide(namespace: str, image: str, prometheus_url: str, case: Case) -> list[dict[str, Any]]:
    """docs/argo-rollouts.md's Services, Rollout and AnalysisTemplate, for this scenario."""
    found = [o for o in guides.objects("argo-rollouts.md")
             if o["kind"] in ("Service", "Rollout", "AnalysisTemplate")]  # fmt: skip
    app = canarying.deployment(namespace, NAME, image, env={"SMIMESH_RELEASE": "v1"})
    for thing in found:
        thing["metadata"]["namespace"] = namespace
        if thing["kind"] != "Service":  # the controller sees only its instance's objects
            labels = {argorollouts.INSTANCE_LABEL: argorollouts.instance(case.version)}
            thing["metadata"]["labels"] = labels
        if thing["kind"] == "Rollout":
            thing["spec"]["template"] = app["spec"]["template"]
        elif thing["kind"] == "AnalysisTemplate":
            for metric in thing["spec"]["metrics"]:
                metric["provider"]["prometheus"]["address"] = prometheus_url
    return found


def _rollout(cluster: clusters.Cluster, namespace: str) -> dict[str, Any] | None:
    with cluster.api_client() as api:
        try:
            found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "rollouts", NAME
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
    return found


def _phase(cluster: clusters.Cluster, namespace: str) -> str | None:
    """The Rollout's phase, `/aborted` added when it was aborted."""
    found = _rollout(cluster, namespace)
    if found is None or "phase" not in found.get("status", {}):
        return None
    status = found["status"]
    return f"{status['phase']}{'/aborted' if status.get('abort') else ''}"


def _await(cluster: clusters.Cluster, namespace: str, wanted: set[str]) -> str:
    return waiting.eventually_sync(
        lambda: p if (p := _phase(cluster, namespace)) in wanted else None,
        timeout=TIMEOUT,
        message=lambda: (
            f"rollout {namespace}/{NAME} not {wanted} (now {_phase(cluster, namespace)}): "
            + json.dumps((_rollout(cluster, namespace) or {}).get("status"))[-2500:]
        ),
        interval=0.5,
    )


def _stable_release(cluster: clusters.Cluster, namespace: str) -> str:
    """SMIMESH_RELEASE of the Pods the stable Service selects."""
    service = nodepods.read(cluster, namespace, "service", "stable-svc")
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    done = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    assert done.returncode == 0, done.stderr
    releases = set()
    for pod in json.loads(done.stdout)["items"]:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        releases.add(str(env.get("SMIMESH_RELEASE")))
    return ",".join(sorted(releases))


def run(
    cluster: clusters.Cluster, image: str, prometheus_url: str, case: Case
) -> canarying.Outcome:
    """One scenario, start to end: what was observed."""
    namespace = f"{case.name}-{os.urandom(3).hex()}"
    started = time.monotonic()
    canarying.create(cluster, namespace, canarying.account(namespace, NAME),
                   *_guide(namespace, image, prometheus_url, case))  # fmt: skip
    _await(cluster, namespace, {"Healthy"})
    seconds = {"healthy": time.monotonic() - started}
    url = f"http://root-svc.{namespace}/echo"
    canarying.start_load(
        cluster,
        namespace,
        canarying.account(namespace, canarying.LOADER),
        canarying.loader(namespace, url, image),
    )

    def change() -> None:
        # A Rollout is a custom resource: a JSON merge patch replaces the container list.
        rollout = next(
            o for o in _guide(namespace, image, prometheus_url, case) if o["kind"] == "Rollout"
        )
        (app,) = rollout["spec"]["template"]["spec"]["containers"]
        app["env"] = [e for e in app["env"] if e["name"] != "SMIMESH_RELEASE"]
        app["env"] += canarying.release_env(bad=case.bad)
        patch = {"spec": {"template": {"spec": {"containers": [app]}}}}
        patched = cluster.kubectl(
            "patch", "rollout", NAME, "-n", namespace, "--type=merge", "-p", json.dumps(patch)
        )
        assert patched.returncode == 0, patched.stderr

    def ended() -> str:
        # Healthy again means promoted; an aborted rollout is Degraded.
        waiting.eventually_sync(
            lambda: _phase(cluster, namespace) != "Healthy" or None,
            timeout=60,
            message="the Rollout never left Healthy after the change",
            interval=0.2,
        )
        return _await(cluster, namespace, {"Healthy", "Degraded/aborted"})

    recorder = canarying.Recorder(
        cluster, namespace, SPLIT, case.version, lambda: _phase(cluster, namespace)
    )
    return canarying.observe(
        case.name, cluster, recorder, change, ended,
        release=lambda: _stable_release(cluster, namespace), seconds=seconds,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scenarios(
    node_api: clusters.Cluster,
    mesh_on_node: str,
    prometheus_on_node: prometheus.Prometheus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[canarying.Futures]:
    """A controller per API version; every case started at once."""
    versions = sorted({case.version for case in CASES})
    with argorollouts.running(
        node_api, tmp_path_factory.mktemp("argo"), traffic_split_api_versions=versions
    ) as controllers:
        with canarying.all_at_once(
            lambda case: run(node_api, mesh_on_node, prometheus_on_node.url, case), CASES
        ) as futures:
            yield futures
        for controller in controllers.values():
            controller.check()


def _outcome(scenarios: canarying.Futures, name: str) -> canarying.Outcome:
    return canarying.outcome(scenarios, name, timeout=TIMEOUT * 2)


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2", "v1alpha3"])
def test_a_healthy_rollout_is_promoted_step_by_step_with_no_failed_request(
    scenarios: canarying.Futures, version: str
) -> None:
    outcome = _outcome(scenarios, f"argo-{version}-promote")
    phases = outcome.phases
    assert phases[-1] == "Healthy", phases
    assert "Progressing" in phases or "Paused" in phases, phases
    assert not any("aborted" in p for p in phases), phases
    weights = [s.weight("canary-svc") for s in outcome.recorder.steps]
    assert {25, 50} <= set(weights), weights
    canarying.assert_shares(outcome.recorder.steps)
    assert outcome.loaded["failed"] == 0, outcome.failures()
    assert outcome.loaded["ok"] > 200, outcome.loaded
    assert outcome.release == "v2"
    assert outcome.recorder.steps[-1].weight("canary-svc") == 0


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2", "v1alpha3"])
def test_a_failing_rollout_is_aborted_by_the_analysis_and_traffic_returns_to_stable(
    scenarios: canarying.Futures, version: str
) -> None:
    outcome = _outcome(scenarios, f"argo-{version}-abort")
    phases = outcome.phases
    assert phases[-1] == "Degraded/aborted", phases
    canarying.assert_shares(outcome.recorder.steps)
    canarying.assert_bad_release_failed(outcome, "canary-svc")
    assert outcome.release == "v1"
    assert outcome.recorder.steps[-1].weight("canary-svc") == 0
    assert outcome.after_end["failed"] == 0, outcome.after_end
    assert outcome.after_end["ok"] > 0, outcome.after_end
