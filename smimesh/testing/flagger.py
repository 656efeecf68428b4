"""The real Flagger controller beside the test cluster: built once from its Go module
(`go install github.com/fluxcd/flagger/cmd/flagger@v1.36.1`, cached by `gotools`), its CRDs
and RBAC applied from the same module's `artifacts/flagger/` (the ServiceAccount moved to
`flagger-system`, as its kustomize overlays do), and run as a host process under exactly that
ServiceAccount's token, reading metrics from our Prometheus (`prometheus`).

`python -m smimesh.testing.flagger` builds it if needed and prints where it is. Used by the
canary tests (tests/canary/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from smimesh.testing import clusters, components, controlplane, gotools

FLAGGER = gotools.GoTool("flagger", "github.com/fluxcd/flagger/cmd/flagger", "v1.36.1")
"""v1.36.1, the newest release (about 2.5 min cold on 2 cores)."""
MODULE = "github.com/fluxcd/flagger"
NAMESPACE, SERVICE_ACCOUNT = "flagger-system", "flagger"


class FlaggerError(RuntimeError):
    """Flagger could not be built, installed or started; the message says what failed."""


def ensure() -> Path:
    """The cached flagger executable, built first if missing."""
    return gotools.ensure_tool(FLAGGER)


def manifests() -> list[dict[str, Any]]:
    """Flagger's CRDs and RBAC from its module at the built version, the ServiceAccount (and
    the binding's subject) in `NAMESPACE`."""
    source = gotools.module_source(MODULE, FLAGGER.version) / "artifacts" / "flagger"
    return components.manifests([source / "crd.yaml", source / "account.yaml"], NAMESPACE)


@contextmanager
def running(
    cluster: clusters.Cluster, run_dir: Path, *, metrics_server: str, mesh_provider: str = "osm"
) -> Iterator[components.Component]:
    """Flagger installed and running until the block ends, then stopped and its RBAC, CRDs
    (and so every Canary) removed; its Namespace stays (`components.installed`)."""
    try:
        binary = ensure()
        objects = manifests()
    except gotools.GoToolError as exc:
        raise FlaggerError(str(exc)) from exc
    try:
        account = (NAMESPACE, SERVICE_ACCOUNT)
        with (
            components.installed(cluster, objects, what="Flagger's CRDs and RBAC",
                                 account=account, run_dir=run_dir) as kubeconfig,
            _controller(binary, kubeconfig, run_dir, metrics_server, mesh_provider) as started,
        ):  # fmt: skip
            yield started
    except components.ComponentError as exc:
        raise FlaggerError(str(exc)) from exc


def _controller(
    binary: Path, kubeconfig: Path, run_dir: Path, metrics_server: str, mesh_provider: str
) -> components.Component:
    port = controlplane.free_port()
    return components.Component(
        "flagger",
        [str(binary), f"-kubeconfig={kubeconfig}", f"-mesh-provider={mesh_provider}",
         f"-metrics-server={metrics_server}", f"-port={port}", "-log-level=info",
         "-zap-encoding=console", "-enable-config-tracking=false"],
        run_dir / "flagger.log",
        ready=lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success,
    )  # fmt: skip


def main() -> int:
    return gotools.print_path(ensure)


if __name__ == "__main__":
    raise SystemExit(main())
