"""`kubectl smi proxy config POD` and `kubectl smi identity POD` against a running local mesh:
what the sidecar itself holds, with exit code 1 for pods that cannot answer."""

from __future__ import annotations

import datetime
import json

import httpx
import pytest
import yaml

from tests.cli.conftest import Meshed, Run, run_smi

pytestmark = pytest.mark.cluster


def test_proxy_config_is_what_the_sidecar_holds(smi: Run, meshed: Meshed) -> None:
    result = smi("proxy", "config", "a-1", "-n", meshed.namespace)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    held = httpx.get(f"{meshed.a.admin_url}/config", timeout=5).json()
    assert shown == held
    assert shown["proxy"] == {
        "namespace": meshed.namespace,
        "service_account": "service-a",
        "pod": "a-1",
    }
    services = {(s["service"]["namespace"], s["service"]["name"]) for s in shown["outbound"]}
    assert (meshed.namespace, "b") in services

    as_yaml = smi("proxy", "config", "a-1", "-n", meshed.namespace, "-o", "yaml")
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == held


def test_identity_is_the_service_accounts_spiffe_id_from_the_mesh_ca(
    smi: Run, meshed: Meshed
) -> None:
    result = smi("identity", "b-1", "-n", meshed.namespace, "-o", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["spiffeId"] == f"spiffe://cluster.local/ns/{meshed.namespace}/sa/service-b"
    assert shown["source"] == "mesh-ca"
    not_before, not_after, renew_at = (
        datetime.datetime.fromisoformat(shown[key]) for key in ("notBefore", "notAfter", "renewAt")
    )
    now = datetime.datetime.now(datetime.UTC)
    assert not_before <= now < renew_at < not_after
    assert shown["expiresInSeconds"] == pytest.approx((not_after - now).total_seconds(), abs=30)

    table = smi("identity", "b-1", "-n", meshed.namespace)
    assert table.returncode == 0, table.stderr
    header, _, row = table.stdout.splitlines()[:3]
    assert header.split()[:3] == ["POD", "IDENTITY", "NOT"]
    assert row.split()[:3] == ["b-1", shown["spiffeId"], shown["notAfter"]]


def test_a_missing_pod_exits_1(smi: Run, meshed: Meshed) -> None:
    for command in (["identity"], ["proxy", "config"]):
        result = smi(*command, "nope", "-n", meshed.namespace)
        assert result.returncode == 1
        assert result.stderr == f"error: pod 'nope' not found in namespace '{meshed.namespace}'\n"


def test_an_unmeshed_pod_exits_1(smi: Run, meshed: Meshed) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": meshed.namespace},
        "spec": {
            "schedulingGates": [{"name": "smimesh.dev/never"}],
            "serviceAccountName": "service-a",  # no controller-manager makes `default` here
            "containers": [{"name": "app", "image": "example.invalid/app"}],
        },
    }
    meshed.mesh.apply(pod)
    result = smi("identity", "plain", "-n", meshed.namespace)
    assert result.returncode == 1
    assert "is not meshed (no smimesh.dev/injected annotation)" in result.stderr


def test_a_sidecar_that_does_not_answer_exits_1(smi: Run, meshed: Meshed) -> None:
    result = smi("identity", "b-1", "-n", meshed.namespace, "--admin-port", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the sidecar did not answer:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["proxy", "config"], ["identity"]])
def test_proxy_config_and_identity_teach_by_example(command: list[str]) -> None:
    result = run_smi(*command, "--help")
    assert result.returncode == 0
    assert f"Example: kubectl smi {' '.join(command)} " in result.stdout
