"""The checked-in CRDs are current, and the real apiserver serves every version of them:
objects in every version are created with kubectl, read back, and malformed ones are rejected
with the schema's message.

Tests apply the `conversion: None` variant: with `Webhook` the apiserver must call the
operator's /convert endpoint (the webhooks issue) for any non-storage version. Under `None`
only apiVersion is rewritten, so cross-version reads are checked only where layouts agree;
access v1alpha1 and specs v1alpha1/v1alpha2 (fields at the top level) wait for the webhook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from smimesh.smi import crdgen, kinds
from smimesh.testing import clusters
from tests.smi import strategies

ROOT = Path(__file__).parent.parent.parent


@pytest.mark.fast
@pytest.mark.parametrize("where", ["smimesh/manifests/crds", "charts/smimesh/files/crds"])
def test_checked_in_crds_are_current(where: str) -> None:
    """Both copies: the kustomization's and the Helm chart's (helm reads no file outside it)."""
    generated = crdgen.rendered()
    on_disk = {path.name: path.read_text() for path in (ROOT / where).glob("*.yaml")}
    assert on_disk == generated, f"run `make crds` and commit {where}/"


@pytest.mark.fast
def test_every_version_is_served_and_the_hub_is_stored() -> None:
    for info in kinds.KINDS:
        if not info.crd:
            continue
        crd = crdgen.crd_for(info)
        versions = crd["spec"]["versions"]
        assert [v["name"] for v in versions] == list(info.versions)
        assert all(v["served"] for v in versions)
        assert [v["name"] for v in versions if v["storage"]] == [info.hub_version]
        assert crd["spec"]["names"]["shortNames"] == list(info.short_names)


@pytest.mark.fast
def test_v1alpha1_split_weights_are_int_or_string() -> None:
    crd = crdgen.crd_for(kinds.KINDS[0])
    v1 = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    weight = v1["properties"]["spec"]["properties"]["backends"]["items"]["properties"]["weight"]
    assert weight["x-kubernetes-int-or-string"] is True


@pytest.mark.fast
def test_webhook_conversion_points_at_the_operator() -> None:
    crd = crdgen.crd_for(kinds.KINDS[0])
    service = crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]
    assert (service["namespace"], service["name"], service["path"]) == (
        "smimesh-system",
        "smimesh-operator",
        "/convert",
    )


@pytest.fixture(scope="module")
def installed(cluster: clusters.Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("crds")
    for name, text in crdgen.rendered().items():
        (directory / name).write_text(text)
    checked = cluster.kubectl("apply", "--dry-run=server", "-f", str(directory))
    assert checked.returncode == 0, checked.stderr  # the Webhook variant is accepted as is
    for name, text in crdgen.rendered(strategy="None").items():
        (directory / name).write_text(text)
        # Replace, not apply: an apply keeps the conversion webhook fields that a server-side
        # install (`kubectl smi install`, the operator tests) owns under another field
        # manager, and the apiserver refuses them beside `strategy: None`.
        applied = cluster.kubectl("replace", "-f", str(directory / name))
        if applied.returncode != 0 and "NotFound" in applied.stderr:
            applied = cluster.kubectl("create", "-f", str(directory / name))
        assert applied.returncode == 0, applied.stderr
    ready = cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=smimesh",
        "--timeout=60s",
    )
    assert ready.returncode == 0, ready.stderr


# Versions whose fields the hub's schema keeps as they are (so `None` conversion loses nothing).
SAME_LAYOUT_AS_HUB = {
    ("TrafficSplit", "v1alpha1"),
    ("TrafficSplit", "v1alpha2"),
    ("TrafficSplit", "v1alpha3"),
    ("HTTPRouteGroup", "v1alpha3"),
}


def _resource(info: kinds.KindInfo, version: str) -> str:
    return f"{info.plural}.{version}.{info.group}"


@pytest.mark.cluster
@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(("kind", "version"), strategies.VERSIONS)
def test_objects_of_every_version_are_created_and_read_back(
    cluster: clusters.Cluster, namespace: str, kind: str, version: str
) -> None:
    info = next(i for i in kinds.KINDS if i.kind == kind)

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(wire=strategies.objects(kind, version))
    def create(wire: strategies.Wire) -> None:
        wire["metadata"]["namespace"] = namespace
        created = cluster.kubectl("create", "-f", "-", input=json.dumps(wire))
        if created.returncode != 0 and "AlreadyExists" in created.stderr:
            return
        assert created.returncode == 0, created.stderr
        name = wire["metadata"]["name"]
        got = cluster.kubectl("get", _resource(info, version), name, "-n", namespace, "-o", "json")
        assert got.returncode == 0, got.stderr
        read = json.loads(got.stdout)
        assert read["apiVersion"] == wire["apiVersion"]
        if version == info.hub_version or (kind, version) in SAME_LAYOUT_AS_HUB:
            assert read.get("spec") == wire.get("spec")
        cluster.kubectl("delete", _resource(info, version), name, "-n", namespace)

    create()


@pytest.mark.cluster
@pytest.mark.usefixtures("installed")
def test_shared_layout_versions_read_each_other(cluster: clusters.Cluster, namespace: str) -> None:
    split = {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "service": "web",
            "backends": [{"service": "web-v1", "weight": 90}, {"service": "web-v2", "weight": 10}],
        },
    }
    assert cluster.kubectl("create", "-f", "-", input=json.dumps(split)).returncode == 0
    for version in ("v1alpha3", "v1alpha4"):
        got = cluster.kubectl(
            "get",
            f"trafficsplits.{version}.split.smi-spec.io",
            "web",
            "-n",
            namespace,
            "-o",
            "json",
        )
        assert json.loads(got.stdout)["spec"] == split["spec"]
    printed = cluster.kubectl("get", "ts", "-n", namespace)
    assert "web-v1" in printed.stdout
    assert "90" in printed.stdout


@pytest.mark.cluster
@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            {
                "apiVersion": "split.smi-spec.io/v1alpha4",
                "kind": "TrafficSplit",
                "spec": {"service": "web", "backends": [{"service": "a", "weight": -1}]},
            },
            "spec.backends[0].weight",
        ),
        (
            {
                "apiVersion": "split.smi-spec.io/v1alpha1",
                "kind": "TrafficSplit",
                "spec": {"service": "web", "backends": [{"service": "a", "weight": "5x"}]},
            },
            "spec.backends[0].weight",
        ),
        (
            {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "HTTPRouteGroup",
                "spec": {"matches": [{"name": "m", "methods": ["FETCH"]}]},
            },
            "spec.matches[0].methods[0]",
        ),
        (
            {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "TCPRoute",
                "spec": {"matches": {"ports": [70000]}},
            },
            "spec.matches.ports[0]",
        ),
        (
            {
                "apiVersion": "access.smi-spec.io/v1alpha3",
                "kind": "TrafficTarget",
                "spec": {
                    "destination": {"kind": "ServiceAccount", "name": "a"},
                    "rules": [{"kind": "GRPCRoute", "name": "r"}],
                    "sources": [],
                },
            },
            "spec.rules[0].kind",
        ),
        (
            {
                "apiVersion": "split.smi-spec.io/v1alpha4",
                "kind": "TrafficSplit",
                "spec": {"service": "web"},
            },
            "spec.backends",
        ),
    ],
)
def test_malformed_objects_are_rejected_with_the_schema_message(
    cluster: clusters.Cluster, namespace: str, manifest: strategies.Wire, message: str
) -> None:
    manifest = {**manifest, "metadata": {"name": "bad", "namespace": namespace}}
    created = cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(manifest))
    assert created.returncode != 0
    assert message in created.stderr
    assert (
        "Invalid value" in created.stderr
        or "Required value" in created.stderr
        or ("Unsupported value" in created.stderr)
    )
