"""`python -m smimesh.operator` as a process: its help lists every flag under its own name, and a
value out of range stops it before it looks for a cluster (`tests/operator/test_flags.py`
covers each flag in-process; the cluster tests start it for real)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.operator.test_flags import FLAGS


def operator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smimesh.operator", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_help_names_the_command_and_lists_every_flag() -> None:
    result = operator("--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m smimesh.operator [OPTIONS]" in result.stdout
    for flag in FLAGS:
        assert flag in result.stdout


def test_a_value_out_of_range_exits_2_before_looking_for_a_cluster() -> None:
    result = operator("--workload-cert-lifetime", "5", "--kubeconfig", "/nonexistent")
    assert result.returncode == 2
    assert "--workload-cert-lifetime must be at least 10 seconds" in result.stderr
