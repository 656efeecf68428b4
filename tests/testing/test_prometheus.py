"""The Prometheus configuration the canary tests run: the scrape job smimesh ships, unchanged
but for what an out-of-cluster Prometheus must add to each Kubernetes discovery. The real
Prometheus runs it in tests/canary/ (targets discovered, scraped, queried by Flagger)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smimesh.testing import prometheus

pytestmark = pytest.mark.fast


def test_the_shipped_job_keeps_annotated_running_pods_at_their_annotated_port() -> None:
    (job,) = yaml.safe_load(prometheus.SCRAPE_CONFIGS.read_text())["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabels = job["relabel_configs"]
    kept = {tuple(r["source_labels"]): r["regex"] for r in relabels if r.get("action") == "keep"}
    assert kept == {
        ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",): "true",
        ("__meta_kubernetes_pod_phase",): "Running",
    }
    targets = {r["target_label"] for r in relabels if "target_label" in r}
    assert targets == {"__address__", "__metrics_path__", "namespace", "pod"}


def test_out_of_cluster_discovery_gets_the_apiserver_its_ca_and_a_token_file() -> None:
    shipped = yaml.safe_load(prometheus.SCRAPE_CONFIGS.read_text())
    rendered = prometheus.config(shipped, api_server="https://10.0.0.1:6443",
                                 ca_file=Path("/ca.crt"), token_file=Path("/token"))  # fmt: skip
    (job,) = rendered["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{
        "role": "pod", "api_server": "https://10.0.0.1:6443",
        "tls_config": {"ca_file": "/ca.crt"}, "authorization": {"credentials_file": "/token"},
    }]  # fmt: skip
    assert job["relabel_configs"] == shipped["scrape_configs"][0]["relabel_configs"]
    assert shipped["scrape_configs"][0]["kubernetes_sd_configs"] == [{"role": "pod"}]  # a copy
    assert rendered["global"]["scrape_interval"] == prometheus.SCRAPE_INTERVAL


def test_the_shipped_rbac_grants_only_reading_pods() -> None:
    objects = list(yaml.safe_load_all(prometheus.RBAC.read_text()))
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]  # fmt: skip
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": prometheus.SERVICE_ACCOUNT,
                                    "namespace": prometheus.NAMESPACE}]  # fmt: skip
