"""The conformance suite passes on smimesh: every case, on the session's control plane, with
the operator, sidecars and test apps running for real. And its CLI reports per case."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from smimesh.conformance import reporting, running, stages
from smimesh.testing import clusters, meshes

pytestmark = pytest.mark.cluster


def test_every_conformance_case_passes(cluster: clusters.Cluster) -> None:
    chosen = running.select(())
    assert len(chosen) >= 20
    with meshes.LocalMesh(cluster) as mesh:
        stage = stages.Stage.build(mesh, prefix=f"conf-{uuid.uuid4().hex[:5]}")
        results = running.run_cases(stage, chosen)
    report = "\n".join(reporting.line(result) for result in results)
    assert [r.case.name for r in results if r.outcome != "passed"] == [], report
    assert {r.case.origin for r in results} == {"smi-conformance", "smimesh"}


def test_the_cli_reports_each_case_and_exits_by_outcome() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "smimesh"), "conformance", "run",
            "--case", "access/no-target", "--case", "specs/get-only",
            "-o", "json",
        ],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cases = json.loads(result.stdout)
    assert [(c["case"], c["outcome"]) for c in cases] == [
        ("access/no-target-blocks", "passed"),
        ("specs/get-only", "passed"),
    ]
    unknown = subprocess.run(
        [str(Path(sys.executable).parent / "smimesh"), "conformance", "run", "--case", "nope"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "no case matches" in unknown.stderr
