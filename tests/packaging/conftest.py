"""Fixtures for the packaging tests: the wheel, built once per module from a copy of exactly the
files the image's build copies, and a virtualenv with that wheel as its only smimesh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "constraints.txt", "smimesh")
"""What `meshimage.wheelhouse` builds the image's smimesh wheel from (its sources digest)."""


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH (the checkout must not be importable)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@dataclass(frozen=True)
class Built:
    wheel: Path
    log: str
    """pip's and setuptools' verbose output."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """`pip wheel --no-deps` of a clean copy of the sources (the venv's setuptools: no index)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    # Byte-compiling on, as on a user's machine (else distutils says it is skipped).
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(source)],
        capture_output=True, text=True, check=False, timeout=300, env=env, cwd=out,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("smimesh-*.whl")
    return Built(wheel, result.stdout + result.stderr)


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """A command of the venv, as a user runs it: no PYTHONPATH, the venv's bin first."""
        env = _clean_env()
        env |= {"PATH": f"{self.bin}:{env.get('PATH', '')}", "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run(
            list(argv), capture_output=True, text=True, check=False, timeout=180, env=env, cwd=cwd
        )


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtualenv with the wheel installed (`--no-deps`): smimesh comes from the wheel
    alone; its dependencies from this test run's environment, reached through a .pth file
    that adds that site-packages as a plain directory (its own .pth files, among them the
    editable install of the checkout, are not processed)."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
         "--no-deps", "--no-index", "--quiet", str(built.wheel)],
        capture_output=True, text=True, check=False, timeout=300, env=_clean_env(),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # After the install: else pip would find the checkout's editable smimesh there.
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    assert (site / "smimesh" / "manifests").is_dir()
    (site / "zz-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return Venv(root)
