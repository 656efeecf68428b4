"""`smimesh validate` / `kubectl smi validate` as users run them: the installed console scripts,
files, directories and stdin, text and JSON reports, exit codes 0/1/2; and `smimesh crds`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CORPUS = Path(__file__).parent.parent / "data" / "smi"
ROOT = Path(__file__).parent.parent.parent


def _run(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("script", ["smimesh", "kubectl-smi"])
def test_valid_real_world_manifests_exit_0(script: str) -> None:
    args = [
        f"-f={CORPUS / d}"
        for d in ("smi-spec", "flagger", "argo-rollouts", "osm", "traefik-mesh", "conformance")
    ]
    result = _run(script, "validate", *args)
    assert result.returncode == 0, result.stdout
    assert "0 invalid" in result.stdout
    assert "ServiceAccount/bookstore: ignored" in result.stdout


def test_invalid_manifest_exits_1_naming_file_document_and_field() -> None:
    path = CORPUS / "invalid" / "split-duplicate-backend.yaml"
    result = _run("smimesh", "validate", "-f", str(path))
    assert result.returncode == 1
    assert f"{path}#0 TrafficSplit/dup: invalid" in result.stdout
    assert "spec.backends[1].service" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_stdin_is_read_with_a_dash() -> None:
    text = (CORPUS / "flagger" / "osm-v1alpha2.yaml").read_text()
    result = _run("kubectl-smi", "validate", "-f", "-", stdin=text)
    assert result.returncode == 0
    assert "<stdin>#0 TrafficSplit/podinfo: valid" in result.stdout


def test_json_report_has_the_same_findings() -> None:
    path = CORPUS / "invalid" / "routes-lookahead.yaml"
    result = _run("smimesh", "validate", "-f", str(path), "-o", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [entry] = report["entries"]
    assert entry["kind"] == "HTTPRouteGroup"
    assert entry["verdict"] == "invalid"
    assert entry["problems"][0]["path"] == "spec.matches[0].pathRegex"
    assert "lookahead" in entry["problems"][0]["reason"]


@pytest.mark.parametrize(
    "args",
    [["-f", str(CORPUS / "unreadable" / "broken.yaml")], ["-f", "/nonexistent/file.yaml"]],
)
def test_unreadable_input_exits_2(args: list[str]) -> None:
    result = _run("smimesh", "validate", *args)
    assert result.returncode == 2
    assert "unreadable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unreadable_wins_over_invalid() -> None:
    result = _run(
        "smimesh", "validate", "-f", str(CORPUS / "invalid"), "-f", str(CORPUS / "unreadable")
    )
    assert result.returncode == 2


def test_crds_check_passes_on_the_checked_in_files() -> None:
    result = subprocess.run(
        [str(BIN / "smimesh"), "crds", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_crds_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    assert _run("smimesh", "crds", "--dir", str(tmp_path)).returncode == 0
    stale = tmp_path / "trafficsplits.split.smi-spec.io.yaml"
    stale.write_text(stale.read_text().replace("ts\n", "tsx\n"))
    result = _run("smimesh", "crds", "--dir", str(tmp_path), "--check")
    assert result.returncode == 1
    assert "out of date" in result.stderr
