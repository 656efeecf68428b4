"""Fixtures for the CLI tests: run the installed console script against the session's cluster,
and smimesh installed there by `kubectl smi install` itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smimesh.testing import clusters

BIN = Path(sys.executable).parent
Run = Callable[..., subprocess.CompletedProcess[str]]


def run_smi(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`kubectl-smi ARGS` as a user runs it (wide terminal, so help text is not wrapped)."""
    return subprocess.run(
        [str(BIN / "kubectl-smi"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.fixture(scope="session")
def smi(cluster: clusters.Cluster) -> Run:
    """`kubectl-smi ARGS --kubeconfig=<the test cluster>`."""

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_smi(*args, f"--kubeconfig={cluster.kubeconfig}", stdin=stdin)

    return run


@pytest.fixture(scope="session")
def installed(smi: Run, cluster: clusters.Cluster) -> clusters.Cluster:
    """smimesh installed by `kubectl smi install` (CRDs Established when it returns)."""
    result = smi("install")
    assert result.returncode == 0, result.stdout + result.stderr
    return cluster
