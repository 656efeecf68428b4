"""The real apiserver calls the operator's real webhooks: CRD conversion between every SMI
version, validation with field paths and warnings, sidecar injection, and the caBundle the
operator writes at start.

One operator (a process, under its own RBAC) serves this module in local mode
(`--webhook-url`): it patches the CA bundle and its URL into the CRDs and the webhook
configurations, which the fixture re-applies from smimesh/manifests/ first (other suites apply the
`None` conversion variant of the CRDs). Afterwards `scenarios.forget_webhooks` removes the
webhook configurations and points the CRDs back at the Service: a stopped operator must not
keep refusing pods, and the manifests must apply again.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from smimesh._aio import waiting
from smimesh.kube import names
from smimesh.operator import cabundles
from smimesh.testing import clusters, controlplane, meshes
from smimesh.webhooks.injection import settings
from tests.operator import scenarios
from tests.webhooks.injection.pods import annotated, app_pod

pytestmark = pytest.mark.cluster


def _get(cluster: clusters.Cluster, resource: str, name: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        scenarios.kubectl(cluster, "-n", namespace, "get", resource, name, "-o", "json")
    )
    return found


def _client_configs(cluster: clusters.Cluster) -> dict[str, list[dict[str, Any]]]:
    configs: dict[str, list[dict[str, Any]]] = {}
    for name in cabundles.conversion_crds():
        crd = json.loads(scenarios.kubectl(cluster, "get", "crd", name, "-o", "json"))
        configs[name] = [crd["spec"]["conversion"]["webhook"]["clientConfig"]]
    for kind, name in (
        ("mutatingwebhookconfiguration", names.INJECTOR_WEBHOOK),
        ("validatingwebhookconfiguration", names.VALIDATOR_WEBHOOK),
    ):
        found = json.loads(scenarios.kubectl(cluster, "get", kind, name, "-o", "json"))
        configs[name] = [webhook["clientConfig"] for webhook in found["webhooks"]]
    return configs


# One object per converting CRD, written in the hub version and read in the oldest: once each
# reads back, the apiserver calls our /convert for that CRD.
PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "trafficsplits.v1alpha1.split.smi-spec.io": (
        "split.smi-spec.io/v1alpha4",
        {
            "kind": "TrafficSplit",
            "spec": {"service": "p", "backends": [{"service": "p", "weight": 1}]},
        },
    ),
    "traffictargets.v1alpha1.access.smi-spec.io": (
        "access.smi-spec.io/v1alpha3",
        {
            "kind": "TrafficTarget",
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "p"},
                "sources": [{"kind": "ServiceAccount", "name": "q"}],
                "rules": [{"kind": "HTTPRouteGroup", "name": "p"}],
            },
        },
    ),
    "httproutegroups.v1alpha1.specs.smi-spec.io": (
        "specs.smi-spec.io/v1alpha4",
        {"kind": "HTTPRouteGroup", "spec": {"matches": [{"name": "all", "pathRegex": "/"}]}},
    ),
    "tcproutes.v1alpha1.specs.smi-spec.io": (
        "specs.smi-spec.io/v1alpha4",
        {"kind": "TCPRoute", "spec": {"matches": {"ports": []}}},
    ),
}


def _wait_until_converting(cluster: clusters.Cluster, namespace: str) -> None:
    """Every CRD's handler picks up a new conversion config asynchronously: wait for it."""
    for resource, (api_version, body) in PROBES.items():
        probe = {"apiVersion": api_version, "metadata": {"name": "probe"}, **body}
        scenarios.kubectl(cluster, "-n", namespace, "create", "-f", "-", input=json.dumps(probe))
        _until_served(cluster, namespace, resource)


def _until_served(cluster: clusters.Cluster, namespace: str, resource: str) -> None:
    """Until `resource` named probe reads back (through the conversion webhook)."""
    stderr = ""

    def converted() -> bool:
        nonlocal stderr
        got = cluster.kubectl("-n", namespace, "get", resource, "probe", "-o", "name")
        stderr = got.stderr
        return got.returncode == 0

    waiting.eventually_sync(
        converted,
        timeout=30,
        message=lambda: f"{resource} does not convert: {stderr}",
        interval=0.3,
        error=AssertionError,
    )


@pytest.fixture(scope="module")
def served(
    mesh_installed: clusters.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[meshes.OperatorProcess]:
    """The manifests (Webhook conversion, webhook configurations) and one operator serving
    them in local mode; its CA bundle and URL are in every CRD and configuration."""
    cluster = mesh_installed
    meshes.install(cluster)
    work = tmp_path_factory.mktemp("webhooks")
    kubeconfig = cluster.kubeconfig_for(
        names.MESH_NAMESPACE, names.OPERATOR_SERVICE, work / "operator.kubeconfig"
    )
    address = f"127.0.0.1:{controlplane.free_port()}"
    url = f"https://{address}"
    operator = meshes.start_operator(
        kubeconfig,
        work,
        identity="webhooks",
        extra_args=("--webhook-address", address, "--webhook-url", url),
    )
    try:
        waiting.eventually_sync(
            lambda: all(
                config.get("url", "").startswith(url) and config.get("caBundle")
                for configs in _client_configs(cluster).values()
                for config in configs
            ),
            timeout=30,
            message=operator.logs,
            interval=0.2,
            error=AssertionError,
        )
        probes = f"probes-{uuid.uuid4().hex[:8]}"
        scenarios.kubectl(cluster, "create", "namespace", probes)
        _wait_until_converting(cluster, probes)
        yield operator
    finally:
        operator.stop()
        scenarios.forget_webhooks(cluster)
        print(f"--- webhooks operator log ---\n{operator.logs()[-6000:]}")


@pytest.fixture
def meshed_namespace(mesh_installed: clusters.Cluster, namespace: str) -> str:
    """Labelled for injection, with the `web` ServiceAccount (no controller makes `default`)."""
    cluster = mesh_installed
    scenarios.kubectl(cluster, "label", "namespace", namespace, "smimesh.dev/inject=enabled")
    scenarios.kubectl(cluster, "-n", namespace, "create", "serviceaccount", "web")
    return namespace


def _create(cluster: clusters.Cluster, namespace: str, obj: dict[str, Any]) -> str:
    """kubectl create; returns what kubectl printed on stderr (warnings)."""
    created = cluster.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(obj))
    assert created.returncode == 0, created.stderr
    return created.stderr


SPLIT_V1ALPHA1 = {
    "apiVersion": "split.smi-spec.io/v1alpha1",
    "kind": "TrafficSplit",
    "metadata": {"name": "web"},
    "spec": {
        "service": "web",
        "backends": [{"service": "web-v1", "weight": "500m"}, {"service": "web-v2", "weight": 1}],
    },
}


@pytest.mark.usefixtures("served")
def test_a_v1alpha1_split_with_quantity_weights_reads_as_v1alpha4_and_v1alpha2(
    mesh_installed: clusters.Cluster, namespace: str
) -> None:
    cluster = mesh_installed
    _create(cluster, namespace, SPLIT_V1ALPHA1)
    for version in ("v1alpha4", "v1alpha2"):
        read = _get(cluster, f"trafficsplits.{version}.split.smi-spec.io", "web", namespace)
        assert read["apiVersion"] == f"split.smi-spec.io/{version}"
        weights = {b["service"]: b["weight"] for b in read["spec"]["backends"]}
        assert all(isinstance(weight, int) for weight in weights.values()), weights
        assert weights["web-v2"] == 2 * weights["web-v1"], weights
    again = _get(cluster, "trafficsplits.v1alpha1.split.smi-spec.io", "web", namespace)
    assert again["spec"] == SPLIT_V1ALPHA1["spec"]


@pytest.mark.usefixtures("served")
def test_a_v1alpha1_traffic_target_reads_as_v1alpha3_and_back(
    mesh_installed: clusters.Cluster, namespace: str
) -> None:
    cluster = mesh_installed
    target = {
        "apiVersion": "access.smi-spec.io/v1alpha1",
        "kind": "TrafficTarget",
        "metadata": {"name": "api"},
        "destination": {"kind": "ServiceAccount", "name": "api", "namespace": namespace},
        "specs": [{"kind": "HTTPRouteGroup", "name": "routes", "matches": ["get"]}],
        "sources": [{"kind": "ServiceAccount", "name": "web", "namespace": namespace}],
    }
    _create(cluster, namespace, target)
    v3 = _get(cluster, "traffictargets.v1alpha3.access.smi-spec.io", "api", namespace)
    assert v3["spec"] == {
        "destination": target["destination"],
        "rules": target["specs"],
        "sources": target["sources"],
    }
    v1 = _get(cluster, "traffictargets.v1alpha1.access.smi-spec.io", "api", namespace)
    assert {key: v1.get(key) for key in ("destination", "specs", "sources")} == {
        key: target[key] for key in ("destination", "specs", "sources")
    }


@pytest.mark.usefixtures("served")
def test_a_v1alpha1_route_group_reads_as_v1alpha4(
    mesh_installed: clusters.Cluster, namespace: str
) -> None:
    cluster = mesh_installed
    matches = [{"name": "metrics", "pathRegex": "/metrics", "methods": ["GET"]}]
    group = {
        "apiVersion": "specs.smi-spec.io/v1alpha1",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "routes"},
        "matches": matches,
    }
    _create(cluster, namespace, group)
    v4 = _get(cluster, "httproutegroups.v1alpha4.specs.smi-spec.io", "routes", namespace)
    assert v4["spec"]["matches"] == matches


@pytest.mark.usefixtures("served")
def test_an_invalid_split_is_rejected_with_the_field_path(
    mesh_installed: clusters.Cluster, namespace: str
) -> None:
    split = scenarios.split(namespace, "web", "web", {"web-v1": 50})
    split["spec"]["backends"].append({"service": "web-v1", "weight": 50})
    refused = mesh_installed.kubectl("create", "-f", "-", input=yaml.safe_dump(split))
    assert refused.returncode != 0
    assert (
        'The TrafficSplit "web" is invalid: spec.backends[1].service: '
        "backend 'web-v1' is listed twice (also spec.backends[0])"
    ) in refused.stderr
    absent = mesh_installed.kubectl("-n", namespace, "get", "trafficsplit", "web")
    assert absent.returncode != 0


@pytest.mark.usefixtures("served")
def test_all_zero_weights_are_admitted_with_a_warning(
    mesh_installed: clusters.Cluster, namespace: str
) -> None:
    split = scenarios.split(namespace, "web", "web", {"web-v1": 0, "web-v2": 0})
    printed = _create(mesh_installed, namespace, split)
    assert "Warning: spec.backends: every weight is 0: no traffic reaches any backend" in printed


@pytest.mark.usefixtures("served")
def test_a_pod_in_a_labelled_namespace_is_stored_injected(
    mesh_installed: clusters.Cluster, meshed_namespace: str
) -> None:
    _create(mesh_installed, meshed_namespace, app_pod())
    stored = _get(mesh_installed, "pod", "web", meshed_namespace)
    assert "smimesh.dev/injected" in stored["metadata"]["annotations"]
    init = [container["name"] for container in stored["spec"]["initContainers"]]
    containers = [container["name"] for container in stored["spec"]["containers"]]
    # Native sidecars where the apiserver's version (>= 1.29) runs them, else a first container.
    version = json.loads(scenarios.kubectl(mesh_installed, "get", "--raw", "/version"))
    if settings.supports_native_sidecars(version["gitVersion"]):
        assert (init, containers) == (["smimesh-init", "smimesh-proxy"], ["app"])
        assert stored["spec"]["initContainers"][1]["restartPolicy"] == "Always"
    else:
        assert (init, containers) == (["smimesh-init"], ["smimesh-proxy", "app"])


@pytest.mark.usefixtures("served")
def test_a_pod_that_opts_out_is_stored_as_written(
    mesh_installed: clusters.Cluster, meshed_namespace: str
) -> None:
    pod = annotated(app_pod(), **{"smimesh.dev/inject": "disabled"})
    _create(mesh_installed, meshed_namespace, pod)
    stored = _get(mesh_installed, "pod", "web", meshed_namespace)
    assert "initContainers" not in stored["spec"]
    assert [container["name"] for container in stored["spec"]["containers"]] == ["app"]


def test_the_mesh_ca_bundle_and_our_url_are_on_every_crd_and_webhook(
    mesh_installed: clusters.Cluster, served: meshes.OperatorProcess
) -> None:
    bundle = meshes.trust_bundle(mesh_installed)
    configs = _client_configs(mesh_installed)
    assert set(configs) == {*cabundles.conversion_crds(), "smimesh-injector", "smimesh-validator"}
    for name, found in configs.items():
        for config in found:
            assert base64.b64decode(config["caBundle"]) == bundle, name
            assert "service" not in config, name
    paths = {name: config["url"].rpartition("/")[2] for name, (config,) in configs.items()}
    assert paths == {
        **dict.fromkeys(cabundles.conversion_crds(), "convert"),
        "smimesh-injector": "mutate",
        "smimesh-validator": "validate",
    }
