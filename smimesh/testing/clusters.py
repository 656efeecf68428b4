"""Chooses the cluster our tests (and users' checks) run against, from `SMIMESH_CLUSTER`:

- `local` (default): etcd + kube-apiserver as local processes (`smimesh.testing.controlplane`);
- `node`: the same control plane with a real node beside it (`smimesh.testing.nodes`:
  kubelet, containerd, kube-proxy, CoreDNS; needs root and `make node-deps`);
- `kind`: a kind cluster through pytest-kind (needs Docker);
- `existing`: the current KUBECONFIG.

Used by `tests/conftest.py`; the same tests run on all four.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from kubernetes import client

from smimesh.kube import clients
from smimesh.testing import binaries, controlplane, nodes, tokens

Mode = Literal["local", "node", "kind", "existing"]
MODES: tuple[Mode, ...] = ("local", "node", "kind", "existing")


class ClusterError(RuntimeError):
    """The requested cluster cannot be reached or made."""


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster: its kubeconfig, a kubectl to drive it, and how it was made."""

    mode: Mode
    kubeconfig: Path
    kubectl_binary: str

    def api_client(self) -> client.ApiClient:
        return clients.api_client(self.kubeconfig)

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; the caller checks the return code."""
        return subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )

    def token(
        self,
        namespace: str,
        service_account: str,
        *,
        audience: str | None = None,
        pod: str | None = None,
    ) -> str:
        """A TokenRequest token for a ServiceAccount (default audience: the apiserver's),
        bound to `pod` if given (as the kubelet's projected tokens are: the config server
        accepts only those)."""
        if pod is not None:
            with self.api_client() as api:
                return tokens.bound_token(
                    api, namespace, service_account, pod, audience=audience or ""
                )
        spec = client.V1TokenRequestSpec(
            audiences=[audience] if audience else [], expiration_seconds=3600
        )
        with self.api_client() as api:
            response = client.CoreV1Api(api).create_namespaced_service_account_token(
                service_account, namespace, client.AuthenticationV1TokenRequest(spec=spec)
            )
        if response.status is None:
            raise ClusterError(f"no token issued for {namespace}/{service_account}")
        return str(response.status.token)

    def kubeconfig_for(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount, to run a component under
        exactly its own RBAC."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        context = next(
            c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"]
        )
        cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [
                {"name": service_account, "user": {"token": self.token(namespace, service_account)}}
            ],
            "contexts": [
                {
                    "name": service_account,
                    "context": {"cluster": cluster["name"], "user": service_account},
                }
            ],
            "current-context": service_account,
        }
        path.write_text(yaml.safe_dump(config))
        return path


def mode_from_env() -> Mode:
    value = os.environ.get("SMIMESH_CLUSTER", "local")
    for mode in MODES:
        if value == mode:
            return mode
    raise ClusterError(f"SMIMESH_CLUSTER={value!r} is not one of {', '.join(MODES)}")


@contextlib.contextmanager
def provide(
    mode: Mode | None = None, *, say: Callable[[str], None] = lambda message: None
) -> Iterator[Cluster]:
    """Yield a cluster of the given (or configured) mode; tear down what we started."""
    mode = mode or mode_from_env()
    if mode == "local":
        with controlplane.running(say=say) as plane:
            yield Cluster("local", plane.kubeconfig, str(plane.binaries.kubectl))
    elif mode == "node":
        with nodes.running(say=say) as cluster:
            yield Cluster("node", cluster.plane.kubeconfig, str(cluster.plane.binaries.kubectl))
    elif mode == "kind":
        from pytest_kind import KindCluster

        kind = KindCluster("smimesh")
        kind.create()
        try:
            yield Cluster("kind", Path(kind.kubeconfig_path), str(kind.kubectl_path))
        finally:
            kind.delete()
    else:
        kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if not Path(kubeconfig).is_file():
            raise ClusterError(
                f"SMIMESH_CLUSTER=existing but there is no kubeconfig at {kubeconfig}"
            )
        kubectl = shutil.which("kubectl") or str(binaries.ensure_binaries(say=say).kubectl)
        yield Cluster("existing", Path(kubeconfig), kubectl)
