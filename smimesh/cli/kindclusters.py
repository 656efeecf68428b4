"""`smimesh conformance run --target kind`: a kind cluster (created, or reused by name) through
pytest-kind, the smimesh image loaded into it, smimesh installed as `kubectl smi install`
does; then the suite runs as for `--target current` on that cluster's kubeconfig.

Called by `conforming`; installs with `installing.install`. Needs a Docker engine: without
one (`docker info` fails, as on the project's own machines) it raises `KindUnavailableError`,
which `conforming` turns into exit code 2.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from smimesh.cli import installing
from smimesh.kube import names

CLUSTER_NAME = "smimesh-conformance"


class KindUnavailableError(RuntimeError):
    """kind cannot run here; the message says what is missing and what to do."""


def check_docker() -> None:
    """Raise KindUnavailableError unless a Docker engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        raise KindUnavailableError(
            "--target kind needs Docker (kind runs nodes as containers) and `docker` is not "
            "on PATH; install Docker, or run against a cluster you have with --target current"
        )
    try:
        info = subprocess.run(
            [docker, "info"], capture_output=True, text=True, check=False, timeout=30
        )
    except subprocess.TimeoutExpired:
        raise KindUnavailableError("--target kind: `docker info` did not answer in 30s") from None
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        raise KindUnavailableError(
            f"--target kind needs a running Docker engine, and `docker info` failed ({reason}); "
            "start Docker, or use --target current with a cluster you have"
        )


def prepare(
    image: str,
    *,
    name: str = CLUSTER_NAME,
    say: Callable[[str], None] = lambda message: None,
) -> Path:
    """Create (or reuse) the kind cluster, load `image`, install smimesh and wait for its
    operator; the cluster's kubeconfig."""
    check_docker()
    try:
        from pytest_kind import KindCluster
    except ImportError:
        raise KindUnavailableError(
            "--target kind uses pytest-kind, which is not installed (pip install 'smimesh[dev]')"
        ) from None
    found = shutil.which("kind")
    cluster = KindCluster(name, kind_path=Path(found) if found else None)
    say(f"kind cluster {name}: creating or reusing (kubeconfig {cluster.kubeconfig_path})")
    cluster.create()
    say(f"loading image {image} into kind")
    cluster.load_docker_image(image)
    kubeconfig = Path(cluster.kubeconfig_path)
    say("installing smimesh (kubectl smi install)")
    # install reports on stdout; here stdout is the suite's result (-o json), so: stderr.
    with contextlib.redirect_stdout(sys.stderr):
        installing.install(
            dry_run=False,
            namespace=names.MESH_NAMESPACE,
            ha=False,
            render=False,
            manifests=None,
            kubeconfig=kubeconfig,
            context=None,
        )
    rollout = subprocess.run(
        [str(cluster.kubectl_path), f"--kubeconfig={kubeconfig}", "-n", names.MESH_NAMESPACE,
         "rollout", "status", f"deployment/{names.OPERATOR_SERVICE}", "--timeout=300s"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if rollout.returncode != 0:
        raise KindUnavailableError(f"the smimesh operator did not roll out: {rollout.stderr}")
    return kubeconfig
