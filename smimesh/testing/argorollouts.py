"""The real Argo Rollouts controller beside the test cluster: built once from the wrapper
module `hack/argo-rollouts` (Argo's go.mod replaces k8s.io modules, which `go install
module@version` refuses; cached by `gotools`), its CRDs and cluster-wide RBAC applied from the
same module's `manifests/` (`crds/`, `role/`, the ServiceAccount of `base/` and the binding of
`cluster-install/`, in `argo-rollouts`), and run as a host process under exactly that
ServiceAccount's token.

`python -m smimesh.testing.argorollouts` builds it if needed and prints where it is. For tests
where Argo's SMI provider drives our TrafficSplits; tests/testing/test_argorollouts.py checks
the controller itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from smimesh.testing import clusters, components, controlplane, gotools

MODULE = "github.com/argoproj/argo-rollouts"
VERSION = "v1.10.0"
"""The release `hack/argo-rollouts/go.mod` pins; v1.10.2 needs a newer Go than 1.26.8."""
CONTROLLER = gotools.GoTool(
    "rollouts-controller",
    f"{MODULE}/cmd/rollouts-controller",
    VERSION,
    # Argo's Makefile stamps the version; unstamped, the controller calls itself v99.99.99.
    ldflags=f"-s -w -X {MODULE}/utils/version.version={VERSION.lstrip('v')}",
)
"""About 3 min cold on 2 cores."""
NAMESPACE, SERVICE_ACCOUNT = "argo-rollouts", "argo-rollouts"
STARTED = "Started controller"
"""What the controller logs once its informers have synced and its workers run."""


class ArgoRolloutsError(RuntimeError):
    """Argo Rollouts could not be built, installed or started; the message says what failed."""


def wrapper_module() -> Path:
    """The Go wrapper module: `$SMIMESH_ARGO_ROLLOUTS_MODULE`, or `hack/argo-rollouts` of this
    source tree."""
    configured = os.environ.get("SMIMESH_ARGO_ROLLOUTS_MODULE")
    module = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[2] / "hack" / "argo-rollouts"
    )
    if not (module / "go.mod").is_file():
        raise gotools.GoToolError(
            f"the Go wrapper module that builds rollouts-controller is not at {module}; run "
            "from a smimesh source checkout, set SMIMESH_ARGO_ROLLOUTS_MODULE to its "
            f"hack/argo-rollouts folder, or put a prebuilt rollouts-controller ({VERSION}) "
            f"at {gotools.tool_path(CONTROLLER)}"
        )
    return module


def ensure(*, say: Callable[[str], None] = gotools.say) -> Path:
    """The cached rollouts-controller executable, built first (`go build` in the wrapper
    module) if missing."""
    path = gotools.tool_path(CONTROLLER)
    if os.access(path, os.X_OK):
        return path
    return gotools.ensure_tool(CONTROLLER, module=wrapper_module(), say=say)


def manifests() -> list[dict[str, Any]]:
    """Argo Rollouts' CRDs and cluster-wide RBAC from its module at the built version, the
    ServiceAccount (and the binding's subject) in `NAMESPACE`, after that Namespace."""
    source = gotools.module_source(MODULE, VERSION) / "manifests"
    files = [
        *sorted((source / "crds").glob("*-crd.yaml")),
        source / "role" / "argo-rollouts-clusterrole.yaml",
        source / "base" / "argo-rollouts-sa.yaml",
        source / "cluster-install" / "argo-rollouts-clusterrolebinding.yaml",
    ]
    return components.manifests(files, NAMESPACE)


def _ready(port: int, log: Path) -> bool:
    """Its healthz answers from the start; its informers have synced once it says so."""
    if not httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success:
        return False
    return log.is_file() and STARTED in log.read_text(errors="replace")


INSTANCE_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
"""With several controllers (`running` with several API versions), the label that gives a
Rollout to one of them: its value is `instance(version)`."""


def instance(traffic_split_api_version: str) -> str:
    """The controller instance id of the controller writing that TrafficSplit version."""
    return f"smi-{traffic_split_api_version}"


@contextmanager
def running(
    cluster: clusters.Cluster,
    run_dir: Path,
    *,
    traffic_split_api_versions: Sequence[str] = ("v1alpha1",),
) -> Iterator[dict[str, components.Component]]:
    """Argo Rollouts installed and one controller per TrafficSplit API version running until
    the block ends (yielded by version), then stopped and its RBAC, CRDs (and so every
    Rollout) removed. The version is controller-wide (`--traffic-split-api-version`), so with
    several each controller owns only the Rollouts labelled `INSTANCE_LABEL: instance(v)`;
    one alone owns the unlabelled ones. Its Namespace stays: without kube-controller-manager
    (the `local` cluster) a deleted namespace never finishes terminating, and the next
    `running()` could not create the ServiceAccount in it."""
    try:
        binary = ensure()
        objects = manifests()
    except gotools.GoToolError as exc:
        raise ArgoRolloutsError(str(exc)) from exc
    try:
        account = (NAMESPACE, SERVICE_ACCOUNT)
        with (
            components.installed(cluster, objects, what="Argo Rollouts' CRDs and RBAC",
                                 account=account, run_dir=run_dir) as kubeconfig,
            contextlib.ExitStack() as stack,
        ):  # fmt: skip
            started = {}
            for version in traffic_split_api_versions:
                scope = ([f"--instance-id={instance(version)}"]
                         if len(traffic_split_api_versions) > 1 else [])  # fmt: skip
                component = _controller(binary, kubeconfig, run_dir / version, version, scope)
                started[version] = stack.enter_context(component)
            yield started
    except components.ComponentError as exc:
        raise ArgoRolloutsError(str(exc)) from exc


def _controller(
    binary: Path, kubeconfig: Path, run_dir: Path, version: str, scope: list[str]
) -> components.Component:
    run_dir.mkdir(parents=True, exist_ok=True)
    healthz, metrics = controlplane.free_port(), controlplane.free_port()
    log = run_dir / "rollouts-controller.log"
    # No Lease: with leader election a restart within the 15 s lease (ReleaseOnCancel is
    # off) would wait for the old lease to expire.
    return components.Component(
        f"rollouts-controller ({version})",
        [str(binary), f"--kubeconfig={kubeconfig}", f"--healthzPort={healthz}",
         f"--metricsPort={metrics}", "--leader-elect=false",
         f"--traffic-split-api-version={version}", *scope,
         "--loglevel=info", "--logformat=text"],
        log,
        ready=lambda: _ready(healthz, log),
        # Its own namespace (notification and controller ConfigMaps) comes from the
        # downward API in a Pod, else from a mounted token's namespace file.
        env={**os.environ, "POD_NAMESPACE": NAMESPACE},
    )  # fmt: skip


def main() -> int:
    return gotools.print_path(ensure, ArgoRolloutsError)


if __name__ == "__main__":
    raise SystemExit(main())
