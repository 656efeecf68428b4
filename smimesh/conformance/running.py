"""Runs conformance cases on a stage and collects one result per case.

`run_cases` is environment-agnostic (any `stages.Stage`); `run_local` builds the local
environment: the embedded control plane (or another cluster from `smimesh.testing.clusters`),
the mesh from `smimesh/manifests/` and the test app as local workloads. `run_current` grades the
mesh already running in a cluster (`connect`: a kubeconfig and context), with the test app
deployed as Pods for a mesh profile (`deploying`, `profiles`). Called by
`smimesh conformance run` and by our own tests; results go to `reporting`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from smimesh.conformance import cases, deploying, profiles, stages
from smimesh.conformance.cases import registry
from smimesh.testing import binaries, clusters, launching, meshes, reaping

SMI_GROUPS = ("split.smi-spec.io", "access.smi-spec.io", "specs.smi-spec.io")

Outcome = Literal["passed", "failed", "error", "skipped"]
SUCCESSFUL: frozenset[Outcome] = frozenset({"passed", "skipped"})


@dataclass(frozen=True)
class Result:
    case: registry.Case
    outcome: Outcome
    seconds: float
    message: str = ""


def select(focus: Sequence[str], skip: Sequence[str] = ()) -> list[registry.Case]:
    """Cases whose name contains any of `focus` (all if none) and none of `skip`, in
    catalog order."""
    return [
        c
        for c in cases.CASES
        if (not focus or any(p in c.name for p in focus)) and not any(p in c.name for p in skip)
    ]


def run_cases(
    stage: stages.Stage,
    chosen: Sequence[registry.Case],
    *,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    results = []
    for item in chosen:
        started = time.monotonic()
        try:
            stage.reset()
            item.run(stage)
        except stages.CaseFailedError as exc:
            result = Result(item, "failed", time.monotonic() - started, str(exc))
        except stages.CaseSkippedError as exc:
            result = Result(item, "skipped", time.monotonic() - started, str(exc))
        except Exception as exc:  # a case that breaks is reported, and the suite goes on
            where = traceback.extract_tb(exc.__traceback__)[-1]
            message = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
            result = Result(item, "error", time.monotonic() - started, message)
        else:
            result = Result(item, "passed", time.monotonic() - started)
        results.append(result)
        on_result(result)
    return results


def run_local(
    chosen: Sequence[registry.Case],
    *,
    mode: clusters.Mode = "local",
    isolation: launching.Isolation = "address",
    say: Callable[[str], None] = lambda message: None,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    with clusters.provide(mode, say=say) as cluster, meshes.LocalMesh(cluster, say=say) as mesh:
        say("deploying the test app: a, b, c in a strict and a permissive namespace")
        prefix = f"smi-{uuid.uuid4().hex[:5]}"
        stage = stages.Stage.build(mesh, prefix=prefix, isolation=isolation)
        return run_cases(stage, chosen, on_result=on_result)


class SetupError(RuntimeError):
    """The suite cannot start on this target; the message says what is missing."""


def connect(
    kubeconfig: Path | None,
    context: str | None,
    *,
    say: Callable[[str], None] = lambda message: None,
) -> clusters.Cluster:
    """The cluster a kubeconfig (default: $KUBECONFIG or ~/.kube/config) and context name,
    checked reachable. With a context, a flattened one-context copy is used, so kubectl
    and the Python client agree on it."""
    path = kubeconfig or Path(
        os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config"
    )
    if not path.is_file():
        raise SetupError(f"no kubeconfig at {path} (use --kubeconfig)")
    kubectl = shutil.which("kubectl") or str(binaries.ensure_binaries(say=say).kubectl)
    if context:
        flattened = subprocess.run(
            [kubectl, f"--kubeconfig={path}", "config", "view", "--raw", "--flatten",
             "--minify", f"--context={context}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if flattened.returncode != 0:
            raise SetupError(f"context {context!r}: {flattened.stderr.strip()}")
        # Credentials in a directory that goes with this process (reaped at exit or death).
        path = Path(tempfile.mkdtemp(prefix="smimesh-conformance-")) / "kubeconfig"
        reaping.hold(reaping.path(path.parent))
        path.write_text(flattened.stdout)
        path.chmod(0o600)
    cluster = clusters.Cluster("existing", path, kubectl)
    reached = cluster.kubectl("get", "--raw", "/readyz", "--request-timeout=15s")
    if reached.returncode != 0:
        raise SetupError(f"the cluster of {path} is not reachable: {reached.stderr.strip()}")
    # Any SMI kind will do: a mesh may implement some (Linkerd's extension: TrafficSplit);
    # the cases of the kinds it lacks then fail, which is the grade.
    listed = cluster.kubectl("get", "crd", "-o", "jsonpath={.items[*].spec.group}")
    if listed.returncode != 0 or not set(listed.stdout.split()) & set(SMI_GROUPS):
        raise SetupError(
            "no SMI CRDs are installed (none of the groups "
            f"{', '.join(SMI_GROUPS)}){': ' + listed.stderr.strip() if listed.stderr else ''}; "
            "install the mesh under test and its SMI support first (smimesh: kubectl smi install)"
        )
    return cluster


def run_current(
    chosen: Sequence[registry.Case],
    cluster: clusters.Cluster,
    *,
    mesh: profiles.Profile,
    image: str = deploying.DEFAULT_IMAGE,
    keep: bool = False,
    ready_timeout: float = 300.0,
    say: Callable[[str], None] = lambda message: None,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """Deploy the test app as Pods for `mesh`, run the cases, and remove it (unless `keep`)."""
    prefix = f"smi-{uuid.uuid4().hex[:5]}"
    strict, permissive = deploying.namespaces(prefix)
    say(f"deploying the test app for mesh {mesh.name}: a, b, c in {strict} and {permissive}")
    try:
        try:
            stage = deploying.deploy(
                cluster, mesh, prefix=prefix, image=image, timeout=ready_timeout, say=say
            )
        except deploying.DeployError as exc:
            raise SetupError(str(exc)) from None
        if stage.permissive:
            say(f"cases that need a permissive namespace will skip: {stage.permissive}")
        return run_cases(stage, chosen, on_result=on_result)
    finally:
        if keep:
            say(f"kept namespaces {strict} and {permissive} (--keep)")
        else:
            deploying.remove(cluster, prefix=prefix)
