"""`smimesh conformance run --target current|kind` refuses what it cannot do with exit code 2
and one clear line, never a traceback; and `smimesh conformance app`, the command the
test-app Pods run, serves the same app on its mesh port and its control port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from smimesh._aio import waiting
from smimesh.cli import main
from smimesh.testing import controlplane


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main.app, ["conformance", "run", "--focus", "access/", *args])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_kind_without_docker_exits_2_saying_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, output = _run("--target", "kind")
    assert code == 2
    assert "--target kind needs Docker" in output
    assert "`docker` is not on PATH" in output


def test_kind_without_a_docker_engine_exits_2_with_dockers_own_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, output = _run("--target", "kind")
    assert code == 2
    assert "needs a running Docker engine" in output
    assert "Cannot connect to the Docker daemon" in output


def test_current_with_an_unreachable_cluster_exits_2(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code, output = _run("--target", "current", "--kubeconfig", str(kubeconfig))
    assert code == 2
    assert "is not reachable" in output
    code, output = _run("--target", "current", "--kubeconfig", str(kubeconfig), "--context", "y")
    assert code == 2
    assert "context 'y'" in output
    code, output = _run("--target", "current", "--kubeconfig", str(tmp_path / "none"))
    assert (code, "no kubeconfig at" in output) == (2, True)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--target", "current", "--mesh", "istio"), "unknown mesh 'istio'"),
        (("--mesh", "osm"), "--target local runs smimesh"),
        (("--target", "kind", "--mesh", "linkerd"), "--target kind runs smimesh"),
    ],
)
def test_a_mesh_the_target_cannot_grade_is_bad_input(args: tuple[str, ...], expected: str) -> None:
    code, output = _run(*args)
    assert (code, expected in output) == (2, True), output


def test_the_app_command_serves_one_tally_on_the_mesh_and_the_control_port() -> None:
    port, control = controlplane.free_port(), controlplane.free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "smimesh"), "conformance", "app", "--host",
         "127.0.0.1", "--port", str(port), "--control-port", str(control), "--name", "ns/a-1"],
    )  # fmt: skip
    try:
        waiting.eventually_sync(
            lambda: httpx.get(
                f"http://127.0.0.1:{port}/echo", headers={"x-smimesh-caller": "ns/b-1"}
            ),
            timeout=30,
            message="the app never listened",
            interval=0.1,
            ignoring=(httpx.TransportError,),
            error=AssertionError,
        )
        metrics = httpx.get(f"http://127.0.0.1:{control}/metrics").json()
        assert metrics["name"] == "ns/a-1"
        assert metrics["received"]["ns/b-1"] == 1
    finally:
        process.terminate()
        process.wait(10)
