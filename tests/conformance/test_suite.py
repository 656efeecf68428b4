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


def test_the_cli_reports_each_case_and_exits_by_outcome(tmp_path: Path) -> None:
    report = tmp_path / "smi.md"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "smimesh"), "conformance", "run",
            "--focus", "access/no-target", "--focus", "specs/",
            "--skip", "header", "--skip", "path",
            "-o", "json", "--report", str(report),
        ],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cases = json.loads(result.stdout)
    assert [(c["case"], c["outcome"]) for c in cases] == [
        ("access/no-target-blocks", "passed"),
        ("specs/get-only", "passed"),
    ]
    markdown = report.read_text()
    assert "| access/no-target-blocks | access.smi-spec.io/v1alpha3 | ✔ passed |" in markdown
    assert markdown.rstrip().endswith("**2 passed, 0 failed, 0 error, 0 skipped**")
    unknown = subprocess.run(
        [str(Path(sys.executable).parent / "smimesh"), "conformance", "run", "--focus", "nope"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "no case matches" in unknown.stderr


def test_the_suite_passes_with_every_app_in_its_own_network_namespace() -> None:
    """`--isolation netns`: the apps call Services by name with no proxy settings, and
    iptables hands their traffic to the sidecars (transparent interception). Every access and
    specs case, and the split cases that do not repeat another's path."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "smimesh"), "conformance", "run",
            "--isolation", "netns", "--focus", "access/", "--focus", "specs/",
            "--focus", "split/weights-75-25", "--focus", "split/version-v1alpha1",
            "--focus", "split/matches", "--focus", "split/root-is-a-backend", "-o", "json",
        ],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    cases = json.loads(result.stdout)
    assert len(cases) == 13
    assert {c["outcome"] for c in cases} == {"passed"}, cases
    assert "10.78." in result.stderr  # the workloads really ran in namespaces (their range)
