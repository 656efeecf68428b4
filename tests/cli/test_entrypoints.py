"""The installed entry points: `smimesh`, and `kubectl smi` through kubectl's plugin lookup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import smimesh
from smimesh.testing import binaries

BIN = Path(sys.executable).parent


def test_kubectl_finds_the_plugin_on_path() -> None:
    kubectl = binaries.ensure_binaries().kubectl
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(kubectl), "smi", "version"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"smimesh client {smimesh.__version__}"


def test_help_lists_the_commands_and_teaches_by_example() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "demo", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Example: smimesh demo" in result.stdout


def test_an_unknown_command_exits_2_with_a_message() -> None:
    result = subprocess.run(
        [str(BIN / "kubectl-smi"), "frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.cluster
def test_demo_runs_what_exists_and_names_what_does_not() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "demo"], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "control plane ready at https://127.0.0.1:" in result.stdout
    assert "not built yet" in result.stdout
    assert "control plane stopped; nothing left running" in result.stdout
