"""The Dockerfile (built here without a Docker engine by `make image`; tests/testing/meshimage/
run the result): hadolint finds nothing, and the properties DESIGN.md asks for hold —
multi-stage, pinned base, non-root, no remote ADD, the operator as the default command,
sidecar, init and test-app commands that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import smimesh

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.fast
def test_multi_stage_from_a_pinned_base() -> None:
    found = instructions()
    args = dict(rest.split("=", 1) for keyword, rest in found if keyword == "ARG" and "=" in rest)
    stages = [rest for keyword, rest in found if keyword == "FROM"]
    assert len(stages) >= 2
    for stage in stages:
        image = stage.split()[0].replace("${BASE_IMAGE}", args["BASE_IMAGE"])
        name, _, tag = image.partition(":")
        assert name == "debian", image  # Debian's python3 is the Python installable here
        assert tag not in ("", "latest"), image
        assert re.fullmatch(r"[a-z]+-\d{8}-slim", tag) or "@sha256:" in image, image
    assert any("--from=build" in rest for keyword, rest in found if keyword == "COPY")


@pytest.mark.fast
def test_runs_as_a_non_root_user_and_adds_nothing_remote() -> None:
    found = instructions()
    users = [rest for keyword, rest in found if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert not any(keyword == "ADD" for keyword, _ in found)


@pytest.mark.fast
def test_the_default_command_is_the_operator_and_exposes_its_ports() -> None:
    found = instructions()
    (cmd,) = [rest for keyword, rest in found if keyword == "CMD"]
    assert shlex.split(cmd.strip("[]").replace(",", " ")) == ["python", "-m", "smimesh.operator"]
    exposed = {int(port) for keyword, rest in found if keyword == "EXPOSE" for port in rest.split()}
    assert exposed == {9443, 15010}


def test_the_sidecar_init_and_test_app_entrypoints_exist() -> None:
    for command in (["sidecar", "run"], ["sidecar", "init"], ["conformance", "app"]):
        result = subprocess.run(
            [str(BIN / "smimesh"), *command, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.fast
def test_the_manifests_run_this_version_of_the_image() -> None:
    operator = (ROOT / "smimesh" / "manifests" / "base" / "operator.yaml").read_text()
    assert f"image: ghcr.io/smimesh/smimesh:{smimesh.__version__}\n" in operator
    assert f"ghcr.io/smimesh/smimesh:{smimesh.__version__}" in DOCKERFILE.read_text()
