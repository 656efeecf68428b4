"""`--admin-address`: `kubectl smi identity` and `proxy config` ask the admin port where they are
told (127.0.0.1 after `kubectl port-forward`, since an injected sidecar's admin port binds
loopback) instead of on the pod IP; and `stat` reads the metrics-only port."""

from __future__ import annotations

import json

import httpx
import pytest

from smimesh.kube import names
from tests.cli.conftest import Meshed, Run

pytestmark = pytest.mark.cluster


def test_identity_asks_the_admin_address_it_is_given(smi: Run, meshed: Meshed) -> None:
    # a-1 is looked up in the cluster, but the answer comes from where we point: b-1's sidecar
    result = smi("identity", "a-1", "-n", meshed.namespace, "-o", "json",
                 "--admin-address", meshed.b.address)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spiffeId"].endswith(f"/ns/{meshed.namespace}/sa/service-b")


def test_an_unreachable_admin_port_gets_a_port_forward_hint(smi: Run, meshed: Meshed) -> None:
    result = smi("proxy", "config", "a-1", "-n", meshed.namespace, "--admin-port", "1")
    assert result.returncode == 1
    assert f"kubectl port-forward -n {meshed.namespace} a-1 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_local_workloads_serve_metrics_but_not_config_on_the_metrics_port(meshed: Meshed) -> None:
    base = f"http://{meshed.b.address}:{names.SIDECAR_METRICS_PORT}"
    assert "osm_request_total" in httpx.get(f"{base}/metrics", timeout=5).text
    assert httpx.get(f"{base}/config", timeout=5).status_code == 404
