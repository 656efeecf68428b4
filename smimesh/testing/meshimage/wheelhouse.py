"""The build context's `build/wheels/`: the smimesh wheel and a wheel of every dependency at
the version `constraints.txt` pins, made with the host's pip (`pip wheel -c constraints.txt`,
which reaches the package index) so the Dockerfile's pip step installs offline (`--no-index`).

Called by the CLI (and `make wheels`) before `building`; remade only when pyproject.toml,
README.md, LICENSE, constraints.txt or a file under smimesh/ changed (a digest of them is
kept beside the wheels).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from smimesh.testing import reaping
from smimesh.testing.meshimage import failures

WHEELS = Path("build") / "wheels"
CONSTRAINTS = "constraints.txt"
_STAMP = ".sources-digest"


def sources_digest(project: Path) -> str:
    """What the wheels are made of: the project metadata and the package's files."""
    digest = hashlib.sha256()
    files = [project / name for name in ("pyproject.toml", "README.md", "LICENSE", CONSTRAINTS)]
    files += sorted(
        path for path in (project / "smimesh").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )  # fmt: skip
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def pip_wheel(project: Path, target: Path) -> list[str]:
    """The pip command that makes the wheels: every dependency at its pinned version."""
    return [sys.executable, "-m", "pip", "wheel", "--quiet", "-c", str(project / CONSTRAINTS),
            "--wheel-dir", str(target), str(project)]  # fmt: skip


def ensure_wheels(project: Path, *, say: Callable[[str], None]) -> Path:
    """`project/build/wheels`, up to date with the project's sources."""
    target = project / WHEELS
    digest = sources_digest(project)
    stamp = target / _STAMP
    if stamp.is_file() and stamp.read_text() == digest:
        return target
    say(f"making the wheels in {target} with pip (the package index is needed once)")
    started = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        pip_wheel(project, partial),
        capture_output=True, text=True, check=False, preexec_fn=reaping.die_with_parent,
    )  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join(result.stderr.splitlines()[-20:])
        raise failures.BuildError(f"pip wheel failed (exit {result.returncode}):\n{tail}")
    (partial / _STAMP).write_text(digest)
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    say(f"made {len(list(target.glob('*.whl')))} wheels in {time.monotonic() - started:.0f}s")
    return target
