"""The wheel as a user gets it: the manifests and the CRDs inside as package data, the licence
as an SPDX expression with its text, a build setuptools has nothing to warn about, and runtime
dependencies as ranges whose exact pins are in constraints.txt."""

from __future__ import annotations

import re
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

from smimesh.smi import crdgen
from smimesh.testing.meshimage import wheelhouse
from tests.packaging.conftest import ROOT, Built


def test_the_wheel_carries_every_manifest_and_crd(built: Built) -> None:
    inside = set(zipfile.ZipFile(built.wheel).namelist())
    manifests = ROOT / "smimesh" / "manifests"
    shipped = {
        path.relative_to(ROOT).as_posix()
        for path in manifests.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert len(shipped) > 10
    assert shipped <= inside, sorted(shipped - inside)
    crds = {f"smimesh/manifests/crds/{name}" for name in crdgen.rendered(strategy="Webhook")}
    assert crds <= inside
    assert "smimesh/manifests/crds/Kustomization" in inside
    assert "smimesh/manifests/overlays/ha/kustomization.yaml" in inside


def test_the_licence_is_an_spdx_expression_with_its_text(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        metadata = wheel.read("smimesh-0.1.0.dist-info/METADATA").decode()
        licence = wheel.read("smimesh-0.1.0.dist-info/licenses/LICENSE").decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence


def test_setuptools_warns_nothing(built: Built) -> None:
    assert "Successfully built smimesh" in built.log
    warnings = [line for line in built.log.splitlines() if re.search("warn", line, re.I)]
    assert warnings == []


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exactly: {line!r}"
            assert name.lower() not in pins, f"{name} pinned twice"
            pins[name.lower()] = version
    return pins


@pytest.mark.fast
def test_dependencies_are_ranges_and_constraints_pin_each_inside_it() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    runtime = [Requirement(text) for text in project["dependencies"]]
    testing = [Requirement(text) for text in project["optional-dependencies"]["testing"]]
    pins = _constraints()
    for requirement in [*runtime, *testing]:
        operators = {spec.operator for spec in requirement.specifier}
        assert "==" not in operators, f"{requirement}: a range, the pin goes to constraints.txt"
        assert requirement.specifier, f"{requirement}: give a lower bound"
        pin = pins.get(requirement.name.lower())
        assert pin is not None, f"{requirement.name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pin), (
            f"{requirement.name}=={pin} outside {requirement}"
        )
    assert set(pins) == {r.name.lower() for r in [*runtime, *testing]}


@pytest.mark.fast
def test_the_licence_is_declared_the_new_way() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.fast
def test_the_makefile_and_the_image_install_with_the_constraints() -> None:
    assert "-c constraints.txt -e '.[dev]'" in (ROOT / "Makefile").read_text()
    command = wheelhouse.pip_wheel(ROOT, ROOT / "build" / "wheels")
    assert ["-c", str(ROOT / "constraints.txt")] == command[5:7]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--no-index --find-links=./wheels smimesh" in dockerfile  # only what pip wheel made
