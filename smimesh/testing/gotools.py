"""Builds outside tools from their Go modules once and caches them, with progress.

The one place `go` is run: `binaries` builds the Kubernetes tools from the wrapper module
through `run_go`, and `ensure_tool` installs a published tool (`go install module@version`,
e.g. helm, CoreDNS) into `<cache root>/tools/<name>-<version>/`. The cache root is
`$SMIMESH_CACHE`, default `~/.cache/smimesh`. A build killed with its runner stops too.
`run_reporting`, the runner under `run_go`, also runs the image builder's RUN steps
(`meshimage.sandboxing`). Imports nothing of ours but `reaping`.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smimesh.testing import reaping

PROGRESS_SECONDS = 30.0
"""How often a long build says it is still running."""


class GoToolError(RuntimeError):
    """A tool cannot be found or built; the message says what to do."""


@dataclass(frozen=True)
class GoTool:
    """A command built from a published Go module with `go install package@version`."""

    name: str
    """The executable's name."""
    package: str
    """The main package, e.g. `helm.sh/helm/v3/cmd/helm`."""
    version: str
    """The module version, e.g. `v3.22.0`."""
    tags: tuple[str, ...] = ()
    ldflags: str = "-s -w"


def say(message: str) -> None:
    """Progress on stderr, prefixed as all of the testing package's messages are."""
    print(f"[smimesh] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """`$SMIMESH_CACHE`, default `~/.cache/smimesh`."""
    root = os.environ.get("SMIMESH_CACHE") or str(Path.home() / ".cache" / "smimesh")
    return Path(root)


def tool_path(tool: GoTool) -> Path:
    """Where `ensure_tool` puts the tool's executable."""
    return cache_root() / "tools" / f"{tool.name}-{tool.version}" / tool.name


def go_executable(what: str, target: Path) -> str:
    """The machine's `go`, or a `GoToolError` saying what it was needed for."""
    go = shutil.which("go")
    if go is None:
        raise GoToolError(
            f"Go is not on PATH; it is needed once to build {what} (install Go >= 1.26, "
            f"or put prebuilt binaries into {target})"
        )
    return go


def run_reporting(
    command: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    what: str,
    say: Callable[[str], None] = say,
    tail: int = 30,
) -> tuple[int, str]:
    """Run a long command (a go build, a RUN step of the image), saying every
    `PROGRESS_SECONDS` that it still runs, silent or not; its exit code and the last `tail`
    lines of its output. It dies with its runner, and ends at once on Ctrl-C, whether or not
    it heeds SIGINT itself."""
    started = time.monotonic()
    output: collections.deque[str] = collections.deque(maxlen=tail)
    with subprocess.Popen(
        list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        preexec_fn=reaping.die_with_parent,  # a killed runner's build does not go on for minutes
    ) as proc:  # fmt: skip
        # `go build` is silent while it compiles: a reader thread keeps the output's tail and
        # this loop says, every PROGRESS_SECONDS, that the build still runs.
        reader = threading.Thread(target=_keep_tail, args=(proc, output), daemon=True)
        reader.start()
        try:
            while True:
                try:
                    code = proc.wait(timeout=PROGRESS_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    last = output[-1].strip()[:100] if output else ""
                    say(f"  still building {what} ({time.monotonic() - started:.0f}s) {last}")
        except BaseException:  # Ctrl-C: e.g. unshare and a pid namespace's init ignore SIGINT
            proc.kill()
            raise
        reader.join()
    return code, "".join(output)


def run_go(
    command: Sequence[str],
    *,
    cwd: Path | None,
    what: str,
    say: Callable[[str], None] = say,
    env: dict[str, str] | None = None,
) -> None:
    """Run a `go build`/`go install`, saying every `PROGRESS_SECONDS` that it still runs and
    raising `GoToolError` with the output's tail if it fails."""
    environment = {**os.environ, "GOFLAGS": "-buildvcs=false", **(env or {})}
    started = time.monotonic()
    code, tail = run_reporting(command, cwd=cwd, env=environment, what=what, say=say)
    if code != 0:
        raise GoToolError(f"`go` failed (exit {code}) building {what}:\n{tail}")
    say(f"built {what} in {time.monotonic() - started:.0f}s")


def _keep_tail(proc: subprocess.Popen[str], output: collections.deque[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)


def ensure_tool(
    tool: GoTool, *, module: Path | None = None, say: Callable[[str], None] = say
) -> Path:
    """The tool's cached executable, built once if missing: `go install package@version`,
    or, for a tool whose own go.mod has `replace` directives (which `go install` refuses),
    `go build` in the wrapper `module` that requires it and repeats them."""
    path = tool_path(tool)
    if os.access(path, os.X_OK):
        return path
    go = go_executable(f"{tool.name} {tool.version}", path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Per build: two builds into one cache (two checkouts, `make -j`) must not share a folder.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
    try:
        say(f"building {tool.name} {tool.version} with {go} (once per machine; minutes on 2 cores)")
        command = [go, "install" if module is None else "build", "-trimpath",
                   f"-ldflags={tool.ldflags}"]  # fmt: skip
        if tool.tags:
            command.append(f"-tags={','.join(tool.tags)}")
        if module is None:
            command.append(f"{tool.package}@{tool.version}")
        else:
            command += ["-o", f"{staging}/", tool.package]
        run_go(command, cwd=module, what=f"{tool.name} {tool.version}", say=say,
               env={"GOBIN": str(staging)})  # fmt: skip
        (staging / tool.name).replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def module_source(module: str, version: str) -> Path:
    """The read-only source tree of `module@version` in Go's module cache (downloaded from
    the module proxy once): where a tool's own manifests (CRDs, RBAC) are read from, so
    they always match the binary built from the same version."""
    go = go_executable(f"{module} {version}", cache_root())
    done = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    try:
        found = json.loads(done.stdout)
    except json.JSONDecodeError:
        found = {}
    if done.returncode != 0 or "Dir" not in found:
        raise GoToolError(f"cannot download {module}@{version}: {found.get('Error', done.stderr)}")
    return Path(found["Dir"])


def print_path(ensure: Callable[[], Path], *errors: type[Exception]) -> int:
    """A tool module's `python -m` entry point (`make` targets build through it): build the
    tool if needed and print its path; exit 1 with the message of a `GoToolError` (or of one
    of `errors`) instead of a traceback."""
    caught: tuple[type[Exception], ...] = (GoToolError, *errors)
    try:
        print(ensure())
    except caught as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
