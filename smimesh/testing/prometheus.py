"""A real Prometheus scraping every sidecar of the test cluster, with the scrape job smimesh
ships for users (`smimesh/manifests/prometheus/scrape-configs.yaml`),
discovering Pods through the apiserver as the ServiceAccount of the shipped `rbac.yaml` —
so the canary tests judge releases by the mesh's own metrics, read the way Flagger and Argo
Rollouts read them.

Prometheus is built from its Go module (`gotools`, cached), not taken from Debian: Debian's
package (2.42) is built without Kubernetes service discovery (`kubernetes_sd_configs` is "not
found in type config.ScrapeConfig"), the one discovery the shipped job uses. The build keeps
only that discovery (tags `remove_all_sd,enable_kubernetes_sd`) and no web UI assets: the
HTTP API, all the tests and Flagger need, is complete without them.

`config` is pure (the shipped job plus what an out-of-cluster Prometheus needs: the
apiserver's address, its CA and a token file); `Prometheus` runs it as a `components`
process on the host, which reaches Pod IPs directly (`nodenetwork`), and answers queries.
Used by the canary tests and `flagger`/`argorollouts` (their metrics server).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from smimesh.kube import installing
from smimesh.testing import clusters, components, controlplane, gotools

PROMETHEUS = gotools.GoTool(
    "prometheus", "github.com/prometheus/prometheus/cmd/prometheus", "v0.316.0",
    tags=("remove_all_sd", "enable_kubernetes_sd"),
)  # fmt: skip
"""Prometheus 3.16.0 (its Go module's versions are v0.3xx), Kubernetes discovery only."""
SCRAPE_CONFIGS = installing.MANIFESTS / "prometheus" / "scrape-configs.yaml"
RBAC = installing.MANIFESTS / "prometheus" / "rbac.yaml"
NAMESPACE, SERVICE_ACCOUNT = "monitoring", "prometheus"
SCRAPE_INTERVAL = "5s"


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or a query failed; the message says which."""


def ensure() -> Path:
    """The cached prometheus executable, built first if missing (minutes on 2 cores)."""
    try:
        return gotools.ensure_tool(PROMETHEUS)
    except gotools.GoToolError as exc:
        raise PrometheusError(str(exc)) from exc


def config(
    scrape: dict[str, Any], *, api_server: str, ca_file: Path, token_file: Path
) -> dict[str, Any]:
    """The full configuration: the shipped jobs, each Kubernetes discovery pointed at
    `api_server` (verified with `ca_file`, authenticated with the token in `token_file`)."""
    jobs = copy.deepcopy(scrape["scrape_configs"])
    for job in jobs:
        for discovery in job.get("kubernetes_sd_configs", []):
            discovery["api_server"] = api_server
            discovery["tls_config"] = {"ca_file": str(ca_file)}
            discovery["authorization"] = {"credentials_file": str(token_file)}
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": jobs,
    }


def _apiserver(cluster: clusters.Cluster, into: Path) -> tuple[str, Path]:
    """The cluster's apiserver address and a file with its CA, from the admin kubeconfig."""
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = kubeconfig["clusters"][0]["cluster"]
    if "certificate-authority" in entry:
        return entry["server"], Path(entry["certificate-authority"])
    ca = into / "apiserver-ca.crt"
    ca.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    return entry["server"], ca


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus: its base URL, and queries against it."""

    url: str
    component: components.Component

    def query(self, expression: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: each series' labels and value."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query {expression!r} failed: {body.get('error', body)}")
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


@contextmanager
def running(cluster: clusters.Cluster, run_dir: Path) -> Iterator[Prometheus]:
    """Apply the shipped RBAC, start Prometheus on the host under that ServiceAccount's token
    with the shipped scrape job, and stop it (and remove the RBAC) afterwards."""
    binary = ensure()
    run_dir.mkdir(parents=True, exist_ok=True)
    rbac = [o for o in yaml.safe_load_all(RBAC.read_text()) if o]
    try:
        components.install(cluster, rbac, what=str(RBAC))
        token_file = run_dir / "token"
        token_file.write_text(cluster.token(NAMESPACE, SERVICE_ACCOUNT))
        token_file.chmod(0o600)
        server, ca = _apiserver(cluster, run_dir)
        rendered = config(yaml.safe_load(SCRAPE_CONFIGS.read_text()), api_server=server,
                          ca_file=ca, token_file=token_file)  # fmt: skip
        (run_dir / "prometheus.yml").write_text(yaml.safe_dump(rendered, sort_keys=False))
        port = controlplane.free_port()
        url = f"http://127.0.0.1:{port}"
        component = components.Component(
            "prometheus",
            [str(binary), f"--config.file={run_dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={run_dir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=2h", "--log.level=info"],
            run_dir / "prometheus.log",
            ready=lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200,
        )  # fmt: skip
        with component:
            yield Prometheus(url, component)
    except components.ComponentError as exc:
        raise PrometheusError(str(exc)) from exc
    finally:
        components.uninstall(cluster, rbac)


def main() -> int:
    return gotools.print_path(ensure, PrometheusError)


if __name__ == "__main__":
    raise SystemExit(main())
