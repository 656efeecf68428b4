"""`kubectl smi ca status|rotate` against the real apiserver, on a CA Secret made here (no
operator: these test what the commands read and write; `tests/e2e/test_rotation.py` runs a
whole rotation with the operator)."""

from __future__ import annotations

import datetime
import json

import pytest
import yaml
from kubernetes import client

from smimesh.identity import authority, rotation, secretdata
from smimesh.kube import names
from smimesh.operator import authorities
from tests.cli.conftest import Run, run_smi

pytestmark = pytest.mark.cluster


def _store(api: client.ApiClient, namespace: str, state: rotation.MeshCa) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=names.CA_SECRET, namespace=namespace),
        data=authorities.encode(secretdata.dump(state)),
    )
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_secret(namespace, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        core.patch_namespaced_secret(names.CA_SECRET, namespace, {"data": body.data})


def _annotations(api: client.ApiClient, namespace: str) -> dict[str, str]:
    secret = client.CoreV1Api(api).read_namespaced_secret(names.CA_SECRET, namespace)
    return dict(secret.metadata.annotations or {})


def test_status_shows_the_phase_the_roots_and_the_issuer(
    smi: Run, api: client.ApiClient, namespace: str
) -> None:
    ca = authority.create("cluster.local")
    _store(api, namespace, rotation.stable(ca))

    shown = smi("ca", "status", "-n", namespace, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["phase"] == "stable"
    assert data["nextStepAt"] is None
    assert [root["role"] for root in data["roots"]] == ["trusted, signs"]
    assert data["roots"][0]["notAfter"] == ca.root.not_valid_after_utc.isoformat()
    assert data["issuer"]["notAfter"] == ca.issuer.not_valid_after_utc.isoformat()
    assert data["rootKeyHeld"] is True
    assert "PRIVATE" not in shown.stdout

    table = smi("ca", "status", "-n", namespace)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("phase: stable\n")
    assert "trusted, signs" in table.stdout
    assert "signs workloads" in table.stdout


def test_rotate_sets_the_request_and_refuses_while_a_rotation_runs(
    smi: Run, api: client.ApiClient, namespace: str
) -> None:
    old = authority.create("cluster.local")
    _store(api, namespace, rotation.stable(old))

    asked = smi("ca", "rotate", "-n", namespace)
    assert asked.returncode == 0, asked.stderr
    assert "kubectl smi ca status" in asked.stdout
    requested = _annotations(api, namespace)[names.ROTATE_REQUESTED_ANNOTATION]
    assert datetime.datetime.fromisoformat(requested).tzinfo is not None

    now = datetime.datetime.now(datetime.UTC)
    preparing = rotation.begin(rotation.stable(old), authority.create("cluster.local"), now=now)
    _store(api, namespace, preparing)
    refused = smi("ca", "rotate", "-n", namespace)
    assert refused.returncode == 1
    assert "already in progress (preparing" in refused.stderr
    assert "Traceback" not in refused.stderr

    shown = yaml.safe_load(smi("ca", "status", "-n", namespace, "-o", "yaml").stdout)
    assert shown["phase"] == "preparing"
    assert [root["role"] for root in shown["roots"]] == [
        "trusted, signs next",
        "trusted, being retired",
    ]
    assert shown["rotationRequested"] == requested


def test_no_ca_secret_is_exit_1_and_no_cluster_exit_2(smi: Run, namespace: str) -> None:
    missing = smi("ca", "status", "-n", namespace)
    assert missing.returncode == 1
    assert "no Secret smimesh-ca" in missing.stderr
    rotate = smi("ca", "rotate", "-n", namespace)
    assert rotate.returncode == 1
    assert "Traceback" not in rotate.stderr
    nowhere = run_smi("ca", "status", "--kubeconfig", "/nonexistent/kubeconfig")
    assert nowhere.returncode == 2
    assert nowhere.stderr.startswith("error: --kubeconfig /nonexistent/kubeconfig")
    bad = run_smi("ca", "status", "-o", "xml")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
